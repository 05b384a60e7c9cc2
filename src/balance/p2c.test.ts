import { test } from 'node:test';
import assert from 'node:assert/strict';
import { P2CBalancer } from './p2c.ts';
import type { Endpoint } from '../registry/model.ts';

const ep = (key: string): Endpoint => ({ key, ip: key, port: 80, pod: { name: key, namespace: 'default', ip: key, labels: {}, serviceAccount: 'default', meshed: false, ready: true } });

test('of two, the endpoint with the lower latency x (pending + 1) wins', () => {
  const b = new P2CBalancer();
  const [fast, slow] = [ep('fast'), ep('slow')];
  b.start(fast).done(2);
  b.start(slow).done(20);
  for (let i = 0; i < 10; i++) assert.equal(b.pick([fast, slow]), fast);
  // load on the fast one: 2 ms x 11 > 20 ms x 1
  const leases = Array.from({ length: 10 }, () => b.start(fast));
  assert.equal(b.pick([fast, slow]), slow);
  for (const l of leases) l.done(undefined);
});

test('an endpoint not yet measured gets the next request, one at a time', () => {
  const b = new P2CBalancer();
  const [known, fresh] = [ep('known'), ep('new')];
  b.start(known).done(0.2);
  assert.equal(b.pick([known, fresh]), fresh, 'untried: taken at once');
  const probe = b.start(fresh);
  assert.equal(b.pick([known, fresh]), known, 'while its first request is out, the others take traffic');
  probe.done(0.1);
  assert.equal(b.pick([known, fresh]), fresh, 'measured faster: preferred');
});

test('a slow answer raises the estimate at once; fast ones bring it down over time', () => {
  const b = new P2CBalancer();
  const [a, c] = [ep('a'), ep('c')];
  b.start(a).done(1);
  b.start(c).done(5);
  b.start(a).done(50); // a spike
  assert.equal(b.pick([a, c]), c);
  assert.equal(b.snapshot().a!.ewmaMs, 50);
});
