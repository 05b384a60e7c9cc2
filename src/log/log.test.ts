// The default log destination batches lines (src/log/log.ts): one write per batch, in order,
// and nothing lost at flush or at exit.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { LineBatch } from './log.ts';

function target(): { writes: string[]; flushed: number; write(s: string): void; flush(cb?: () => void): void; flushSync(): void } {
  return {
    writes: [],
    flushed: 0,
    write(s: string) {
      this.writes.push(s);
    },
    flush(cb?: () => void) {
      this.flushed++;
      cb?.();
    },
    flushSync() {
      this.flushed++;
    },
  };
}

test('lines wait for their batch and go out in one write, in order', () => {
  const t = target();
  const batch = new LineBatch(t, { batchBytes: 100, flushMs: 0 });
  const lines = Array.from({ length: 9 }, (_, i) => `{"n":${i},"pad":"${'x'.repeat(i)}"}\n`);
  let written = 0;
  for (const line of lines) {
    batch.write(line);
    written += line.length;
    if (written < 100) assert.deepEqual(t.writes, [], 'under the batch size: nothing written yet');
  }
  assert.equal(t.writes.length, 1, 'one write when the batch is full');
  batch.write('{"last":true}\n');
  assert.equal(t.writes.length, 1);
  batch.flushSync();
  assert.equal(t.writes.join(''), lines.join('') + '{"last":true}\n', 'every line, in order, byte for byte');
  assert.equal(t.flushed, 1, 'flushSync reaches the destination after the batch');
  batch.close();
});

test('a batch that does not fill goes out after flushMs, and at flush()', async () => {
  const t = target();
  const batch = new LineBatch(t, { batchBytes: 1 << 20, flushMs: 20 });
  try {
    batch.write('a\n');
    batch.write('é日😀\n');
    assert.deepEqual(t.writes, []);
    await new Promise((r) => setTimeout(r, 80));
    assert.deepEqual(t.writes, ['a\né日😀\n']);
    batch.write('b\n');
    await new Promise<void>((resolve) => batch.flush(() => resolve()));
    assert.deepEqual(t.writes, ['a\né日😀\n', 'b\n']);
  } finally {
    batch.close();
  }
});

const logMain = fileURLToPath(new URL('./log.ts', import.meta.url));

/** Runs `body` in a node with the default logger as `log`; its stdout. */
async function child(body: string): Promise<string> {
  const script = `import { createLogger } from ${JSON.stringify(logMain)};\nconst log = createLogger({ name: 't' });\n${body}\n`;
  const proc = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  proc.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
  const code = await new Promise<number | null>((resolve) => proc.on('close', resolve));
  assert.equal(code, 0);
  return out;
}

test('lines still waiting are written when the process exits (process.exit, or its natural end)', async () => {
  for (const end of ['process.exit(0);', '']) {
    const out = await child(`for (let i = 0; i < 50; i++) log.info({ i }, 'line');\n${end}`);
    const lines = out.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { i: number; msg: string; name: string });
    assert.deepEqual(
      lines.map((l) => l.i),
      Array.from({ length: 50 }, (_, i) => i),
      `every line, in order (${end || 'natural end'})`,
    );
    assert.equal(lines[0]!.name, 't');
  }
});

test('logger.flush() writes the batch waiting', async () => {
  const out = await child(`log.info('one'); log.flush(() => { process.stdout.write('--flushed--\\n'); });`);
  assert.match(out, /"msg":"one"\}\n--flushed--\n/);
});

test('the default logger batches: lines logged before a direct write to stdout come out after it', async () => {
  const out = await child(`import { writeSync } from 'node:fs';\nfor (let i = 0; i < 5; i++) log.info({ i }, 'line');\nwriteSync(1, 'MARK\\n');`);
  const mark = out.indexOf('MARK\n');
  assert.ok(mark >= 0, out);
  assert.equal(mark, 0, `the lines waited in the batch (unbatched, they would come first): ${out.slice(0, 200)}`);
  assert.equal(out.split('\n').filter((l) => l.startsWith('{')).length, 5, 'then all 5 at exit');
});
