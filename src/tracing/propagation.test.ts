// extractContext reads the canonical traceparent by position, other W3C forms with
// OpenTelemetry's parseTraceParent and B3 with its own reader (./b3.ts): for any headers, it must
// find what the OpenTelemetry propagators find (the reference below is how tsmesh read trace
// context before), seeded random inputs included.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ROOT_CONTEXT, defaultTextMapGetter, isSpanContextValid, trace } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { B3Propagator } from '@opentelemetry/propagator-b3';
import { extractContext, injectContext } from './propagation.ts';

type Headers = Record<string, string | string[] | number | undefined>;

const w3c = new W3CTraceContextPropagator();
const b3 = new B3Propagator();

/** The propagators' reading: W3C first, else B3 (deferred when B3 carries no decision). */
function reference(headers: Headers) {
  let ctx = headers['traceparent'] !== undefined ? w3c.extract(ROOT_CONTEXT, headers, defaultTextMapGetter) : ROOT_CONTEXT;
  let deferred = false;
  if (ctx === ROOT_CONTEXT) {
    const single = headers['b3'];
    if (single === undefined && headers['x-b3-traceid'] === undefined) return undefined;
    ctx = b3.extract(ROOT_CONTEXT, headers, defaultTextMapGetter);
    if (ctx === ROOT_CONTEXT) return undefined;
    const parts = String(single ?? '').trim().split('-');
    deferred = single !== undefined ? parts.length < 3 || parts[2]!.length > 1 : headers['x-b3-sampled'] === undefined && headers['x-b3-flags'] === undefined;
  }
  const sc = trace.getSpanContext(ctx);
  if (!sc || !isSpanContextValid(sc)) return undefined;
  return { traceId: sc.traceId, spanId: sc.spanId, traceFlags: sc.traceFlags, traceState: sc.traceState?.serialize(), deferred };
}

