// The tracing module against a real OTLP/HTTP receiver (test/harness/otlp-receiver.ts): spans
// cross the wire as protobuf (and JSON), are decoded, and must form one trace across hops.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import type { IncomingHttpHeaders } from 'node:http';
import { Registry } from 'prom-client';
import { createTracing, type Tracing, type TracingOptions } from '../src/tracing/index.ts';
import { ProxyError } from '../src/errors/errors.ts';
import { podAnnotations } from '../src/config/annotations.ts';
import { seededRandom } from './harness/random.ts';
import { startOtlpReceiver, OTLP_KIND, OTLP_STATUS, type OtlpReceiver, type ReceivedSpan } from './harness/otlp-receiver.ts';

const open: { close(): Promise<unknown> }[] = [];
after(async () => {
  for (const o of open.reverse()) await o.close();
});

async function receiver(mode?: 'ok' | 'hang'): Promise<OtlpReceiver> {
  const r = await startOtlpReceiver(mode ? { mode } : {});
  open.push(r);
  return r;
}

function tracing(options: Partial<TracingOptions> & { env: NodeJS.ProcessEnv }): Tracing {
  const t = createTracing({
    pod: { podName: 'pod-b-7d4b9c6f5-x2x9z', namespace: 'default', nodeName: 'node-1' },
    sampling: () => 1,
    queue: { scheduledDelayMillis: 20 },
    ...options,
  });
  open.push({ close: () => t.shutdown(1000) });
  return t;
}

/** What an app's request looks like to the sidecar. */
const request = (headers: IncomingHttpHeaders = {}, method = 'GET', url = '/hello?token=secret') => ({
  method,
  url,
  httpVersion: '1.1',
  headers: { host: 'pod-service', 'user-agent': 'curl/8', ...headers } as IncomingHttpHeaders & Record<string, string | string[] | undefined>,
});

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-0([01])$/;

