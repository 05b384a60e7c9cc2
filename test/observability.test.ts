// Traces and metrics through real sidecars: spans exported over OTLP/HTTP (protobuf) to a
// receiver that decodes the wire format, and /metrics parsed as Prometheus text.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { sidecarPair, backends, eventually, type Pair } from './harness/mesh.ts';
import { send } from './harness/client.ts';
import { startOtlpReceiver, OTLP_KIND, type OtlpReceiver } from './harness/otlp-receiver.ts';
import { parseExposition, sampleValue } from '../src/metrics/exposition.ts';

let receiver: OtlpReceiver;
let pair: Pair;
const FAST_EXPORT = { OTEL_BSP_SCHEDULE_DELAY: '50' };
// Every new trace sampled (the default is 1%: test/trace-sampling.test.ts covers it).
const ALL = { 'tsmesh.io/trace-sampling': '1' };

before(async () => {
  receiver = await startOtlpReceiver();
  pair = await sidecarPair((req, res) => res.end(JSON.stringify({ traceparent: req.headers.traceparent ?? null, b3: req.headers['x-b3-traceid'] ?? null })), {
    mtls: true,
    annotations: { a: ALL, b: ALL },
    env: { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint, ...FAST_EXPORT },
  });
});
after(async () => {
  await pair.close();
  await receiver.close();
});

const inTrace = (traceId: string) => (s: { traceId: string }) => s.traceId === traceId;

test("one request: pod-b's CLIENT span and pod-a's SERVER span share a trace, the SERVER span's parent is the CLIENT span", async () => {
  const r = await send(pair.proxyURL, { path: '/traced' });
  assert.equal(r.status, 200);
  const appSaw = JSON.parse(r.body.toString()) as { traceparent: string; b3: string };
  const traceId = appSaw.traceparent.split('-')[1]!;
  assert.equal(appSaw.b3, traceId, 'B3 multi-header written too, same trace');
  const spans = await receiver.waitForSpans(3, { where: inTrace(traceId) });
  const client = spans.find((s) => s.kind === OTLP_KIND.CLIENT && s.attributes['tsmesh.attempt'] === undefined)!;
  const server = spans.find((s) => s.kind === OTLP_KIND.SERVER)!;
  const attempt = spans.find((s) => s.attributes['tsmesh.attempt'] === 1)!;
  assert.ok(client && server && attempt, `spans: ${spans.map((s) => s.name).join(', ')}`);
  assert.equal(client.resource['service.name'], 'client', "pod-b's workload (label app)");
  assert.equal(server.resource['service.name'], 'web-app', "pod-a's workload");
  assert.equal(server.parentSpanId, client.spanId);
  assert.equal(attempt.parentSpanId, client.spanId);
  assert.equal(client.attributes['http.response.status_code'], 200);
  assert.equal(server.attributes['tsmesh.peer.identity'], 'spiffe://cluster.local/ns/default/sa/pod-b');
  assert.equal(appSaw.traceparent.split('-')[2], server.spanId, "the app's parent is pod-a's SERVER span");
  await eventually(() => pair.client.logs.some((l) => l.type === 'access' && l.path === '/traced' && l.trace_id === traceId && l.span_id === client.spanId), 3000, 'the ids in the access log');
});

test("an app's own traceparent is continued; B3 headers in keep the trace id", async () => {
  const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
  const r = await send(pair.proxyURL, { path: '/w3c', headers: { traceparent: `00-${traceId}-00f067aa0ba902b7-01` } });
  assert.equal(JSON.parse(r.body.toString()).traceparent.split('-')[1], traceId);
  const spans = await receiver.waitForSpans(2, { where: (s) => s.traceId === traceId && s.attributes['tsmesh.attempt'] === undefined });
  assert.equal(spans.find((s) => s.kind === OTLP_KIND.CLIENT)!.parentSpanId, '00f067aa0ba902b7', "the CLIENT span's parent is the app's span");

  const b3Trace = '80f198ee56343ba864fe8b2a57d3eff7';
  const b3 = await send(pair.proxyURL, { path: '/b3', headers: { 'x-b3-traceid': b3Trace, 'x-b3-spanid': 'e457b5a2e4d86bd1', 'x-b3-sampled': '1' } });
  assert.equal(JSON.parse(b3.body.toString()).traceparent.split('-')[1], b3Trace);
  await receiver.waitForSpans(2, { where: inTrace(b3Trace) });
  const single = '463ac35c9f6413ad48485a3953bb6124';
  const one = await send(pair.proxyURL, { path: '/b3single', headers: { b3: `${single}-0020000000000001-1` } });
  assert.equal(JSON.parse(one.body.toString()).b3, single);
});

