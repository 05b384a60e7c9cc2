import { test } from 'node:test';
import assert from 'node:assert/strict';
import { classify, classifyGrpc, retryCondition } from './classify.ts';
import { ProxyError } from '../errors/errors.ts';

const DEFAULT_RETRY_ON = ['connect-failure', 'reset', 'gateway-error'] as const;

test('gRPC UNAVAILABLE is an endpoint failure retried by default; INTERNAL only with 5xx', () => {
  const unavailable = classify(200, undefined, 14);
  assert.equal(unavailable.failure, true);
  assert.equal(retryCondition(unavailable, DEFAULT_RETRY_ON), 'gateway-error');
  const internal = classify(200, undefined, 13);
  assert.equal(internal.failure, true);
  assert.equal(retryCondition(internal, DEFAULT_RETRY_ON), undefined);
  assert.equal(retryCondition(internal, ['5xx']), '5xx');
  assert.equal(retryCondition(unavailable, ['connect-failure']), undefined, 'retry-on without gateway-error/5xx turns it off');
});

test("the caller's own gRPC errors are not the endpoint's failures", () => {
  for (const code of [0, 1, 3, 5, 6, 7, 8, 9, 11, 12, 16]) assert.equal(classifyGrpc(code).failure, false, `status ${code}`);
  assert.deepEqual(classifyGrpc(10).conditions, ['retriable-4xx']);
  assert.equal(classifyGrpc(4).failure, true);
  assert.ok(!classifyGrpc(4).conditions.includes('gateway-error'));
});

test('an HTTP error status wins over a grpc-status; proxy errors classify as before', () => {
  assert.deepEqual(classify(503, undefined, 0).conditions, ['5xx', 'gateway-error']);
  assert.equal(classify(200, undefined, undefined).failure, false);
  assert.deepEqual(classify(undefined, new ProxyError('UPSTREAM_RESET', 'x')).conditions, ['reset', '5xx']);
});

test("a peer sidecar's connect-failure is this endpoint's connection failure: ejected at once, retried under connect-failure", () => {
  const direct = classify(undefined, new ProxyError('CONNECT_FAILURE', 'refused'));
  const peer = classify(502, undefined, undefined, 'connect-failure');
  assert.equal(peer.failure, true);
  assert.equal(peer.unreachable, true);
  assert.deepEqual(peer.conditions, direct.conditions);
  assert.equal(retryCondition(peer, ['connect-failure']), 'connect-failure');
  assert.equal(retryCondition(peer, DEFAULT_RETRY_ON), 'connect-failure');
  assert.equal(direct.unreachable, true);
  const grpc = classify(200, undefined, 14, 'connect-failure');
  assert.equal(grpc.unreachable, true, 'the gRPC form: UNAVAILABLE with the reason');
});

test("other peer errors, and a reason on a status it does not go with, classify by status", () => {
  const reset = classify(502, undefined, undefined, 'upstream-reset');
  assert.equal(reset.failure, true);
  assert.ok(!reset.unreachable, 'a reset may have reached the app: counted, not ejected at once');
  assert.deepEqual(reset.conditions, ['5xx', 'gateway-error']);
  assert.ok(!classify(500, undefined, undefined, 'connect-failure').unreachable, 'connect-failure goes with 502');
  assert.equal(classify(200, undefined, undefined, 'connect-failure').failure, false);
  assert.ok(!classify(502, undefined).unreachable, 'a plain 502 from an app');
});
