import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rename, rm, symlink, writeFile, mkdir, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { watchFile } from './watch.ts';

async function until(check: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('reports the content at start, each change, and nothing when the content is the same', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'tsmesh-watch-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'f');
  await writeFile(file, 'one');
  const seen: (string | null)[] = [];
  const w = watchFile(file, (c) => seen.push(c), { intervalMs: 20 });
  t.after(() => w.close());
  await w.check();
  assert.deepEqual(seen, ['one']);
  // written whole (a rename): a plain rewrite can be read half-done (truncated), which the
  // watcher rightly reports as it is, and a busy machine makes that read likely
  const replace = async (content: string) => {
    await writeFile(`${file}.new`, content);
    await rename(`${file}.new`, file);
  };
  await replace('two');
  await until(() => seen.length === 2);
  await replace('two'); // rewritten, same content
  await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(seen, ['one', 'two']);
  await unlink(file);
  await until(() => seen.length === 3);
  assert.equal(seen[2], null, 'a missing file is reported once');
});

test("Kubernetes' symlink swap of a mounted file is seen", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'tsmesh-watch-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  // like a downward-API volume: annotations -> ..data/annotations, ..data -> ..2026_1
  await mkdir(join(dir, '..v1'));
  await writeFile(join(dir, '..v1', 'annotations'), 'a="1"');
  await symlink('..v1', join(dir, '..data'));
  await symlink(join('..data', 'annotations'), join(dir, 'annotations'));
  const seen: (string | null)[] = [];
  const w = watchFile(join(dir, 'annotations'), (c) => seen.push(c), { intervalMs: 20 });
  t.after(() => w.close());
  await w.check();
  await mkdir(join(dir, '..v2'));
  await writeFile(join(dir, '..v2', 'annotations'), 'a="2"');
  await symlink('..v2', join(dir, '..data_tmp'));
  await rename(join(dir, '..data_tmp'), join(dir, '..data'));
  await until(() => seen.length === 2);
  assert.deepEqual(seen, ['a="1"', 'a="2"']);
});
