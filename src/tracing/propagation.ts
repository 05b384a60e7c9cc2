// Trace context on HTTP headers (DESIGN.md "Headers"): read W3C `traceparent`/`tracestate`,
// else B3 (single `b3` header or `X-B3-*`); write W3C and B3 multi-header, after removing
// whatever trace headers the request came with, so the upstream sees exactly one context: the
// proxy's span. Parsing is the OpenTelemetry propagators'.
import { ROOT_CONTEXT, createContextKey, defaultTextMapGetter, TraceFlags, type Context, type SpanContext } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { B3Propagator } from '@opentelemetry/propagator-b3';

type Headers = Record<string, string | string[] | number | undefined>;

/** Every header that carries trace context in the formats tsmesh reads. */
export const TRACE_HEADERS = ['traceparent', 'tracestate', 'b3', 'x-b3-traceid', 'x-b3-spanid', 'x-b3-sampled', 'x-b3-parentspanid', 'x-b3-flags'] as const;

const NOT_WRITTEN = ['b3', 'x-b3-parentspanid', 'x-b3-flags'] as const;

/**
 * Set on an extracted context when the caller sent B3 without a sampling decision ("deferred"
 * in the B3 spec): the proxy then decides with its own ratio, keeping the caller's trace id.
 */
export const DEFERRED_SAMPLING = createContextKey('tsmesh.tracing.deferred-sampling');

const w3c = new W3CTraceContextPropagator();
// Reads the single `b3` header, else X-B3-*.
const b3 = new B3Propagator();

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

/**
 * Removes every trace header, then writes `sc` as W3C traceparent (+ tracestate) and B3
 * multi-header. Written directly (the formats are fixed by their specs): this runs for every
 * request, sampled or not, and the propagators' generic setters cost several times more.
 */
export function injectContext(headers: Headers, sc: SpanContext): void {
  // Deleting makes a slow object of the headers: only the ones not overwritten below.
  for (const h of NOT_WRITTEN) if (headers[h] !== undefined) delete headers[h];
  const sampled = (sc.traceFlags & TraceFlags.SAMPLED) === TraceFlags.SAMPLED;
  headers['traceparent'] = `00-${sc.traceId}-${sc.spanId}-${sampled ? '01' : '00'}`;
  const state = sc.traceState?.serialize();
  if (state) headers['tracestate'] = state;
  else if (headers['tracestate'] !== undefined) delete headers['tracestate'];
  headers['x-b3-traceid'] = sc.traceId;
  headers['x-b3-spanid'] = sc.spanId;
  headers['x-b3-sampled'] = sampled ? '1' : '0';
}
