import { test } from 'node:test';
import assert from 'node:assert/strict';
import { renderWaterfall } from './waterfall.ts';
import type { FinishedSpan } from './recorder.ts';

const T = 'a'.repeat(32);
const span = (o: Partial<FinishedSpan> & Pick<FinishedSpan, 'spanId' | 'name' | 'service' | 'startUs' | 'durationUs'>): FinishedSpan => ({
  traceId: T,
  parentSpanId: undefined,
  kind: 'client',
  status: 'unset',
  attributes: {},
  ...o,
});

// Out of order and from two sidecars, as the demo collects them.
const spans: FinishedSpan[] = [
  span({ spanId: 's', parentSpanId: 'c', name: 'GET', service: 'web-app', kind: 'server', startUs: 1_004_000, durationUs: 4_000, attributes: { 'http.response.status_code': 200 } }),
  span({ spanId: 'a2', parentSpanId: 'c', name: 'GET attempt 2', service: 'pod-b', kind: 'internal', startUs: 1_003_000, durationUs: 6_000 }),
  span({ spanId: 'c', name: 'GET', service: 'pod-b', startUs: 1_000_000, durationUs: 10_000, attributes: { 'http.response.status_code': 200 } }),
  span({ spanId: 'a1', parentSpanId: 'c', name: 'GET attempt 1', service: 'pod-b', kind: 'internal', startUs: 1_000_500, durationUs: 2_000, status: 'error', attributes: { 'error.type': 'connect-failure' } }),
];

test('renders one line per span in call order with offset, duration and a bar on a shared axis', () => {
  const out = renderWaterfall(spans, { width: 20 });
  assert.equal(
    out,
    [
      `trace ${T}  10.000 ms  4 spans`,
      'service  span                start   duration',
      'pod-b    GET              0.000 ms  10.000 ms  |████████████████████| 200',
      'pod-b      GET attempt 1  0.500 ms   2.000 ms  | ████               |  connect-failure',
      'pod-b      GET attempt 2  3.000 ms   6.000 ms  |      ████████████  |',
      'web-app    GET            4.000 ms   4.000 ms  |        ████████    | 200',
      '',
    ].join('\n'),
  );
});

test('orphans start their own tree, traces are rendered one after another, colours are optional', () => {
  const other = span({ traceId: 'b'.repeat(32), spanId: 'x', name: 'POST', service: 'pod-c', startUs: 5, durationUs: 1 });
  const orphan = span({ spanId: 'o', parentSpanId: 'missing', name: 'GET', service: 'web-app', kind: 'server', startUs: 1_001_000, durationUs: 1_000, status: 'error', statusMessage: 'boom' });
  const out = renderWaterfall([...spans, orphan, other], { width: 10, color: true });
  const blocks = out.split(/\n(?=trace )/);
  assert.equal(blocks.length, 2);
  assert.ok(blocks[0]!.startsWith(`trace ${'b'.repeat(32)}`), 'the trace that started first comes first');
  assert.match(blocks[1]!, /\nweb-app {2}GET {14}1\.000 ms/, 'the orphan at depth 0, after the tree that started before it');
  assert.ok(blocks[1]!.includes('\x1b[31m█\x1b[0m') && blocks[1]!.includes('error: boom'), 'an error span is red, with its message when it has no error.type');
  assert.equal(renderWaterfall([]), '');
});

test('a single zero-length span still gets a visible bar', () => {
  const out = renderWaterfall([span({ spanId: 'z', name: 'GET', service: 'p', startUs: 0, durationUs: 0 })], { width: 10 });
  assert.match(out, /\|█ {9}\|/);
});
