// `tsmesh proxy` runs with the proxy's V8 heap flags (bin/tsmesh.js replaces the process with
// itself plus the flags, same PID), and a flag the user sets in NODE_OPTIONS wins.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { loopbackIP, tempDir, writeRegistry, eventually } from './harness/mesh.ts';

const tsmesh = join(import.meta.dirname, '..', 'bin', 'tsmesh.js');

/** Starts `tsmesh proxy` in local mode, waits until it listens, returns its command line and stops it. */
async function proxyCommandLine(extraEnv: NodeJS.ProcessEnv): Promise<string[]> {
  const dir = await tempDir();
  const ip = loopbackIP();
  const registryFile = join(dir.path, 'registry.yaml');
  await writeRegistry(registryFile, { services: [], pods: [] });
  const env: NodeJS.ProcessEnv = { ...process.env, POD_NAME: 'pod-b', POD_IP: ip, TSMESH_BIND_ADDRESS: ip, TSMESH_REGISTRY: registryFile, TSMESH_ANNOTATIONS: join(dir.path, 'none'), ...extraEnv };
  delete env.NODE_OPTIONS;
  if (extraEnv.NODE_OPTIONS !== undefined) env.NODE_OPTIONS = extraEnv.NODE_OPTIONS;
  const child = spawn(process.execPath, [tsmesh, 'proxy'], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  const lines: Record<string, unknown>[] = [];
  createInterface({ input: child.stdout }).on('line', (l) => lines.push(JSON.parse(l) as Record<string, unknown>));
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  try {
    await eventually(() => lines.some((l) => l.msg === 'sidecar listening'), 15_000, 'the sidecar listening');
    return readFileSync(`/proc/${child.pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  } finally {
    child.kill('SIGTERM');
    await exited;
    await dir.remove();
  }
}

test('tsmesh proxy runs with a 2 MiB semi-space and a 128 MiB old-generation cap, in the same process', { skip: process.platform !== 'linux' && 'reads /proc' }, async () => {
  const argv = await proxyCommandLine({});
  assert.ok(argv.includes('--max-semi-space-size=2'), argv.join(' '));
  assert.ok(argv.includes('--max-old-space-size=128'), argv.join(' '));
  assert.deepEqual(argv.slice(-2), [tsmesh, 'proxy']);
});

test("a heap flag in NODE_OPTIONS is the user's choice: only the other flag is added", { skip: process.platform !== 'linux' && 'reads /proc' }, async () => {
  const argv = await proxyCommandLine({ NODE_OPTIONS: '--max-old-space-size=200' });
  assert.ok(argv.includes('--max-semi-space-size=2'), argv.join(' '));
  assert.ok(!argv.some((a) => a.startsWith('--max-old-space-size')), argv.join(' '));
});