test('a CLIENT span and the SERVER span continuing it from the injected headers form one trace, exported as OTLP protobuf', async () => {
  const r = await receiver();
  const env = { OTEL_EXPORTER_OTLP_ENDPOINT: r.endpoint };
  const b = tracing({ env, pod: { podName: 'pod-b-7d4b9c6f5-x2x9z', namespace: 'default', nodeName: 'node-1' } });
  const a = tracing({ env, pod: { podName: 'pod-a', namespace: 'shop', labels: { app: 'web-app' } } });
  assert.equal(b.exportTarget?.url, `${r.endpoint}/v1/traces`);
  assert.equal(b.exportTarget?.protocol, 'http/protobuf');

  const out = request();
  const client = b.client(out);
  assert.equal(client.sampled, true);
  client.setDestination('pod-service.default');
  client.inject(out.headers);
  const [, injectedTrace, injectedSpan, flag] = TRACEPARENT.exec(String(out.headers['traceparent']))!;
  assert.equal(injectedTrace, client.context.traceId);
  assert.equal(injectedSpan, client.context.spanId);
  assert.equal(flag, '1');
  assert.equal(out.headers['x-b3-traceid'], client.context.traceId);
  assert.equal(out.headers['x-b3-spanid'], client.context.spanId);
  assert.equal(out.headers['x-b3-sampled'], '1');

  // pod-a's sidecar receives the request with those headers.
  const server = a.server({ ...out, url: '/hello?token=secret' }, { address: '10.0.0.7', port: 40123, identity: 'spiffe://cluster.local/ns/default/sa/pod-b' });
  assert.equal(server.context.traceId, client.context.traceId);
  const toApp = { ...out.headers };
  server.inject(toApp);
  assert.equal(TRACEPARENT.exec(String(toApp['traceparent']))![2], server.context.spanId, 'the app sees the SERVER span as its parent');
  server.end({ status: 200 });
  client.end({ status: 200 });

  const spans = await r.waitForSpans(2);
  const c = spans.find((s) => s.kind === OTLP_KIND.CLIENT)!;
  const s = spans.find((s) => s.kind === OTLP_KIND.SERVER)!;
  assert.ok(c && s, `one CLIENT and one SERVER span, got ${spans.map((x) => x.kind).join(',')}`);
  assert.ok(spans.every((x) => x.encoding === 'protobuf'));
  assert.equal(s.traceId, c.traceId);
  assert.equal(s.parentSpanId, c.spanId, "the SERVER span's parent is the CLIENT span");
  assert.equal(c.parentSpanId, undefined, 'the CLIENT span started a new trace');
  assert.equal(c.name, 'GET');
  assert.equal(s.name, 'GET');

  assert.deepEqual(
    { ...c.attributes },
    {
      'http.request.method': 'GET',
      'server.address': 'pod-service',
      'server.port': 80,
      'url.full': 'http://pod-service/hello',
      'url.path': '/hello',
      'network.protocol.version': '1.1',
      'user_agent.original': 'curl/8',
      'tsmesh.destination.service': 'pod-service.default',
      'http.response.status_code': 200,
    },
  );
  assert.equal(s.attributes['http.request.method'], 'GET');
  assert.equal(s.attributes['url.path'], '/hello', 'no query string in spans');
  assert.equal(s.attributes['url.scheme'], 'http');
  assert.equal(s.attributes['network.peer.address'], '10.0.0.7');
  assert.equal(s.attributes['network.peer.port'], 40123);
  assert.equal(s.attributes['client.address'], '10.0.0.7');
  assert.equal(s.attributes['tsmesh.peer.identity'], 'spiffe://cluster.local/ns/default/sa/pod-b');
  assert.equal(s.attributes['http.response.status_code'], 200);
  assert.equal(s.status.code, OTLP_STATUS.UNSET);

  assert.equal(c.resource['service.name'], 'pod-b', 'workload from the Deployment pod name');
  assert.equal(c.resource['k8s.pod.name'], 'pod-b-7d4b9c6f5-x2x9z');
  assert.equal(c.resource['k8s.namespace.name'], 'default');
  assert.equal(c.resource['k8s.node.name'], 'node-1');
  assert.equal(s.resource['service.name'], 'web-app', 'workload from the app label');
  assert.equal(s.resource['k8s.namespace.name'], 'shop');
  assert.equal(s.resource['k8s.node.name'], undefined);
  assert.ok(r.requests.every((q) => q.path === '/v1/traces' && q.contentType === 'application/x-protobuf'));
});

test("an incoming traceparent is joined, tracestate kept, and the app's trace headers replaced", async () => {
  const r = await receiver();
  const t = tracing({ env: { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: r.tracesUrl } });
  const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
  const parent = '00f067aa0ba902b7';
  const out = request({ traceparent: `00-${traceId}-${parent}-01`, tracestate: 'vendor=abc', b3: `${traceId}-${parent}-1`, 'x-b3-parentspanid': '1111111111111111' });
  const client = t.client(out);
  client.inject(out.headers);
  client.end({ status: 204 });
  assert.equal(client.context.traceId, traceId);
  assert.equal(out.headers['traceparent'], `00-${traceId}-${client.context.spanId}-01`);
  assert.equal(out.headers['tracestate'], 'vendor=abc');
  assert.equal(out.headers['b3'], undefined, 'the incoming single b3 header is removed');
  assert.equal(out.headers['x-b3-parentspanid'], undefined);
  assert.equal(out.headers['x-b3-spanid'], client.context.spanId);
  const [span] = await r.waitForSpans(1);
  assert.equal(span!.traceId, traceId);
  assert.equal(span!.parentSpanId, parent);
  assert.equal(span!.traceState, 'vendor=abc');
});