test('/metrics parses and its counts match the requests made, with the documented labels', async () => {
  const families = async (url: string) => parseExposition(await (await fetch(`${url}/metrics`)).text());
  const labels = { direction: 'outbound', source_workload: 'client', source_namespace: 'default', destination_workload: 'web-app', destination_namespace: 'default', destination_service: 'pod-service.default', response_code: '200', mtls: 'true' };
  const before = sampleValue(await families(pair.client.adminURL), 'tsmesh_requests_total', labels);
  for (let i = 0; i < 7; i++) assert.equal((await send(pair.proxyURL, { path: '/counted' })).status, 200);
  const out = await families(pair.client.adminURL);
  assert.equal(sampleValue(out, 'tsmesh_requests_total', labels) - before, 7);
  assert.ok(sampleValue(out, 'tsmesh_request_duration_seconds_count', labels) >= 7);
  const inbound = await families(pair.server.adminURL);
  assert.ok(sampleValue(inbound, 'tsmesh_requests_total', { ...labels, direction: 'inbound' }) >= 7, 'the inbound side counts with the same peers');
  assert.ok(inbound.has('process_resident_memory_bytes'), 'Node.js process metrics');
  for (const sample of out.get('tsmesh_requests_total')!.samples) {
    assert.deepEqual(Object.keys(sample.labels).sort(), Object.keys(labels).sort(), 'exactly the documented labels');
  }
});

test('a retry shows as attempt spans (here from the sidecar\'s /debug/spans) and in tsmesh_retries_total', async (t) => {
  let n = 0;
  const mesh = await backends([(_req, res) => ((res.statusCode = ++n === 1 ? 503 : 200), res.end())], { annotations: ALL });
  t.after(() => mesh.close());
  const r = await send(mesh.client.outboundURL, { path: '/retry' });
  assert.equal(r.status, 200);
  const traceId = String(mesh.apps[0]!.requests[1]!.headers.traceparent).split('-')[1]!;
  assert.equal(String(mesh.apps[0]!.requests[0]!.headers.traceparent).split('-')[1], traceId, 'both attempts carry the same trace');
  const { spans } = (await (await fetch(`${mesh.client.adminURL}/debug/spans?trace=${traceId}`)).json()) as { spans: { name: string; attributes: Record<string, unknown> }[] };
  const attempts = spans.filter((s) => s.attributes['tsmesh.attempt'] !== undefined).map((s) => [s.attributes['tsmesh.attempt'], s.attributes['tsmesh.attempt.outcome']]);
  assert.deepEqual(attempts.sort(), [
    [1, 'retry'],
    [2, 'success'],
  ]);
  const metrics = parseExposition(await (await fetch(`${mesh.client.adminURL}/metrics`)).text());
  assert.equal(sampleValue(metrics, 'tsmesh_retries_total', { destination_service: 'pod-service.default', reason: 'gateway-error' }), 1);
});

test('with the collector down, requests are unaffected and dropped spans are counted', async (t) => {
  const dead = await startOtlpReceiver();
  const endpoint = dead.endpoint;
  await dead.close(); // nothing listens there now
  const mesh = await sidecarPair((_req, res) => res.end('ok'), { annotations: { a: ALL, b: ALL }, env: { OTEL_EXPORTER_OTLP_ENDPOINT: endpoint, OTEL_EXPORTER_OTLP_TIMEOUT: '500', ...FAST_EXPORT } });
  t.after(() => mesh.close());
  for (let i = 0; i < 20; i++) assert.equal((await send(mesh.proxyURL)).status, 200);
  await eventually(async () => {
    const m = parseExposition(await (await fetch(`${mesh.client.adminURL}/metrics`)).text());
    return (m.get('tsmesh_trace_spans_dropped_total')?.samples ?? []).reduce((n, s) => n + s.value, 0) > 0;
  }, 10_000, 'dropped spans to be counted');
});