function ours(headers: Headers) {
  const found = extractContext(headers);
  if (!found) return undefined;
  const { traceId, spanId, traceFlags, traceState } = found.parent;
  return { traceId, spanId, traceFlags, traceState: traceState?.serialize(), deferred: found.deferred };
}

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const SPAN = '00f067aa0ba902b7';
const FIXED: Headers[] = [
  { traceparent: `00-${TRACE}-${SPAN}-01` },
  { traceparent: `00-${TRACE}-${SPAN}-00`, tracestate: 'congo=t61rcWkgMzE,rojo=00f067aa0ba902b7' },
  { traceparent: `00-${TRACE}-${SPAN}-01`, tracestate: ['a=1', 'b=2'] },
  { traceparent: `00-${TRACE}-${SPAN}-01`, tracestate: '' },
  { traceparent: `00-${TRACE}-${SPAN}-01`, tracestate: 'not a valid state' },
  { traceparent: `00-${TRACE}-${SPAN}-ff` },
  { traceparent: `01-${TRACE}-${SPAN}-09` },
  { traceparent: `ff-${TRACE}-${SPAN}-01` },
  { traceparent: `00-${TRACE.toUpperCase()}-${SPAN}-01` },
  { traceparent: `00-${'0'.repeat(32)}-${SPAN}-01` },
  { traceparent: `00-${TRACE}-${'0'.repeat(16)}-01` },
  { traceparent: `00-${TRACE}-${SPAN}-01-extra` },
  { traceparent: `01-${TRACE}-${SPAN}-01-extra` },
  { traceparent: ` 00-${TRACE}-${SPAN}-01` },
  { traceparent: `00-${TRACE}-${SPAN}-01 ` },
  { traceparent: `00-${TRACE}-${SPAN}-01\n` },
  { traceparent: `00_${TRACE}_${SPAN}_01` },
  { traceparent: [`00-${TRACE}-${SPAN}-01`, `00-${TRACE}-${SPAN}-00`] },
  { traceparent: [] },
  { traceparent: '' },
  { traceparent: 55 },
  { traceparent: 'garbage', 'x-b3-traceid': TRACE, 'x-b3-spanid': SPAN, 'x-b3-sampled': '1' },
  { 'x-b3-traceid': TRACE, 'x-b3-spanid': SPAN },
  { 'x-b3-traceid': TRACE.slice(16), 'x-b3-spanid': SPAN, 'x-b3-sampled': '0' },
  { 'x-b3-traceid': TRACE, 'x-b3-spanid': SPAN, 'x-b3-flags': '1' },
  { b3: `${TRACE}-${SPAN}-1` },
  { b3: `${TRACE}-${SPAN}` },
  { b3: `${TRACE}-${SPAN}-0-${SPAN}` },
  { b3: `${TRACE}-${SPAN}-${SPAN}` },
  { b3: '0' },
  { b3: `${TRACE.slice(16)}-${SPAN}-d` },
  { b3: `x${TRACE}-${SPAN}-1-${SPAN}` },
  { b3: `${TRACE}-${SPAN}-10` },
  { b3: `${TRACE.toUpperCase()}-${SPAN}-1` },
  { b3: `${'0'.repeat(32)}-${SPAN}-1` },
  { b3: [`${TRACE}-${SPAN}-1`, 'x'] },
  { b3: '', 'x-b3-traceid': TRACE, 'x-b3-spanid': SPAN, 'x-b3-sampled': '1' },
  { b3: 5, 'x-b3-traceid': TRACE, 'x-b3-spanid': SPAN },
  { 'x-b3-traceid': TRACE.toUpperCase(), 'x-b3-spanid': SPAN.toUpperCase(), 'x-b3-sampled': 'true' },
  { 'x-b3-traceid': TRACE, 'x-b3-spanid': SPAN, 'x-b3-sampled': 'yes' },
  { 'x-b3-traceid': TRACE, 'x-b3-spanid': SPAN, 'x-b3-sampled': 'yes', 'x-b3-flags': '1' },
  { 'x-b3-traceid': TRACE, 'x-b3-spanid': SPAN, 'x-b3-sampled': 1 },
  { 'x-b3-traceid': TRACE, 'x-b3-spanid': SPAN, 'x-b3-sampled': ['False', '1'] },
  { 'x-b3-traceid': 'abc', 'x-b3-spanid': SPAN },
  { 'x-b3-traceid': 7, 'x-b3-spanid': SPAN },
  { 'x-b3-traceid': TRACE, 'x-b3-spanid': `${SPAN}0` },
  { 'x-b3-traceid': TRACE, 'x-b3-spanid': '0'.repeat(16) },
  {},
];

test('fixed cases: the same parent, flags, trace state and deferral as the OpenTelemetry propagators', () => {
  for (const h of FIXED) assert.deepEqual(ours(h), reference(h), JSON.stringify(h));
});

test('seeded random traceparents around the canonical form read as the propagators read them', () => {
  let seed = 17; // mulberry32
  const rand = (n: number) => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (((t ^ (t >>> 14)) >>> 0) % n);
  };
  const CHARS = '0123456789abcdefABCDEF-fx \t0000000000ff';
  let sampledOnes = 0;
  for (let i = 0; i < 50_000; i++) {
    const id = (len: number) => Array.from({ length: len }, () => (rand(4) === 0 ? '0' : '0123456789abcdef'[rand(16)])).join('');
    let tp = `${rand(8) === 0 ? 'ff' : id(2)}-${rand(20) === 0 ? '0'.repeat(32) : id(32)}-${rand(20) === 0 ? '0'.repeat(16) : id(16)}-${id(2)}`;
    const edits = rand(3); // 0: canonical, then one or two characters changed, inserted or removed
    for (let e = 0; e < edits; e++) {
      const at = rand(tp.length + 1);
      const c = CHARS[rand(CHARS.length)]!;
      const op = rand(3);
      tp = op === 0 ? tp.slice(0, at) + c + tp.slice(at + 1) : op === 1 ? tp.slice(0, at) + c + tp.slice(at) : tp.slice(0, at) + tp.slice(at + 1);
    }
    const h: Headers = { traceparent: tp };
    const r = reference(h);
    assert.deepEqual(ours(h), r, tp);
    if (r) sampledOnes++;
  }
  assert.ok(sampledOnes > 10_000, `enough valid inputs among the random ones (${sampledOnes})`);
});

