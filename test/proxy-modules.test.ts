// What `tsmesh proxy` loads: only what its configuration uses (issue 17, memory). In local mode
// with certificate files (TSMESH_TLS_DIR) it reads its certificates with node:crypto and has no
// discovery stream, so neither @peculiar/x509 (with its ASN.1 stack and Reflect polyfill) nor ws
// is loaded; the registry file needs yaml, which is. zod is the control plane's only: the
// sidecar checks its settings, registry and routes with src/schema/. http-proxy is loaded at
// the first WebSocket upgrade. Seen through a module-load trace
// (test/harness/module-trace.ts) of the real process. The memory itself is measured in bench/.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { loopbackIP, tempDir, writeRegistry, eventually } from './harness/mesh.ts';
import { createCA, writeWorkloadIdentity } from './harness/identity.ts';

const root = join(import.meta.dirname, '..');

/** Starts `tsmesh proxy` in local mode with `env`, waits until it is ready, returns the URLs of the modules it loaded. */
async function loadedModules(extraEnv: (dir: string) => Promise<NodeJS.ProcessEnv>): Promise<string[]> {
  const dir = await tempDir();
  const ip = loopbackIP();
  const registryFile = join(dir.path, 'registry.yaml');
  await writeRegistry(registryFile, { services: [], pods: [{ name: 'pod-b', ip, meshed: true }] });
  const trace = join(dir.path, 'modules.txt');
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    POD_NAME: 'pod-b',
    POD_IP: ip,
    SERVICE_ACCOUNT: 'pod-b',
    TSMESH_BIND_ADDRESS: ip,
    TSMESH_ADMIN_PORT: '0',
    TSMESH_REGISTRY: registryFile,
    TSMESH_ANNOTATIONS: join(dir.path, 'none'),
    MODULE_TRACE_FILE: trace,
    NODE_OPTIONS: `--import ${join(root, 'test/harness/module-trace.ts')}`,
    ...(await extraEnv(dir.path)),
  };
  const child = spawn(process.execPath, [join(root, 'bin/tsmesh.js'), 'proxy'], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  const lines: Record<string, unknown>[] = [];
  createInterface({ input: child.stdout }).on('line', (l) => lines.push(JSON.parse(l) as Record<string, unknown>));
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  try {
    await eventually(() => lines.some((l) => l.msg === 'sidecar listening'), 15_000, 'the sidecar listening');
    return readFileSync(trace, 'utf8').split('\n').filter(Boolean);
  } finally {
    child.kill('SIGTERM');
    await exited;
    await dir.remove();
  }
}

const fromPackage = (modules: string[], name: string) => modules.filter((url) => url.includes(`/node_modules/${name}/`));

test('tsmesh proxy in local mode with certificate files loads neither @peculiar/x509, ws, zod nor http-proxy (until a WebSocket); yaml only for its registry file', async () => {
  const ca = await createCA({ trustDomain: 'cluster.local' });
  const modules = await loadedModules(async (dir) => ({ TSMESH_TLS_DIR: await writeWorkloadIdentity(ca, join(dir, 'tls'), { namespace: 'default', serviceAccount: 'pod-b' }) }));
  assert.ok(modules.some((url) => url.endsWith('/src/sidecar.ts')), 'the trace saw the sidecar load');
  assert.ok(fromPackage(modules, 'yaml').length > 0, 'the registry file is YAML');
  for (const name of ['@peculiar/x509', 'reflect-metadata', 'tsyringe', 'ws', 'zod', 'http-proxy', 'follow-redirects']) {
    assert.deepEqual(fromPackage(modules, name), [], `${name} is not loaded`);
  }
});

test("the sidecar's modules do not load Node's bundled undici (an ES import of node:http would, through its lazy WebSocket getter)", async () => {
  // the whole static graph of the sidecar, and the registry file's reader, in a fresh process
  const code = `await import(${JSON.stringify(join(root, 'src/sidecar.ts'))}); await import(${JSON.stringify(join(root, 'src/registry/file-source.ts'))});
    process.stdout.write(JSON.stringify({ sidecar: typeof (await import(${JSON.stringify(join(root, 'src/sidecar.ts'))})).startSidecar, undici: process.moduleLoadList.filter((m) => m.includes('undici')) }));`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  await new Promise<void>((resolve) => child.on('exit', () => resolve()));
  const seen = JSON.parse(out) as { sidecar: string; undici: string[] };
  assert.equal(seen.sidecar, 'function', 'the sidecar module was loaded');
  assert.deepEqual(seen.undici, []);
});