test('B3 single and multi headers in keep the trace id (64-bit ids padded); W3C wins over B3', () => {
  const t = tracing({ env: {} });
  const traceId = '80f198ee56343ba864fe8b2a57d3eff7';
  const single = t.client(request({ b3: `${traceId}-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90` }));
  assert.equal(single.context.traceId, traceId);
  assert.equal(single.sampled, true);

  const multi = t.server(request({ 'x-b3-traceid': traceId, 'x-b3-spanid': 'e457b5a2e4d86bd1', 'x-b3-sampled': '1' }));
  assert.equal(multi.context.traceId, traceId);

  const short = t.client(request({ 'x-b3-traceid': 'a3ce929d0e0e4736', 'x-b3-spanid': 'e457b5a2e4d86bd1', 'x-b3-sampled': '1' }));
  assert.equal(short.context.traceId, '0000000000000000a3ce929d0e0e4736');

  const unsampled = t.client(request({ 'x-b3-traceid': traceId, 'x-b3-spanid': 'e457b5a2e4d86bd1', 'x-b3-sampled': '0' }));
  assert.equal(unsampled.context.traceId, traceId);
  assert.equal(unsampled.sampled, false, "the caller's decision not to sample is kept");

  const both = t.client(request({ traceparent: `00-${'1'.repeat(32)}-${'2'.repeat(16)}-01`, 'x-b3-traceid': traceId, 'x-b3-spanid': 'e457b5a2e4d86bd1' }));
  assert.equal(both.context.traceId, '1'.repeat(32));

  const malformed = t.client(request({ traceparent: '00-zz-yy-01', b3: 'not-a-context' }));
  assert.notEqual(malformed.context.traceId, traceId);
  assert.match(malformed.context.traceId, /^[0-9a-f]{32}$/, 'a malformed context starts a new trace');
  for (const s of [single, multi, short, unsampled, both, malformed]) s.end({ status: 200 });
});

test('B3 without a sampling decision (deferred) keeps the trace id and is sampled with the ratio', () => {
  let ratio = 0;
  const t = tracing({ env: {}, sampling: () => ratio });
  const traceId = '80f198ee56343ba864fe8b2a57d3eff7';
  const headers = { 'x-b3-traceid': traceId, 'x-b3-spanid': 'e457b5a2e4d86bd1' };
  const off = t.client(request(headers));
  assert.equal(off.context.traceId, traceId);
  assert.equal(off.sampled, false);
  ratio = 1;
  const on = t.server(request({ b3: `${traceId}-e457b5a2e4d86bd1` }));
  assert.equal(on.context.traceId, traceId);
  assert.equal(on.sampled, true);
  off.end({ status: 200 });
  on.end({ status: 200 });
});

test('attempt spans are children of the CLIENT span with attempt number, endpoint and outcome; errors carry the proxy reason', async () => {
  const r = await receiver();
  const t = tracing({ env: { OTEL_EXPORTER_OTLP_ENDPOINT: r.endpoint } });
  const client = t.client(request({}, 'PUT', 'http://pod-service:8080/items/7'));
  const first = client.attempt(1, { ip: '10.244.0.10', port: 8080, pod: 'pod-a-1' });
  first.end({ status: 502, error: new ProxyError('CONNECT_FAILURE', 'cannot connect to upstream: ECONNREFUSED'), outcome: 'retry' });
  const second = client.attempt(2, { ip: 'fd00::11', port: 8080 });
  second.end({ status: 503, outcome: 'failure' });
  const err = new ProxyError('UPSTREAM_RESET', 'upstream closed the connection mid-response');
  client.end({ status: err.status, error: err });

  const spans = await r.waitForSpans(3);
  const c = spans.find((s) => s.kind === OTLP_KIND.CLIENT)!;
  const attempts = spans.filter((s) => s.kind === OTLP_KIND.INTERNAL).sort((x, y) => Number(x.attributes['tsmesh.attempt']) - Number(y.attributes['tsmesh.attempt']));
  assert.equal(attempts.length, 2);
  for (const a of attempts) {
    assert.equal(a.parentSpanId, c.spanId);
    assert.equal(a.traceId, c.traceId);
  }
  assert.equal(c.name, 'PUT');
  assert.equal(c.attributes['server.address'], 'pod-service');
  assert.equal(c.attributes['server.port'], 8080);
  assert.equal(c.attributes['url.full'], 'http://pod-service:8080/items/7');
  assert.equal(c.attributes['error.type'], 'upstream-reset');
  assert.equal(c.status.code, OTLP_STATUS.ERROR);
  assert.match(c.status.message, /^upstream-reset: /);

  const [a1, a2] = attempts;
  assert.equal(a1!.name, 'PUT attempt 1');
  assert.equal(a1!.attributes['tsmesh.attempt'], 1);
  assert.equal(a1!.attributes['http.request.resend_count'], undefined);
  assert.equal(a1!.attributes['tsmesh.endpoint'], '10.244.0.10:8080');
  assert.equal(a1!.attributes['tsmesh.endpoint.pod'], 'pod-a-1');
  assert.equal(a1!.attributes['network.peer.address'], '10.244.0.10');
  assert.equal(a1!.attributes['tsmesh.attempt.outcome'], 'retry');
  assert.equal(a1!.attributes['error.type'], 'connect-failure');
  assert.equal(a1!.status.code, OTLP_STATUS.ERROR);
  assert.equal(a2!.attributes['http.request.resend_count'], 1);
  assert.equal(a2!.attributes['tsmesh.endpoint'], '[fd00::11]:8080');
  assert.equal(a2!.attributes['tsmesh.attempt.outcome'], 'failure');
  assert.equal(a2!.attributes['error.type'], '503', 'an upstream 5xx without a proxy error: the status code');
});

