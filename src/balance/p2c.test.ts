import { test } from 'node:test';
import assert from 'node:assert/strict';
import { P2CBalancer, BALANCER_DEFAULTS } from './p2c.ts';
import type { Endpoint } from '../registry/model.ts';

const ep = (key: string): Endpoint => ({ key, ip: key, port: 80, pod: { name: key, namespace: 'default', ip: key, labels: {}, serviceAccount: 'default', meshed: false, ready: true } });

/** A clock the test moves by hand. */
function clock() {
  let now = 1000;
  return { now: () => now, advance: (ms: number) => void (now += ms) };
}

/** A seeded random source (xorshift32), so shares are the same on every run. */
function seeded(seed = 42): () => number {
  let x = seed;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

/** Two samples: the first (which paid for the connection's set-up) is not taken. */
function measure(b: P2CBalancer, e: Endpoint, ms: number): void {
  b.start(e).done(ms);
  b.start(e).done(ms);
}

test('of two, the endpoint with the lower latency x (pending + 1) wins', () => {
  const c = clock();
  const b = new P2CBalancer({ now: c.now });
  const [fast, slow] = [ep('fast'), ep('slow')];
  measure(b, fast, 2);
  measure(b, slow, 20);
  for (let i = 0; i < 10; i++) assert.equal(b.pick([fast, slow]), fast);
  // load on the fast one: 2 ms x 11 > 20 ms x 1
  const leases = Array.from({ length: 10 }, () => b.start(fast));
  assert.equal(b.pick([fast, slow]), slow);
  for (const l of leases) l.done(undefined);
});

test('a new endpoint starts at the default RTT, and its first sample (with the handshake) is not taken', () => {
  const c = clock();
  const b = new P2CBalancer({ now: c.now, defaultRttMs: 5 });
  const fresh = ep('new');
  assert.equal(b.cost('new'), 5);
  b.start(fresh).done(40); // connect + TLS + the request
  assert.equal(b.cost('new'), 5, 'the first sample left the estimate at the default');
  b.start(fresh).done(40);
  assert.equal(b.cost('new'), 40, 'the second one counts (a peak: at once)');
});

test('the estimate decays toward zero with the time since its last update, computed when read', () => {
  const c = clock();
  const decayMs = 200;
  const b = new P2CBalancer({ now: c.now, decayMs });
  const a = ep('a');
  measure(b, a, 50);
  assert.equal(b.cost('a'), 50);
  c.advance(decayMs);
  assert.ok(Math.abs(b.cost('a') - 50 / Math.E) < 1e-9, `one time constant later: 50/e, got ${b.cost('a')}`);
  c.advance(decayMs);
  assert.ok(Math.abs(b.cost('a') - 50 / Math.E ** 2) < 1e-9, 'reads in between do not change the curve');
  assert.equal(b.snapshot().a!.ewmaMs, Math.round((50 / Math.E ** 2) * 100) / 100);
});

test('a stale high estimate is forgotten: an endpoint left out after one slow answer gets traffic again without a new sample', () => {
  const c = clock();
  const b = new P2CBalancer({ now: c.now, random: seeded() });
  const [steady, spiked] = [ep('steady'), ep('spiked')];
  measure(b, steady, 2);
  measure(b, spiked, 2);
  b.start(spiked).done(40); // one slow answer: the estimate jumps to it
  let toSpiked = 0;
  for (let i = 0; i < 200; i++) {
    const chosen = b.pick([steady, spiked])!;
    if (chosen === spiked) toSpiked++;
    b.start(chosen).done(2);
    c.advance(10); // paced calls: 100/s
  }
  assert.ok(toSpiked >= 60, `the spiked endpoint came back: ${toSpiked} of 200`);
});

test('sequential calls: two identical endpoints, one added later, each get at least 30 % within 2 s', () => {
  const c = clock();
  const random = seeded(7);
  const b = new P2CBalancer({ now: c.now, random });
  const [old, added] = [ep('old'), ep('added')];
  const latency = (first: boolean) => 2 * (0.7 + random() * 0.8) + (random() < 0.02 ? 10 : 0) + (first ? 15 : 0);
  const seen = new Set<string>();
  const call = (candidates: Endpoint[]) => {
    const e = b.pick(candidates)!;
    const ms = latency(!seen.has(e.key));
    seen.add(e.key);
    b.start(e).done(ms);
    c.advance(ms + 5); // one request at a time, 5 ms apart
    return e;
  };
  for (let i = 0; i < 300; i++) call([old]);
  const counts = { old: 0, added: 0 };
  const end = c.now() + 2000;
  while (c.now() < end) counts[call([old, added]).key as 'old' | 'added']++;
  const share = counts.added / (counts.old + counts.added);
  assert.ok(share >= 0.3 && share <= 0.7, `added ${counts.added}, old ${counts.old}`);
});

test('an endpoint 10x slower gets under 10 % of concurrent calls', () => {
  const c = clock();
  const random = seeded(3);
  const b = new P2CBalancer({ now: c.now, random });
  const eps = [ep('fast1'), ep('fast2'), ep('slow')];
  const base: Record<string, number> = { fast1: 3, fast2: 3, slow: 30 };
  const counts: Record<string, number> = { fast1: 0, fast2: 0, slow: 0 };
  // 6 clients, each sending its next request when the last one is answered
  const due: { at: number; done: () => void }[] = [];
  const send = () => {
    const e = b.pick(eps)!;
    counts[e.key]!++;
    const lease = b.start(e);
    const ms = base[e.key]! * (0.8 + random() * 0.4);
    due.push({ at: c.now() + ms, done: () => lease.done(ms) });
  };
  for (let i = 0; i < 6; i++) send();
  for (let n = 0; n < 3000; n++) {
    due.sort((x, y) => x.at - y.at);
    const next = due.shift()!;
    c.advance(next.at - c.now());
    next.done();
    send();
  }
  const share = counts.slow! / (counts.fast1! + counts.fast2! + counts.slow!);
  assert.ok(share < 0.1, `slow share ${(share * 100).toFixed(1)} % (${JSON.stringify(counts)})`);
  assert.ok(counts.slow! > 0, 'the slow one is still sampled now and then');
});

test('failures never make an endpoint cheaper: a fast-failing endpoint loses to a slower healthy one', () => {
  const c = clock();
  const b = new P2CBalancer({ now: c.now, random: seeded() });
  const [healthy, failing] = [ep('healthy'), ep('failing')];
  measure(b, healthy, 5);
  measure(b, failing, 5);
  const before = b.cost('failing');
  b.start(failing).done(0.2, true); // a 502 in 0.2 ms
  assert.ok(b.cost('failing') >= before * BALANCER_DEFAULTS.failurePenalty, `penalised: ${b.cost('failing')}`);
  let toFailing = 0;
  for (let i = 0; i < 100; i++) {
    const chosen = b.pick([healthy, failing])!;
    if (chosen === failing) {
      toFailing++;
      b.start(failing).done(0.2, true);
    } else b.start(healthy).done(5);
    c.advance(5);
  }
  assert.ok(toFailing <= 5, `the failing endpoint was chosen ${toFailing} times of 100`);
});

test('an abandoned attempt only releases its pending count', () => {
  const c = clock();
  const b = new P2CBalancer({ now: c.now });
  const a = ep('a');
  measure(b, a, 8);
  const lease = b.start(a);
  assert.equal(b.cost('a'), 16);
  lease.done(undefined);
  lease.done(100); // a second call is ignored
  assert.equal(b.cost('a'), 8);
});

test('costs within the tie factor are a tie, decided at random; beyond it the cheaper one always wins', () => {
  const c = clock();
  const b = new P2CBalancer({ now: c.now, random: seeded(5), tieFactor: 1.25 });
  const [x, y, z] = [ep('x'), ep('y'), ep('z')];
  measure(b, x, 10);
  measure(b, y, 12); // within 25 %
  measure(b, z, 13); // 30 % above x
  const counts = { x: 0, y: 0 };
  for (let i = 0; i < 200; i++) counts[b.pick([x, y])!.key as 'x' | 'y']++;
  assert.ok(counts.x > 60 && counts.y > 60, `near-equal costs share: ${JSON.stringify(counts)}`);
  for (let i = 0; i < 50; i++) assert.equal(b.pick([x, z]), x);
});
