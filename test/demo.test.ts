// `tsmesh demo` as a user runs it: it starts the mesh, shows the hops, and exits 0.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { join } from 'node:path';

const run = promisify(execFile);

test('tsmesh demo shows pod-b -> pod-a through both sidecars and exits 0', async () => {
  const { stdout } = await run(process.execPath, [join(import.meta.dirname, '..', 'bin', 'tsmesh.js'), 'demo', '--requests', '2'], { timeout: 60_000 });
  assert.match(stdout, /Request 1: pod-b {2}GET http:\/\/pod-service\/\?request=1 {2}-> {2}200 "Hello from pod-a"/);
  assert.match(stdout, /Request 2: .* 200 "Hello from pod-a"/);
  assert.match(stdout, /pod-b sidecar {2}-> pod-a sidecar {3}inbound {2}127\.0\.\d+\.10:15006 +\d+\.\d+ ms/);
  assert.match(stdout, /chose endpoint pod-a \(127\.0\.\d+\.10:8080\) of pod-service/);
  assert.match(stdout, /Every request went pod-b -> its sidecar -> pod-a's sidecar -> pod-a's app and back/);
});

test('tsmesh demo rejects a bad option with usage (exit 2)', async () => {
  await assert.rejects(run(process.execPath, [join(import.meta.dirname, '..', 'bin', 'tsmesh.js'), 'demo', '--requests', 'lots']), (err: { code: number; stderr: string }) => {
    assert.equal(err.code, 2);
    assert.match(err.stderr, /--requests must be a whole number/);
    return true;
  });
});
