// The OTLP/HTTP span exporter, built as @opentelemetry/exporter-trace-otlp-proto (and -http for
// http/json) build theirs, from the same parts: otlp-exporter-base's HTTP delegate (the
// OTEL_EXPORTER_OTLP_* variables, retries, compression) and otlp-transformer's trace
// serializer. Those packages import otlp-transformer's index, which loads its metrics and logs
// serializers and with them @opentelemetry/sdk-metrics and api-logs (61 modules, ~2.5 MiB of
// RssAnon in every sidecar from its first export on; issue 17); the trace serializer's own
// module does not. src/tracing/otlp.test.ts checks that a collector receives the same request
// from this exporter as from theirs.
import type { SpanExporter } from '@opentelemetry/sdk-trace-base';
import { OTLPExporterBase } from '@opentelemetry/otlp-exporter-base';
import { convertLegacyHttpOptions, createOtlpHttpExportDelegate } from '@opentelemetry/otlp-exporter-base/node-http';
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer/build/src/trace/protobuf/index.js';
import { JsonTraceSerializer } from '@opentelemetry/otlp-transformer/build/src/trace/json/index.js';
import { TraceExporterMetricsHelper } from '@opentelemetry/otlp-transformer/build/src/trace/index.js';

/** The exporters' own component type (OpenTelemetry's self-observability semantic conventions). */
const COMPONENT_TYPE = 'otlp_http_span_exporter';

export function otlpTraceExporter(protocol: 'http/protobuf' | 'http/json', config: { url: string; timeoutMillis?: number }): SpanExporter {
  const json = protocol === 'http/json';
  const delegate = createOtlpHttpExportDelegate(
    convertLegacyHttpOptions(config, 'TRACES', 'v1/traces', { 'Content-Type': json ? 'application/json' : 'application/x-protobuf' }),
    json ? JsonTraceSerializer : ProtobufTraceSerializer,
    COMPONENT_TYPE,
    TraceExporterMetricsHelper,
    undefined, // no self-observability meter provider (theirs: config.selfObsMeterProvider, never set here)
  );
  return new OTLPExporterBase(delegate);
}
