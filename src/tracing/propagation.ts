// Trace context on HTTP headers (DESIGN.md "Headers"): read W3C `traceparent`/`tracestate`,
// else B3 (single `b3` header or `X-B3-*`); write W3C and B3 multi-header, after removing
// whatever trace headers the request came with, so the upstream sees exactly one context: the
// proxy's span. Parsing and formatting are the OpenTelemetry propagators'.
import { ROOT_CONTEXT, createContextKey, defaultTextMapGetter, defaultTextMapSetter, trace, TraceFlags, type Context, type SpanContext } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { B3Propagator, B3InjectEncoding } from '@opentelemetry/propagator-b3';

type Headers = Record<string, string | string[] | number | undefined>;

/** Every header that carries trace context in the formats tsmesh reads. */
export const TRACE_HEADERS = ['traceparent', 'tracestate', 'b3', 'x-b3-traceid', 'x-b3-spanid', 'x-b3-sampled', 'x-b3-parentspanid', 'x-b3-flags'] as const;

/**
 * Set on an extracted context when the caller sent B3 without a sampling decision ("deferred"
 * in the B3 spec): the proxy then decides with its own ratio, keeping the caller's trace id.
 */
export const DEFERRED_SAMPLING = createContextKey('tsmesh.tracing.deferred-sampling');

const w3c = new W3CTraceContextPropagator();
// Reads the single `b3` header or else X-B3-*; writes X-B3-*.
const b3 = new B3Propagator({ injectEncoding: B3InjectEncoding.MULTI_HEADER });

/**
 * The caller's trace context from `headers` (Node's lower-cased IncomingHttpHeaders), as a
 * context to start a span in; ROOT_CONTEXT when there is none or it is malformed.
 * W3C wins over B3 when both are present.
 */
export function extractContext(headers: Headers): Context {
  if (headers['traceparent'] !== undefined) {
    const ctx = w3c.extract(ROOT_CONTEXT, headers, defaultTextMapGetter);
    if (ctx !== ROOT_CONTEXT) return ctx;
  }
  const single = headers['b3'];
  if (single === undefined && headers['x-b3-traceid'] === undefined) return ROOT_CONTEXT;
  const ctx = b3.extract(ROOT_CONTEXT, headers, defaultTextMapGetter);
  if (ctx === ROOT_CONTEXT) return ctx;
  const deferred = single !== undefined ? b3SingleDeferred(String(single)) : headers['x-b3-sampled'] === undefined && headers['x-b3-flags'] === undefined;
  return deferred ? ctx.setValue(DEFERRED_SAMPLING, true) : ctx;
}

// "traceid-spanid" with no third field (or a third field that is a parent span id) defers.
function b3SingleDeferred(value: string): boolean {
  const parts = value.trim().split('-');
  return parts.length < 3 || parts[2]!.length > 1;
}

/** Removes every trace header, then writes `sc` as W3C traceparent/tracestate and B3 multi-header. */
export function injectContext(headers: Headers, sc: SpanContext): void {
  for (const h of TRACE_HEADERS) delete headers[h];
  const ctx = trace.setSpanContext(ROOT_CONTEXT, sc);
  w3c.inject(ctx, headers, defaultTextMapSetter);
  b3.inject(ctx, headers, defaultTextMapSetter);
}

export const isSampled = (sc: SpanContext): boolean => (sc.traceFlags & TraceFlags.SAMPLED) === TraceFlags.SAMPLED;
