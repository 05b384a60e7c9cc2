// Trace context on HTTP headers (DESIGN.md "Headers"): read W3C `traceparent`/`tracestate`,
// else B3 (single `b3` header or `X-B3-*`); write W3C and B3 multi-header, after removing
// whatever trace headers the request came with, so the upstream sees exactly one context: the
// proxy's span.
//
// This runs on every request, sampled or not, so the common case costs no OpenTelemetry
// Context: a `traceparent` in its canonical form (what every sidecar sends the next one) is
// read here by position; other W3C forms by OpenTelemetry's parseTraceParent; B3 by ./b3.ts,
// which reads it as OpenTelemetry's B3 propagator does.
import { TraceFlags, type SpanContext } from '@opentelemetry/api';
import { parseTraceParent, TraceState } from '@opentelemetry/core';
import { b3Parent } from './b3.ts';

type Headers = Record<string, string | string[] | number | undefined>;

/** Every header that carries trace context in the formats tsmesh reads. */
export const TRACE_HEADERS = ['traceparent', 'tracestate', 'b3', 'x-b3-traceid', 'x-b3-spanid', 'x-b3-sampled', 'x-b3-parentspanid', 'x-b3-flags'] as const;

const NOT_WRITTEN = ['b3', 'x-b3-parentspanid', 'x-b3-flags'] as const;

/** The caller's trace context. */
export interface Extracted {
  readonly parent: SpanContext;
  /**
   * The caller sent B3 without a sampling decision ("deferred" in the B3 spec): the proxy then
   * decides with its own ratio, keeping the caller's trace id.
   */
  readonly deferred: boolean;
}

/**
 * The caller's trace context from `headers` (lower-cased names); undefined when there is none
 * or it is malformed. W3C wins over B3 when both are present.
 */
export function extractContext(headers: Headers): Extracted | undefined {
  const tp = headers['traceparent'];
  if (tp !== undefined) {
    const parent = w3cParent(Array.isArray(tp) ? tp[0] : tp, headers['tracestate']);
    if (parent) return { parent, deferred: false };
  }
  const single = headers['b3'];
  if (single === undefined && headers['x-b3-traceid'] === undefined) return undefined;
  const found = b3Parent(headers);
  if (!found) return undefined;
  const deferred = single !== undefined ? b3SingleDeferred(String(single)) : headers['x-b3-sampled'] === undefined && headers['x-b3-flags'] === undefined;
  return { parent: found, deferred };
}

// "traceid-spanid" with no third field (or a third field that is a parent span id) defers.
function b3SingleDeferred(value: string): boolean {
  const parts = value.trim().split('-');
  return parts.length < 3 || parts[2]!.length > 1;
}

/** A W3C traceparent (and its tracestate) as OpenTelemetry's W3CTraceContextPropagator reads them. */
function w3cParent(value: unknown, state: Headers[string]): SpanContext | undefined {
  if (typeof value !== 'string' || value === '') return undefined;
  const parsed = value.length === CANONICAL_LENGTH ? canonicalTraceParent(value) : parseTraceParent(value);
  if (!parsed) return undefined;
  const joined = Array.isArray(state) ? state.join(',') : state;
  if (!joined) return { traceId: parsed.traceId, spanId: parsed.spanId, traceFlags: parsed.traceFlags, isRemote: true };
  return { traceId: parsed.traceId, spanId: parsed.spanId, traceFlags: parsed.traceFlags, isRemote: true, traceState: new TraceState(typeof joined === 'string' ? joined : undefined) };
}

// "vv-<32 hex trace id>-<16 hex span id>-ff": 55 characters. At that length the W3C pattern
// (OpenTelemetry's TRACE_PARENT_REGEX) leaves no room for surrounding space or a suffix, so a
// 55-character value matches it exactly when it has this form: lower-case hex, version not
// "ff", ids not all zeros.
const CANONICAL_LENGTH = 55;
const HEX = new Int8Array(128).fill(-1);
for (let c = 0; c < 10; c++) HEX[48 + c] = c;
for (let c = 0; c < 6; c++) HEX[97 + c] = 10 + c;

function canonicalTraceParent(v: string): { traceId: string; spanId: string; traceFlags: number } | null {
  if (v.charCodeAt(2) !== 45 || v.charCodeAt(35) !== 45 || v.charCodeAt(52) !== 45) return null; // '-'
  let traceZero = true;
  let spanZero = true;
  for (let i = 0; i < CANONICAL_LENGTH; i++) {
    if (i === 2 || i === 35 || i === 52) continue;
    const c = v.charCodeAt(i);
    const d = c < 128 ? HEX[c]! : -1;
    if (d < 0) return null;
    if (d !== 0) {
      if (i > 2 && i < 35) traceZero = false;
      else if (i > 35 && i < 52) spanZero = false;
    }
  }
  if (traceZero || spanZero || (v.charCodeAt(0) === 102 && v.charCodeAt(1) === 102)) return null; // "ff": invalid version
  return { traceId: v.slice(3, 35), spanId: v.slice(36, 52), traceFlags: HEX[v.charCodeAt(53)]! * 16 + HEX[v.charCodeAt(54)]! };
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
