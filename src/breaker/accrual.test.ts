import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FailureAccrual, type Outcome } from './accrual.ts';

function clock() {
  let now = 10_000;
  return { now: () => now, advance: (ms: number) => void (now += ms) };
}

const run = (a: FailureAccrual, outcome: Outcome) => a.admit()(outcome);

test('five failures in a row eject, after any number of successes; a success in between starts the count again', () => {
  const c = clock();
  const a = new FailureAccrual({ threshold: 5, now: c.now });
  for (let i = 0; i < 100; i++) run(a, 'success');
  for (let i = 0; i < 4; i++) run(a, 'failure');
  run(a, 'success');
  for (let i = 0; i < 4; i++) run(a, 'failure');
  assert.equal(a.state, 'closed', 'four in a row');
  assert.equal(a.consecutiveFailures, 4);
  run(a, 'failure');
  assert.equal(a.state, 'ejected');
  assert.equal(a.available, false);
});

test('the backoff doubles with each ejection in a row (1 s, 2 s, 4 s), one probe when it ends, a success closes and resets it', () => {
  const c = clock();
  const a = new FailureAccrual({ threshold: 1, now: c.now, baseEjectionMs: 1000, maxEjectionMs: 3000 });
  run(a, 'failure');
  assert.equal(a.ejectedForMs, 1000);
  c.advance(999);
  assert.equal(a.state, 'ejected');
  c.advance(1);
  assert.equal(a.state, 'probing');
  assert.equal(a.available, true);
  const probe = a.admit();
  assert.equal(a.available, false, 'one probe at a time');
  probe('failure');
  assert.equal(a.ejectedForMs, 2000, 'the probe failed: ejected again for twice as long');
  c.advance(2000);
  a.admit()('unreachable');
  assert.equal(a.ejectedForMs, 3000, 'capped');
  c.advance(3000);
  a.admit()('success');
  assert.equal(a.state, 'closed');
  run(a, 'failure');
  assert.equal(a.ejectedForMs, 1000, 'closed again: the backoff starts over');
});

test('a connection failure ejects at once, whatever the threshold (0 too)', () => {
  const c = clock();
  for (const threshold of [5, 0]) {
    const a = new FailureAccrual({ threshold, now: c.now });
    run(a, 'unreachable');
    assert.equal(a.state, 'ejected', `threshold ${threshold}`);
  }
  const off = new FailureAccrual({ threshold: 0, now: c.now });
  for (let i = 0; i < 50; i++) run(off, 'failure');
  assert.equal(off.state, 'closed', '0: answered failures never eject');
});

test('results of requests admitted before the ejection change nothing; an abandoned probe frees the slot', () => {
  const c = clock();
  const a = new FailureAccrual({ threshold: 2, now: c.now });
  const late = [a.admit(), a.admit(), a.admit()];
  late[0]!('failure');
  late[1]!('failure');
  assert.equal(a.ejectedForMs, 1000);
  late[2]!('success');
  assert.equal(a.state, 'ejected', 'a success admitted before the ejection does not close it');
  c.advance(1000);
  const probe = a.admit();
  probe('abandoned');
  assert.equal(a.available, true, 'the client went away: another request may probe');
  a.admit()('success');
  assert.equal(a.state, 'closed');
});
