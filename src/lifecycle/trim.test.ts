import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { mallocTrim, startMemoryTrim } from './trim.ts';

const log = pino({ level: 'silent' });

test('trims when RSS is the growth above its lowest, and not otherwise', (t) => {
  t.mock.timers.enable({ apis: ['setInterval'] });
  let rss = 100;
  let trims = 0;
  const trim = () => {
    trims++;
    rss = 110; // what glibc gave back
    return 1;
  };
  const trimmer = startMemoryTrim({ log, intervalMs: 1000, growthBytes: 50, rss: () => rss, trim });
  t.after(() => trimmer.stop());
  rss = 140;
  t.mock.timers.tick(1000);
  assert.equal(trims, 0, 'under the growth: nothing');
  rss = 300; // a burst
  t.mock.timers.tick(1000);
  assert.equal(trims, 1, 'over it: one trim');
  assert.equal(rss, 110);
  t.mock.timers.tick(1000);
  assert.equal(trims, 1, 'back down: no more');
});

test("glibc's malloc_trim is bound on Linux with glibc", { skip: process.platform !== 'linux' }, () => {
  const trim = mallocTrim();
  assert.ok(trim, 'bound');
  assert.ok([0, 1].includes(trim()));
});
