// The `tsmesh` executable as users run it: subcommands, help, exit codes, and the sidecar
// process's graceful shutdown on SIGTERM.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { upstream, loopbackIP, tempDir, writeRegistry, eventually } from './harness/mesh.ts';
import { send } from './harness/client.ts';

const run = promisify(execFile);
const tsmesh = join(import.meta.dirname, '..', 'bin', 'tsmesh.js');

async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [tsmesh, ...args]);
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

test('tsmesh with no command prints usage and exits 2; an unknown command too', async () => {
  const none = await cli();
  assert.equal(none.code, 2);
  assert.match(none.stdout, /Usage: tsmesh <command>/);
  const unknown = await cli('frobnicate');
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown command "frobnicate"/);
  assert.match(unknown.stderr, /Commands:/);
});

test('every contract subcommand has --help', async () => {
  for (const name of ['proxy', 'init', 'injector', 'inject', 'demo']) {
    const r = await cli(name, '--help');
    assert.equal(r.code, 0, name);
    assert.match(r.stdout, new RegExp(`Usage: tsmesh ${name}`), name);
  }
});

test('a bad setting stops the proxy with a message naming the variable', async () => {
  const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, [tsmesh, 'proxy'], { env: { ...process.env, TSMESH_INBOUND_PORT: 'lots' } });
    let stderr = '';
    child.stderr.on('data', (c) => (stderr += c));
    child.on('exit', (code) => resolve({ code, stderr }));
  });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /TSMESH_INBOUND_PORT="lots"/);
});

test('SIGTERM with a request in flight lets it finish, refuses new connections, then exits 0', async () => {
  const dir = await tempDir();
  const ip = loopbackIP();
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  const app = await upstream((req, res) => {
    if (req.url === '/slow') void held.then(() => res.end('finished'));
    else res.end('fast');
  });
  const registryFile = join(dir.path, 'registry.yaml');
  await writeRegistry(registryFile, {
    services: [{ name: 'pod-service', ports: [{ port: 80, targetPort: app.port }], selector: { app: 'web-app' } }],
    pods: [{ name: 'pod-a', ip: app.ip, labels: { app: 'web-app' }, meshed: false }],
  });
  const child = spawn(process.execPath, [tsmesh, 'proxy'], {
    env: { ...process.env, POD_NAME: 'pod-b', POD_IP: ip, TSMESH_BIND_ADDRESS: ip, TSMESH_REGISTRY: registryFile, TSMESH_ANNOTATIONS: join(dir.path, 'none'), TSMESH_DRAIN_TIMEOUT: '10s' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines: Record<string, unknown>[] = [];
  createInterface({ input: child.stdout }).on('line', (l) => lines.push(JSON.parse(l)));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  try {
    await eventually(() => lines.some((l) => l.msg === 'sidecar listening'), 10_000, 'the sidecar to listen');
    const url = `http://${ip}:15001`;
    const inflight = send(url, { path: '/slow' });
    await eventually(() => app.requests.length === 1, 5000, 'the slow request to reach the app');
    child.kill('SIGTERM');
    await eventually(() => lines.some((l) => String(l.msg).startsWith('draining')), 5000, 'the drain to start');
    await assert.rejects(send(url, { path: '/new' }), /ECONNREFUSED/, 'no new connections once draining');
    release();
    const r = await inflight;
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), 'finished');
    assert.equal(await exited, 0);
    assert.ok(lines.some((l) => l.msg === 'drained' && l.finished === true));
  } finally {
    child.kill('SIGKILL');
    await app.close();
    await dir.remove();
  }
});
