import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeGrpcMessage, formatGrpcTimeout, grpcStatusLabel, grpcStatusOf, isGrpc, parseGrpcTimeout } from './grpc.ts';

test('grpc-timeout: every unit, and malformed values named', () => {
  assert.equal(parseGrpcTimeout('2H'), 7_200_000);
  assert.equal(parseGrpcTimeout('3M'), 180_000);
  assert.equal(parseGrpcTimeout('5S'), 5000);
  assert.equal(parseGrpcTimeout('250m'), 250);
  assert.equal(parseGrpcTimeout('1500u'), 1.5);
  assert.equal(parseGrpcTimeout('99999999n'), 99.999999);
  assert.equal(parseGrpcTimeout(undefined), undefined);
  for (const bad of ['', '10', '123456789m', '1s', '-1S', '1.5S']) {
    const r = parseGrpcTimeout(bad);
    assert.ok(r instanceof Error && r.message.includes(`"${bad}"`), bad);
  }
});

test('grpc-timeout is written in whole milliseconds, rounded up, or coarser units when large', () => {
  assert.equal(formatGrpcTimeout(0.2), '1m');
  assert.equal(formatGrpcTimeout(1234.5), '1235m');
  assert.equal(formatGrpcTimeout(2e8), '200000S');
  assert.equal(parseGrpcTimeout(formatGrpcTimeout(42)), 42);
});

test('gRPC content types, statuses and labels', () => {
  assert.ok(isGrpc({ 'content-type': 'application/grpc' }));
  assert.ok(isGrpc({ 'content-type': 'application/grpc+proto' }));
  assert.ok(!isGrpc({ 'content-type': 'application/grpc-web' }));
  assert.ok(!isGrpc({ 'content-type': 'application/json' }));
  assert.equal(grpcStatusOf({ 'grpc-status': '14' }), 14);
  assert.equal(grpcStatusOf({ 'grpc-status': 'x' }), undefined);
  assert.equal(grpcStatusLabel(14), 'UNAVAILABLE');
  assert.equal(grpcStatusLabel(99), 'unknown');
  assert.equal(grpcStatusLabel(undefined), 'none');
  assert.equal(encodeGrpcMessage('50% off: ü'), '50%25 off: %C3%BC');
});
