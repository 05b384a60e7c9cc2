// The request counter and histogram recorded in cells must be served exactly as prom-client's own
// Counter and Histogram would serve the same observations: same names, help, labels and their
// order, buckets, values and series order, in the text exposition and in the JSON form.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Counter, Histogram, Registry } from 'prom-client';
import { MeshMetrics, METRIC_NAMES, REQUEST_LABELS, DURATION_BUCKETS, type Peers } from './mesh-metrics.ts';

const peers: Peers[] = [
  { direction: 'outbound', sourceWorkload: 'pod-b', sourceNamespace: 'default', destinationWorkload: 'web-app', destinationNamespace: 'default', destinationService: 'pod-service.default', mtls: true },
  { direction: 'inbound', sourceWorkload: undefined, sourceNamespace: '', destinationWorkload: 'web-app', destinationNamespace: 'default', destinationService: undefined, mtls: false },
  // the same labels as the one above ("" and undefined are both "unknown"): one series, not two
  { direction: 'inbound', sourceWorkload: '', sourceNamespace: undefined, destinationWorkload: 'web-app', destinationNamespace: 'default', destinationService: '', mtls: false },
  { direction: 'outbound', sourceWorkload: 'pod-b', sourceNamespace: 'default', destinationWorkload: 'we"ird\\name\nx', destinationNamespace: 'default', destinationService: 'pod-service.default', mtls: false },
];

// every bound exactly, just above and below, zero, huge, and what the pipelines sanitize to 0
const durations = [...DURATION_BUCKETS, ...DURATION_BUCKETS.map((b) => b * 1.0001), ...DURATION_BUCKETS.map((b) => b * 0.9999), 0, 1e9, 0.0001234, -1, Number.NaN, Number.POSITIVE_INFINITY];
const codes = [200, 200, 503, 0, 404, 12345, -3, 200.5, 599, 600];

/** What the pipelines asked prom-client for before cells: one labels() child per series and code. */
function reference(registry: Registry) {
  const requests = new Counter({ name: METRIC_NAMES.requests, help: 'HTTP requests the sidecar proxied, by direction, source and destination workload and namespace, destination service, response code and mTLS', labelNames: REQUEST_LABELS, registers: [registry] });
  const duration = new Histogram({ name: METRIC_NAMES.requestDuration, help: 'Duration of the HTTP requests the sidecar proxied, from the request to the end of the response, in seconds', labelNames: REQUEST_LABELS, buckets: DURATION_BUCKETS, registers: [registry] });
  const v = (s: string | undefined) => (s ? s : 'unknown');
  return (p: Peers, code: number, seconds: number) => {
    const labels = {
      direction: p.direction,
      source_workload: v(p.sourceWorkload),
      source_namespace: v(p.sourceNamespace),
      destination_workload: v(p.destinationWorkload),
      destination_namespace: v(p.destinationNamespace),
      destination_service: v(p.destinationService),
      mtls: p.mtls ? 'true' : 'false',
      response_code: Number.isInteger(code) && code >= 0 && code < 600 ? String(code) : '0',
    };
    requests.labels(labels).inc();
    duration.labels(labels).observe(seconds >= 0 && Number.isFinite(seconds) ? seconds : 0);
  };
}

test('cells serve the same /metrics text and JSON as prom-client fed the same requests', async () => {
  const theirs = new Registry();
  const record = reference(theirs);
  const ours = new Registry();
  const m = new MeshMetrics(ours, { processMetrics: false });
  const held = peers.map((p) => m.series(p));
  let n = 0;
  for (const d of durations) {
    for (const code of codes) {
      const i = n++ % peers.length;
      record(peers[i]!, code, d);
      if (n % 2) held[i]!.record(code, d);
      else m.request(peers[i]!, code, d);
    }
  }
  for (const name of [METRIC_NAMES.requests, METRIC_NAMES.requestDuration]) {
    assert.equal(await ours.getSingleMetricAsString(name), await theirs.getSingleMetricAsString(name), name);
  }
  const json = async (r: Registry) => (await r.getMetricsAsJSON()).filter((x) => x.name === METRIC_NAMES.requests || x.name === METRIC_NAMES.requestDuration);
  assert.deepEqual(await json(ours), await json(theirs));
  assert.ok((await ours.metrics()).includes('tsmesh_request_duration_seconds_bucket{le="0.0005",direction="outbound"'), 'le first, as prom-client writes it');
});

test('reset empties the cells as prom-client empties its series; recording starts again', async () => {
  const registry = new Registry();
  const m = new MeshMetrics(registry, { processMetrics: false });
  const s = m.series(peers[0]!);
  s.record(200, 0.01);
  registry.resetMetrics();
  assert.doesNotMatch(await registry.getSingleMetricAsString(METRIC_NAMES.requests), /tsmesh_requests_total\{/);
  s.record(200, 0.01);
  assert.match(await registry.getSingleMetricAsString(METRIC_NAMES.requests), /response_code="200"\} 1$/m);
});
