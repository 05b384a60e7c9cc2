// A short seeded run of `npm run fuzz` (fuzz/http-front.ts): mutated HTTP/1.1 and generated
// HTTP/2 frame sequences at the outbound front, the inbound front (plaintext and mTLS, behind
// the mesh preamble) and the admin port of a sidecar pair running as processes. It passes when
// no sidecar exits, every answer is HTTP, and requests in flight and file descriptors return to
// their start. The long runs are recorded in fuzz/RESULTS.md.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';

test('a seeded fuzz run finds no crash and leaves nothing in flight or open', async () => {
  const { code, output } = await new Promise<{ code: number | null; output: string }>((resolve) => {
    const child = execFile(process.execPath, [join(import.meta.dirname, '..', 'fuzz', 'http-front.ts'), '--seconds', '4', '--seed', '14', '--connections', '3', '--settle', '30'], { timeout: 100_000 }, () => undefined);
    let output = '';
    child.stdout!.on('data', (d) => (output += d));
    child.stderr!.on('data', (d) => (output += d));
    child.on('close', (code) => resolve({ code, output }));
  });
  assert.equal(code, 0, output);
  assert.match(output, /^done: \d+ inputs .*no crash/m);
  assert.match(output, /HTTP\/2/);
});
