// MeshMetrics served by the sidecar's admin server over real HTTP: the /metrics page must parse
// as Prometheus text, carry exactly the documented names and labels, and count what was called.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { Registry } from 'prom-client';
import { createAdmin } from '../src/admin/admin.ts';
import { IdentityState } from '../src/identity/provider.ts';
import { systemClock } from '../src/identity/clock.ts';
import { MeshMetrics, METRIC_NAMES, REQUEST_LABELS, TCP_LABELS, DURATION_BUCKETS, type Peers } from '../src/metrics/mesh-metrics.ts';
import { parseExposition, sampleValue, type Family } from '../src/metrics/exposition.ts';

const servers: { close(): void }[] = [];
after(() => servers.forEach((s) => s.close()));

async function scrape(registry: Registry): Promise<Map<string, Family>> {
  const admin = createAdmin({ ready: () => ({ ok: true, reasons: [] }), config: () => ({}), metrics: registry, spans: () => [], quit() {} });
  await new Promise<void>((resolve) => admin.listen(0, '127.0.0.1', resolve));
  servers.push(admin);
  const res = await fetch(`http://127.0.0.1:${(admin.address() as AddressInfo).port}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  const text = await res.text();
  admin.close();
  return parseExposition(text);
}

const bToA: Peers = { direction: 'outbound', sourceWorkload: 'pod-b', sourceNamespace: 'default', destinationWorkload: 'web-app', destinationNamespace: 'default', destinationService: 'pod-service.default', mtls: true };
const inboundAnon: Peers = { direction: 'inbound', sourceWorkload: undefined, sourceNamespace: '', destinationWorkload: 'web-app', destinationNamespace: 'default', destinationService: undefined, mtls: false };

test('/metrics parses and counts exactly the calls made, with the documented labels', async () => {
  const registry = new Registry();
  new IdentityState({ clock: systemClock, registry }); // registers tsmesh_certificate_expiry_seconds, as the sidecar's identity provider does
  const m = new MeshMetrics(registry);

  const series = m.series(bToA);
  series.record(200, 0.0012);
  series.record(200, 0.2);
  m.request(bToA, 200, 0.004);
  m.request(bToA, 503, 0.03);
  m.request(inboundAnon, 200, 0.002);
  m.request(inboundAnon, 12345, -1); // nonsense code and duration: bounded labels, no crash
  series.connection();
  m.tcpConnection(inboundAnon);
  m.tcpConnection(inboundAnon);
  m.retry('pod-service.default', 'connect-failure');
  m.retry('pod-service.default', 'connect-failure');
  m.retry('pod-service.default', '/api/users/42'); // not a reason: "other"
  m.circuitBreaker('pod-service.default', '10.244.0.10:8080', 'open');
  m.circuitBreaker('pod-service.default', '10.244.0.11:8080', 'half-open');
  m.circuitBreaker('pod-service.default', '10.244.0.11:8080', 'closed');
  m.circuitBreaker('pod-service.default', '10.244.0.12:8080', 'open');
  m.forgetEndpoint('pod-service.default', '10.244.0.12:8080');
  m.tlsHandshakeError('inbound', 'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA');
  m.tlsHandshakeError('inbound', 'something with spaces');
  m.tlsHandshakeError('outbound', undefined);

  const f = await scrape(registry);
  const req = f.get(METRIC_NAMES.requests)!;
  assert.equal(req.type, 'counter');
  for (const s of req.samples) assert.deepEqual(Object.keys(s.labels).sort(), [...REQUEST_LABELS].sort(), 'exactly the documented request labels');
  const ok = { ...labelsOf(bToA), response_code: '200' };
  assert.equal(sampleValue(f, 'tsmesh_requests_total', ok), 3);
  assert.equal(sampleValue(f, 'tsmesh_requests_total', { ...ok, response_code: '503' }), 1);
  assert.equal(sampleValue(f, 'tsmesh_requests_total', { direction: 'inbound', source_workload: 'unknown', source_namespace: 'unknown', destination_service: 'unknown', mtls: 'false', response_code: '200' }), 1);
  assert.equal(sampleValue(f, 'tsmesh_requests_total', { direction: 'inbound', response_code: '0' }), 1, 'an impossible code is recorded as 0');
  assert.equal(sampleValue(f, 'tsmesh_requests_total'), 6);

  const dur = f.get(METRIC_NAMES.requestDuration)!;
  assert.equal(dur.type, 'histogram');
  assert.equal(sampleValue(f, 'tsmesh_request_duration_seconds_count', ok), 3);
  assert.ok(Math.abs(sampleValue(f, 'tsmesh_request_duration_seconds_sum', ok) - 0.2052) < 1e-9);
  assert.equal(sampleValue(f, 'tsmesh_request_duration_seconds_bucket', { ...ok, le: '0.001' }), 0);
  assert.equal(sampleValue(f, 'tsmesh_request_duration_seconds_bucket', { ...ok, le: '0.0025' }), 1);
  assert.equal(sampleValue(f, 'tsmesh_request_duration_seconds_bucket', { ...ok, le: '0.005' }), 2);
  assert.equal(sampleValue(f, 'tsmesh_request_duration_seconds_bucket', { ...ok, le: '0.25' }), 3);
  assert.equal(sampleValue(f, 'tsmesh_request_duration_seconds_bucket', { ...ok, le: '+Inf' }), 3);
  const les = dur.samples.filter((s) => s.name.endsWith('_bucket') && s.labels['response_code'] === '503').map((s) => s.labels['le']);
  assert.deepEqual(les, [...DURATION_BUCKETS.map(String), '+Inf']);

  const tcp = f.get(METRIC_NAMES.tcpConnections)!;
  for (const s of tcp.samples) assert.deepEqual(Object.keys(s.labels).sort(), [...TCP_LABELS].sort());
  assert.equal(sampleValue(f, 'tsmesh_tcp_connections_total', labelsOf(bToA)), 1);
  assert.equal(sampleValue(f, 'tsmesh_tcp_connections_total', { direction: 'inbound' }), 2);

  assert.equal(sampleValue(f, 'tsmesh_retries_total', { destination_service: 'pod-service.default', reason: 'connect-failure' }), 2);
  assert.equal(sampleValue(f, 'tsmesh_retries_total', { reason: 'other' }), 1);
  assert.ok(!f.get(METRIC_NAMES.retries)!.samples.some((s) => s.labels['reason']!.includes('/')), 'no paths in labels');

  const breaker = f.get(METRIC_NAMES.circuitBreakerOpen)!;
  assert.equal(breaker.type, 'gauge');
  assert.deepEqual(
    breaker.samples.map((s) => [s.labels['endpoint'], s.value]),
    [
      ['10.244.0.10:8080', 1],
      ['10.244.0.11:8080', 0],
    ],
  );

  assert.equal(sampleValue(f, 'tsmesh_tls_handshake_errors_total', { direction: 'inbound', reason: 'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA' }), 1);
  assert.equal(sampleValue(f, 'tsmesh_tls_handshake_errors_total', { direction: 'inbound', reason: 'other' }), 1);
  assert.equal(sampleValue(f, 'tsmesh_tls_handshake_errors_total', { direction: 'outbound', reason: 'unknown' }), 1);

  const expiry = f.get(METRIC_NAMES.certificateExpiry);
  assert.equal(expiry?.type, 'gauge', "the identity provider's gauge is served once, beside MeshMetrics");
  assert.ok(f.has('process_cpu_user_seconds_total') && f.has('nodejs_heap_size_used_bytes'), 'Node.js process metrics');
});

test('a registry that already has the process metrics keeps them once; series beyond the bound are "overflow"', async () => {
  const registry = new Registry();
  const first = new MeshMetrics(registry, { maxSeries: 2 });
  assert.ok(first.registry.getSingleMetric('process_cpu_user_seconds_total'));
  const other = new Registry();
  new MeshMetrics(other);
  new MeshMetrics(new Registry(), { processMetrics: false });
  for (let i = 0; i < 5; i++) first.request({ ...bToA, destinationWorkload: `w${i}` }, 200, 0.001);
  const f = await scrape(registry);
  assert.equal(sampleValue(f, 'tsmesh_requests_total', { destination_workload: 'w0' }), 1);
  assert.equal(sampleValue(f, 'tsmesh_requests_total', { destination_workload: 'w1' }), 1);
  assert.equal(sampleValue(f, 'tsmesh_requests_total', { destination_workload: 'overflow', source_workload: 'overflow' }), 3);
  assert.equal(f.get('tsmesh_requests_total')!.samples.length, 3);
});

test('per-call cost of the hot path (reported)', () => {
  const m = new MeshMetrics(new Registry(), { processMetrics: false });
  const s = m.series(bToA);
  const n = 50_000;
  const time = (fn: () => void) => {
    for (let i = 0; i < 5000; i++) fn();
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) fn();
    return Math.round(Number(process.hrtime.bigint() - t0) / n);
  };
  const bound = time(() => s.record(200, 0.0012));
  const lookup = time(() => m.request(bToA, 200, 0.0012));
  process.stderr.write(`# MeshMetrics: series.record ${bound} ns, request(peers, ...) ${lookup} ns per call\n`);
  assert.ok(bound > 0 && lookup > 0);
});

function labelsOf(p: Peers): Record<string, string> {
  return {
    direction: p.direction,
    source_workload: p.sourceWorkload ?? 'unknown',
    source_namespace: p.sourceNamespace || 'unknown',
    destination_workload: p.destinationWorkload ?? 'unknown',
    destination_namespace: p.destinationNamespace ?? 'unknown',
    destination_service: p.destinationService ?? 'unknown',
    mtls: String(p.mtls),
  };
}
