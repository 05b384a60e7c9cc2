import { test } from 'node:test';
import assert from 'node:assert/strict';
import { otlpTargetFromEnv, queueOptionsFromEnv } from './export.ts';
import { ratioSamples } from './sampler.ts';
import { SpanRecorder, type FinishedSpan } from './recorder.ts';

test('the OTLP target from the standard variables', () => {
  assert.deepEqual(otlpTargetFromEnv({}), { target: undefined });
  assert.deepEqual(otlpTargetFromEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://jaeger.tsmesh-system:4318' }).target, { url: 'http://jaeger.tsmesh-system:4318/v1/traces', protocol: 'http/protobuf' });
  assert.equal(otlpTargetFromEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318/', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://t:443/custom' }).target?.url, 'https://t:443/custom', 'the traces endpoint wins, as is');
  assert.equal(otlpTargetFromEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/json', OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' }).target?.protocol, 'http/json');
  assert.equal(otlpTargetFromEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_TRACES_EXPORTER: 'none' }).target, undefined);
  assert.equal(otlpTargetFromEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_SDK_DISABLED: 'true' }).target, undefined);
  const grpc = otlpTargetFromEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4317', OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' });
  assert.equal(grpc.target, undefined);
  assert.equal(grpc.problem?.variable, 'OTEL_EXPORTER_OTLP_PROTOCOL');
  assert.equal(otlpTargetFromEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: 'jaeger:4318' }).problem?.reason, 'scheme jaeger: is not http: or https:');
  assert.equal(otlpTargetFromEnv({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: '::nope' }).problem?.variable, 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT');
});

test('queue settings from OTEL_BSP_*, bad values named and replaced by the default', () => {
  const { options, problems } = queueOptionsFromEnv({ OTEL_BSP_MAX_QUEUE_SIZE: '100', OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '500', OTEL_BSP_SCHEDULE_DELAY: '-1', OTEL_EXPORTER_OTLP_TIMEOUT: '3000' });
  assert.deepEqual(options, { maxQueueSize: 100, maxExportBatchSize: 100, scheduledDelayMillis: 1000, exportTimeoutMillis: 3000 });
  assert.deepEqual(problems.map((p) => p.variable), ['OTEL_BSP_SCHEDULE_DELAY']);
});

test('ratio sampling is a function of the trace id', () => {
  const low = '0'.repeat(24) + '00000010';
  const high = '0'.repeat(24) + 'fffffff0';
  assert.equal(ratioSamples(low, 0.5), true);
  assert.equal(ratioSamples(high, 0.5), false);
  assert.equal(ratioSamples(high, 1), true);
  assert.equal(ratioSamples(low, 0), false);
  assert.equal(ratioSamples(low, Number.NaN), false);
});

test('the span recorder keeps the last N spans and filters by trace', () => {
  const r = new SpanRecorder(3);
  const s = (i: number, traceId = 't1'): FinishedSpan => ({ traceId, spanId: `s${i}`, parentSpanId: undefined, name: 'GET', kind: 'client', service: 'x', startUs: i, durationUs: 1, status: 'unset', attributes: {} });
  for (let i = 1; i <= 4; i++) r.listener(s(i, i % 2 ? 't1' : 't2'));
  assert.deepEqual(r.spans().map((x) => x.spanId), ['s2', 's3', 's4']);
  assert.deepEqual(r.spans('t1').map((x) => x.spanId), ['s3']);
  r.clear();
  assert.deepEqual(r.spans(), []);
  assert.throws(() => new SpanRecorder(0), /positive integer/);
});
