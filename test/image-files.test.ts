// What the images hold, checked without a container engine: each target's files assembled by
// scripts/image-files.ts (the Dockerfile's rules) hold no development files; the sidecar's have
// no control-plane code or Kubernetes client and `tsmesh proxy` runs from them alone (so its
// code path never imports them); the compile cache made by scripts/warm-compile-cache.ts is
// read by the UID that made it, which is why the Dockerfile makes one per UID.
// scripts/image-smoke.sh checks a built image the same way.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { chmod, copyFile, link, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assemble } from '../scripts/image-files.ts';

const ROOT = join(import.meta.dirname, '..');
const work = await mkdtemp(join(tmpdir(), 'tsmesh-image-files-'));
await chmod(work, 0o755); // other UIDs run from it below
after(() => rm(work, { recursive: true, force: true }));

const DEV_FILE = /(\.d\.[cm]?ts|\.map|\.md|\.test\.ts)$/;

async function files(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true })).map((f) => String(f));
}

function run(cmd: string, args: string[], env: Record<string, string>): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { env: { PATH: process.env.PATH ?? '', ...env }, timeout: 120_000, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr });
    });
  });
}

/** Files (under `app`) read from the compile cache and compiled afresh, from NODE_DEBUG_NATIVE=COMPILE_CACHE output. */
function cacheUse(out: string, app: string): { hits: number; misses: number } {
  const hit = new Set<string>();
  const miss = new Set<string>();
  for (const line of out.split('\n')) {
    const m = /\[compile cache\] reading cache from \S+ for \S+ (\S+?)\.\.\./.exec(line);
    if (!m || !m[1]!.includes(app)) continue;
    (line.includes('success') ? hit : miss).add(m[1]!);
  }
  return { hits: hit.size, misses: [...miss].filter((f) => !hit.has(f)).length };
}

test('the control-plane files: runtime only, no tests or test helpers', async () => {
  const out = join(work, 'control-plane');
  assemble(ROOT, 'control-plane', out);
  const all = await files(out);
  assert.ok(all.includes(join('injector', 'main.ts')));
  assert.ok(all.some((f) => f.startsWith(join('node_modules', '@kubernetes', 'client-node'))));
  assert.deepEqual(all.filter((f) => DEV_FILE.test(f)), []);
  assert.deepEqual(all.filter((f) => /injector\/(testing|testdata)|^test\//.test(f)), []);
});

test('the sidecar files: no control plane, no Kubernetes client, and tsmesh proxy runs from them alone', async () => {
  const out = join(work, 'sidecar');
  assemble(ROOT, 'sidecar', out);
  const all = await files(out);
  assert.deepEqual(all.filter((f) => DEV_FILE.test(f)), []);
  assert.ok(!existsSync(join(out, 'injector')));
  assert.ok(!existsSync(join(out, 'node_modules', '@kubernetes')));
  assert.ok(!existsSync(join(out, 'node_modules', 'fast-json-patch')));

  // The proxy (local mode, ports of its own) becomes ready from these files only.
  await writeFile(join(work, 'registry.yaml'), 'services: []\npods: []\n');
  const proxy = spawn(process.execPath, [join(out, 'bin', 'tsmesh.js'), 'proxy'], {
    env: { PATH: process.env.PATH ?? '', TSMESH_REGISTRY: join(work, 'registry.yaml'), POD_NAME: 'p', POD_NAMESPACE: 'default', POD_IP: '127.0.0.1', TSMESH_OUTBOUND_PORT: '0', TSMESH_INBOUND_PORT: '0', TSMESH_ADMIN_PORT: '0', NODE_COMPILE_CACHE: join(work, 'proxy-cache') },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise((r) => proxy.once('exit', r));
  let output = '';
  proxy.stdout.setEncoding('utf8').on('data', (d: string) => (output += d));
  proxy.stderr.setEncoding('utf8').on('data', (d: string) => (output += d));
  try {
    const port = await new Promise<number>((resolve, reject) => {
      const look = (): void => {
        const m = /"admin":\{[^}]*"port":(\d+)/.exec(output); // the "sidecar listening" line
        if (m) resolve(Number(m[1]));
      };
      proxy.stdout.on('data', look);
      proxy.once('exit', () => reject(new Error(`the proxy exited:\n${output}`)));
    });
    for (;;) {
      const res = await fetch(`http://127.0.0.1:${port}/healthz/ready`).catch(() => undefined);
      if (res?.status === 200) break;
      await new Promise((r) => setTimeout(r, 50));
    }
  } finally {
    proxy.kill('SIGTERM');
    await exited;
  }
  assert.doesNotMatch(output, /ERR_MODULE_NOT_FOUND|Cannot find (module|package)/);

  // A control-plane command says it is not in this image.
  const injector = await run(process.execPath, [join(out, 'bin', 'tsmesh.js'), 'injector'], {});
  assert.equal(injector.code, 3);
  assert.match(injector.out, /tsmesh injector: not in this image/);
});

test('the compile cache is read by the UID that made it: one per UID the manifests use', { skip: process.getuid?.() !== 0 && 'needs root (runs as UID 1337)' }, async () => {
  const app = join(work, 'sidecar');
  if (!existsSync(app)) assemble(ROOT, 'sidecar', app);
  const cache = join(work, 'compile-cache');
  await rm(cache, { recursive: true, force: true });
  await mkdir(cache);
  await chmod(cache, 0o1777);
  // node and the warm-up script where UID 1337 can reach them (the clone may sit in a private folder)
  const node = join(work, 'node');
  await link(process.execPath, node).catch(() => copyFile(process.execPath, node));
  const warm = join(work, 'warm-compile-cache.ts');
  await copyFile(join(ROOT, 'scripts', 'warm-compile-cache.ts'), warm);
  const asUid = (uid: number, args: string[], env: Record<string, string>) => run('setpriv', [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', node, ...args], { NODE_COMPILE_CACHE: cache, ...env });
  const tsmesh = [join(app, 'bin', 'tsmesh.js'), 'init', '--dry-run'];

  // made as root only (what the image did before): UID 1337 compiles everything itself
  const rootWarm = await asUid(0, [warm, app], {});
  assert.equal(rootWarm.code, 0, rootWarm.out);
  const cold = cacheUse((await asUid(1337, tsmesh, { NODE_DEBUG_NATIVE: 'COMPILE_CACHE' })).out, app);
  assert.equal(cold.hits, 0);
  assert.ok(cold.misses > 10, `${cold.misses}`);

  // made as 1337 too (the Dockerfile): everything 1337 loads comes from the cache
  await rm(join(cache, (await readdir(cache)).find((d) => d.endsWith('-1337'))!), { recursive: true, force: true });
  const userWarm = await asUid(1337, [warm, app], {});
  assert.equal(userWarm.code, 0, userWarm.out);
  assert.match(userWarm.out, /compile cache for UID 1337: \d+ project modules/);
  const warmRun = cacheUse((await asUid(1337, tsmesh, { NODE_DEBUG_NATIVE: 'COMPILE_CACHE' })).out, app);
  assert.ok(warmRun.hits > 10, `${warmRun.hits}`);
  assert.equal(warmRun.misses, 0);
});
