import { test } from 'node:test';
import assert from 'node:assert/strict';
import { defaultsOf, policyAnnotations, type Policy } from '../config/annotations.ts';
import { EndpointHealth } from './endpoint-health.ts';

const failure = { failure: true, unreachable: false } as never;
const success = { failure: false, unreachable: false } as never;
const tick = () => new Promise((resolve) => setImmediate(resolve));

function health(over: Partial<Policy>): EndpointHealth {
  const policy = { ...defaultsOf(policyAnnotations), 'consecutive-failures': 0, ...over } as Policy;
  return new EndpointHealth('10.0.0.1:8080', 'svc', policy, () => undefined);
}

test('the windowed breaker counts an attempt when it ends: two failures of two ended open it, whatever is still in flight', async (t) => {
  const h = health({ 'breaker-volume-threshold': 2, 'breaker-error-threshold': 50 });
  t.after(() => h.close());
  const attempts = [h.admit(), h.admit(), h.admit(), h.admit()];
  attempts[0]!.settle(failure);
  await tick();
  assert.equal(h.breaker, 'closed', 'one call counted, under the volume threshold');
  attempts[1]!.settle(failure);
  await tick();
  assert.equal(h.breaker, 'open', '2 of 2 ended calls failed (counted when they started, 2 of 4: 50 %, not over it)');
  attempts[2]!.settle(success);
  attempts[3]!.settle(success);
  await tick();
  assert.equal(h.breaker, 'open', 'results of attempts that started before it opened change nothing');
});

test('half-open: one probe; results of older attempts do not decide; the probe closes it', async (t) => {
  const h = health({ 'breaker-volume-threshold': 1, 'breaker-error-threshold': 50, 'breaker-reset-timeout': 50 });
  t.after(() => h.close());
  const old = h.admit();
  h.admit().settle(failure);
  await tick();
  assert.equal(h.breaker, 'open');
  await new Promise((resolve) => setTimeout(resolve, 80));
  assert.equal(h.breaker, 'half-open');
  assert.equal(h.breakerAvailable, true);
  const probe = h.admit();
  assert.equal(h.breakerAvailable, false, 'one probe at a time');
  old.settle(failure);
  await tick();
  assert.equal(h.breaker, 'half-open', 'an attempt older than the opening does not decide');
  probe.settle(success);
  await tick();
  assert.equal(h.breaker, 'closed');
  assert.equal(h.breakerAvailable, true);
});

test('an attempt abandoned by its client counts neither way: abandoned ones do not dilute the error share', async (t) => {
  const h = health({ 'breaker-volume-threshold': 2, 'breaker-error-threshold': 50 });
  t.after(() => h.close());
  for (let i = 0; i < 3; i++) h.admit().settle(undefined);
  h.admit().settle(failure);
  await tick();
  assert.equal(h.breaker, 'closed', 'one call counted, under the volume threshold (abandoned ones are not calls)');
  h.admit().settle(failure);
  await tick();
  assert.equal(h.breaker, 'open', '2 failures of 2 counted calls (as successes, the 3 abandoned made it 2 of 5: 40 %)');
});

test('half-open: an abandoned probe frees the probe slot, and the next attempt is the probe', async (t) => {
  const h = health({ 'breaker-volume-threshold': 1, 'breaker-error-threshold': 50, 'breaker-reset-timeout': 50 });
  t.after(() => h.close());
  h.admit().settle(failure);
  await tick();
  assert.equal(h.breaker, 'open');
  await new Promise((resolve) => setTimeout(resolve, 80));
  const probe = h.admit();
  assert.equal(h.breakerAvailable, false, 'one probe at a time');
  probe.settle(undefined);
  await tick();
  assert.equal(h.breaker, 'half-open', 'an abandoned probe decides nothing');
  assert.equal(h.breakerAvailable, true, 'its slot is free again');
  h.admit().settle(success);
  await tick();
  assert.equal(h.breaker, 'closed');
});
