// Tracing: the public surface the pipelines and the demo use.
export { createTracing, type Tracing, type TracingOptions, type ClientSpan, type ServerSpan, type AttemptSpan, type AttemptOutcome, type HttpOutcome, type HttpRequestInfo, type PeerInfo } from './tracing.ts';
export { podResource, resourceAttributes, type PodIdentity } from './resource.ts';
export { extractContext, injectContext, TRACE_HEADERS } from './propagation.ts';
export { otlpTargetFromEnv, queueOptionsFromEnv, SPANS_DROPPED_METRIC, SPANS_EXPORTED_METRIC, type OtlpTarget, type QueueOptions, type ExportStats } from './export.ts';
export { SpanRecorder, spanLogListener, toFinishedSpan, type FinishedSpan, type SpanListener } from './recorder.ts';
export { renderWaterfall, type WaterfallOptions } from './waterfall.ts';