test('a SERVER span is an error only for 5xx; an unknown method is _OTHER', async () => {
  const r = await receiver();
  const t = tracing({ env: { OTEL_EXPORTER_OTLP_ENDPOINT: r.endpoint } });
  t.server(request({}, 'GET', '/missing')).end({ status: 404 });
  t.server(request({}, 'BREW', '/pot')).end({ status: 500 });
  const spans = await r.waitForSpans(2);
  const notFound = spans.find((s) => s.attributes['url.path'] === '/missing')!;
  const brew = spans.find((s) => s.attributes['url.path'] === '/pot')!;
  assert.equal(notFound.status.code, OTLP_STATUS.UNSET);
  assert.equal(notFound.attributes['error.type'], undefined);
  assert.equal(brew.status.code, OTLP_STATUS.ERROR);
  assert.equal(brew.name, 'HTTP');
  assert.equal(brew.attributes['http.request.method'], '_OTHER');
  assert.equal(brew.attributes['http.request.method_original'], 'BREW');
});

test('OTEL_EXPORTER_OTLP_PROTOCOL=http/json exports OTLP JSON', async () => {
  const r = await receiver();
  const t = tracing({ env: { OTEL_EXPORTER_OTLP_ENDPOINT: r.endpoint + '/', OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' } });
  assert.equal(t.exportTarget?.protocol, 'http/json');
  const c = t.client(request());
  c.attempt(1, { ip: '10.0.0.1', port: 80 }).end({ status: 200, outcome: 'success' });
  c.end({ status: 200 });
  const spans = await r.waitForSpans(2);
  assert.ok(spans.every((s) => s.encoding === 'json'));
  assert.equal(r.requests[0]!.contentType, 'application/json');
  const client = spans.find((s) => s.kind === OTLP_KIND.CLIENT)!;
  assert.equal(spans.find((s) => s.kind === OTLP_KIND.INTERNAL)!.parentSpanId, client.spanId);
  assert.equal(client.attributes['http.response.status_code'], 200);
  assert.equal(client.resource['service.name'], 'pod-b');
});

test('with the collector down (closed port) calls return at once and the spans are counted as dropped', async () => {
  const port = await closedPort();
  const registry = new Registry();
  const t = tracing({ env: { OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}` }, registry, queue: { scheduledDelayMillis: 10, exportTimeoutMillis: 300 } });
  for (let i = 0; i < 20; i++) {
    const c = t.client(request());
    c.attempt(1, { ip: '10.0.0.1', port: 80 }).end({ status: 200, outcome: 'success' });
    c.end({ status: 200 });
  }
  await t.forceFlush().catch(() => {});
  await eventually(() => t.stats.droppedExportFailed === 40, 'all 40 spans counted as export_failed');
  assert.equal(t.stats.exported, 0);
  const text = await registry.metrics();
  assert.match(text, /^tsmesh_trace_spans_dropped_total\{reason="export_failed"\} 40$/m);
  assert.match(text, /^tsmesh_trace_spans_dropped_total\{reason="queue_full"\} 0$/m);
});

test('with a collector that never answers, the queue stays bounded and the overflow is dropped and counted', async () => {
  const r = await receiver('hang');
  const registry = new Registry();
  const t = tracing({
    env: { OTEL_EXPORTER_OTLP_ENDPOINT: r.endpoint },
    registry,
    // The exporter gives up on the hanging request after 1 s (its retries stay within that too).
    queue: { maxQueueSize: 10, maxExportBatchSize: 5, scheduledDelayMillis: 10_000, exportTimeoutMillis: 1000 },
  });
  for (let i = 0; i < 50; i++) t.server(request()).end({ status: 200 });
  // 5 went out in the first batch (hanging), 10 wait in the queue, the other 35 were dropped.
  assert.equal(t.stats.droppedQueueFull, 35);
  await eventually(() => r.requests.length >= 1, 'the first batch reached the collector');
  assert.match(await registry.metrics(), /^tsmesh_trace_spans_dropped_total\{reason="queue_full"\} 35$/m);
  // And the sidecar can still stop: shutdown gives up after its deadline.
  await t.shutdown(200);
});

test('sampling ratio 0: nothing is recorded or exported, the trace context still goes upstream unsampled; the ratio is live', async () => {
  const r = await receiver();
  let ratio = 0;
  const t = tracing({ env: { OTEL_EXPORTER_OTLP_ENDPOINT: r.endpoint }, sampling: () => ratio });
  const seen: string[] = [];
  t.onSpanEnd((s) => seen.push(s.name));
  const out = request();
  const c = t.client(out);
  assert.equal(c.sampled, false);
  c.inject(out.headers);
  const [, traceId, spanId, flag] = TRACEPARENT.exec(String(out.headers['traceparent']))!;
  assert.equal(traceId, c.context.traceId);
  assert.equal(spanId, c.context.spanId);
  assert.equal(flag, '0', 'downstream sidecars keep the decision');
  assert.equal(out.headers['x-b3-sampled'], '0');
  const a1 = c.attempt(1, { ip: '10.0.0.1', port: 80 });
  assert.equal(a1, c.attempt(2, { ip: '10.0.0.2', port: 80 }), 'attempts of an unsampled request are one shared no-op');
  a1.end({ status: 200, outcome: 'success' });
  c.end({ status: 200 });
  // The SERVER span downstream follows the caller's decision, whatever its own ratio.
  const downstream = tracing({ env: {}, sampling: () => 1 });
  assert.equal(downstream.server({ ...out }).sampled, false);

  // Cost of an unsampled request (extract, decide, inject, end), reported, not asserted.
  const n = 20_000;
  const headers: IncomingHttpHeaders = { host: 'pod-service' };
  const req = { method: 'GET', url: '/', headers, httpVersion: '1.1' };
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    const s = t.client(req);
    s.inject(headers);
    s.attempt(1, { ip: '10.0.0.1', port: 80 }).end({ status: 200, outcome: 'success' });
    s.end({ status: 200 });
  }
  const nsPer = Number(process.hrtime.bigint() - t0) / n;
  await t.forceFlush();
  assert.equal(r.requests.length, 0, 'no export request at all');
  assert.deepEqual(seen, [], 'no finished span reached the listeners');
  process.stderr.write(`# unsampled request (client span + inject + attempt + end): ${Math.round(nsPer)} ns\n`);

  ratio = 1;
  const sampled = t.client(request());
  assert.equal(sampled.sampled, true, 'a new ratio applies to the next new trace');
  sampled.end({ status: 200 });
  await r.waitForSpans(1);
  assert.deepEqual(seen, ['GET']);
});

// The pod annotation's default, as a sidecar with no tsmesh.io/trace-sampling reads it.
const DEFAULT_SAMPLING = podAnnotations['trace-sampling'].default;

test('default sampling: about 1% of new traces are sampled (seeded random source)', () => {
  const t = tracing({ env: {}, sampling: () => DEFAULT_SAMPLING, random: seededRandom(17) });
  const n = 20_000;
  let sampled = 0;
  for (let i = 0; i < n; i++) {
    const s = i % 2 === 0 ? t.client(request()) : t.server(request());
    if (s.sampled) sampled++;
    s.end({ status: 200 });
  }
  // 1% of 20,000 is 200; the binomial's standard deviation is 14, so 150..250 is over 3.5 of them.
  assert.ok(sampled >= 150 && sampled <= 250, `${sampled} of ${n} new traces sampled`);
});

test("default sampling: a caller's sampled context (W3C, B3 multi, B3 single) is always traced, an unsampled one never is", () => {
  const t = tracing({ env: {}, sampling: () => DEFAULT_SAMPLING, random: seededRandom(18) });
  const traceIds = Array.from({ length: 50 }, (_, i) => `4bf92f3577b34da6a3ce929d${String(i).padStart(8, '0')}`);
  const contexts = (traceId: string, sampled: boolean): IncomingHttpHeaders[] => [
    { traceparent: `00-${traceId}-00f067aa0ba902b7-0${sampled ? 1 : 0}` },
    { 'x-b3-traceid': traceId, 'x-b3-spanid': 'e457b5a2e4d86bd1', 'x-b3-sampled': sampled ? '1' : '0' },
    { b3: `${traceId}-e457b5a2e4d86bd1-${sampled ? 1 : 0}` },
  ];
  for (const traceId of traceIds) {
    for (const sampled of [true, false]) {
      for (const headers of contexts(traceId, sampled)) {
        for (const span of [t.client(request(headers)), t.server(request(headers))]) {
          assert.equal(span.context.traceId, traceId, 'the trace continues');
          assert.equal(span.sampled, sampled, `${JSON.stringify(headers)}: the caller's decision`);
          const out: IncomingHttpHeaders = {};
          span.inject(out);
          assert.equal(TRACEPARENT.exec(String(out['traceparent']))![3], sampled ? '1' : '0', 'and it goes upstream');
          span.end({ status: 200 });
        }
      }
    }
  }
});

test('no endpoint set: no exporter, yet listeners get the finished spans (the demo waterfall)', async () => {
  const t = tracing({ env: { OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' } });
  assert.equal(t.exportTarget, undefined);
  const got: { name: string; parent: string | undefined; service: string }[] = [];
  const stop = t.onSpanEnd((s) => got.push({ name: s.name, parent: s.parentSpanId, service: s.service }));
  const c = t.client(request());
  c.attempt(1, { ip: '10.0.0.1', port: 80 }).end({ status: 200, outcome: 'success' });
  c.end({ status: 200 });
  stop();
  t.client(request()).end({ status: 200 });
  assert.deepEqual(got.map((g) => g.name), ['GET attempt 1', 'GET']);
  assert.equal(got[0]!.parent, c.context.spanId);
  assert.equal(got[1]!.service, 'pod-b');
});

test('a misconfigured exporter is reported naming the variable, and requests still work', () => {
  const lines: Record<string, unknown>[] = [];
  const log = { warn: (o: Record<string, unknown>, msg: string) => lines.push({ ...o, msg }), info() {} } as unknown as TracingOptions['log'];
  const t = tracing({ env: { OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://jaeger:4317', OTEL_BSP_MAX_QUEUE_SIZE: 'lots' }, log });
  assert.equal(t.exportTarget, undefined);
  assert.ok(lines.some((l) => l['variable'] === 'OTEL_EXPORTER_OTLP_PROTOCOL' && /unsupported OTLP protocol/.test(String(l['msg']))), JSON.stringify(lines));
  assert.ok(lines.some((l) => l['variable'] === 'OTEL_BSP_MAX_QUEUE_SIZE' && /positive integer/.test(String(l['msg']))), JSON.stringify(lines));
  const c = t.client(request());
  assert.equal(c.sampled, true);
  c.end({ status: 200 });
});

async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

async function eventually(check: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export type { ReceivedSpan };