test('seeded random B3 headers (single and multi) read as the B3 propagator reads them', () => {
  let seed = 29; // mulberry32
  const rand = (n: number) => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) % n;
  };
  const CHARS = '0123456789abcdefABCDEF-d01x \t';
  const id = (len: number) => (rand(15) === 0 ? '0'.repeat(len) : Array.from({ length: len }, () => (rand(4) === 0 ? '0' : '0123456789abcdef'[rand(16)])).join(''));
  const edit = (v: string) => {
    for (let e = rand(3); e > 0; e--) {
      const at = rand(v.length + 1);
      const op = rand(3);
      const c = CHARS[rand(CHARS.length)]!;
      v = op === 0 ? v.slice(0, at) + c + v.slice(at + 1) : op === 1 ? v.slice(0, at) + c + v.slice(at) : v.slice(0, at) + v.slice(at + 1);
    }
    return v;
  };
  const SAMPLING = ['1', '0', 'd', 'true', 'True', 'false', 'False', 'yes', '', undefined];
  let found = 0;
  for (let i = 0; i < 50_000; i++) {
    const h: Headers = {};
    if (rand(2) === 0) {
      const parts = [id(rand(3) === 0 ? 16 : 32), id(16)];
      if (rand(3) > 0) parts.push(['1', '0', 'd', '01', 'x'][rand(5)]!);
      if (rand(3) === 0) parts.push(id(16));
      h['b3'] = edit(parts.join('-'));
    } else {
      h['x-b3-traceid'] = edit(id(rand(3) === 0 ? 16 : 32));
      h['x-b3-spanid'] = edit(id(16));
      const sampled = SAMPLING[rand(SAMPLING.length)];
      if (sampled !== undefined) h['x-b3-sampled'] = sampled;
      if (rand(4) === 0) h['x-b3-flags'] = ['1', '0'][rand(2)]!;
    }
    const r = reference(h);
    assert.deepEqual(ours(h), r, JSON.stringify(h));
    if (r) found++;
  }
  assert.ok(found > 10_000, `enough valid inputs among the random ones (${found})`);
});

test('what the proxy writes, the next proxy reads back', () => {
  const headers: Headers = { 'x-b3-flags': '1', b3: 'x' };
  injectContext(headers, { traceId: TRACE, spanId: SPAN, traceFlags: 1 });
  assert.deepEqual(ours(headers), { traceId: TRACE, spanId: SPAN, traceFlags: 1, traceState: undefined, deferred: false });
});

test('ids: lower-case hex from the random source, in order, never all zeros', async () => {
  const { createTracing } = await import('./tracing.ts');
  let call = 0;
  // the first pool is all zeros (every id would be zeros), the next counts up
  const fill = (into: Buffer) => {
    if (call++ === 0) into.fill(0);
    else for (let i = 0; i < into.length; i++) into[i] = i & 0xff;
  };
  const t = createTracing({ pod: { podName: 'p', namespace: 'default', nodeName: 'n' }, sampling: () => 0, exporter: null, env: {}, random: fill });
  const first = t.client({ headers: {} });
  assert.equal(first.context.traceId, '0'.repeat(31) + '1');
  assert.equal(first.context.spanId, '0'.repeat(15) + '1');
  while (call < 2) t.client({ headers: {} }); // use up the zero pool
  const next = t.client({ headers: {} });
  assert.match(next.context.traceId, /^[0-9a-f]{32}$/);
  assert.match(next.context.spanId, /^[0-9a-f]{16}$/);
  const bytes = Buffer.from(next.context.traceId + next.context.spanId, 'hex');
  for (let i = 1; i < bytes.length; i++) assert.equal(bytes[i], (bytes[i - 1]! + 1) & 0xff, 'the bytes of the new pool, in order');
  const always = createTracing({ pod: { podName: 'p', namespace: 'default', nodeName: 'n' }, sampling: () => 1, exporter: null, env: {} });
  assert.equal(always.client({ headers: {} }).sampled, true);
  await Promise.all([t.shutdown(100), always.shutdown(100)]);
});
