// B3 trace context (https://github.com/openzipkin/b3-propagation) read as OpenTelemetry's
// B3Propagator reads it, without loading it and its 39 modules into every sidecar (issue 17,
// memory): the single `b3` header when it is present and not empty, else the X-B3-* headers.
// src/tracing/propagation.test.ts compares the two on fixed and seeded random headers.
import { TraceFlags, type SpanContext } from '@opentelemetry/api';

type Headers = Record<string, string | string[] | number | undefined>;

const first = (v: Headers[string]): string | number | undefined => (Array.isArray(v) ? v[0] : v);

/** The caller's B3 context, or undefined when there is none or it is malformed. */
export function b3Parent(headers: Headers): SpanContext | undefined {
  const single = first(headers['b3']);
  if (single) return typeof single === 'string' ? b3Single(single) : undefined;
  return b3Multi(headers);
}

// "{trace id: 16 or 32 hex}-{span id: 16 hex}[-{1, 0 or d}]..." found anywhere in the value;
// a sampling field must not run on into more hex (then it is a parent span id).
const SINGLE = /([0-9a-f]{32}|[0-9a-f]{16})-([0-9a-f]{16})(?:-([01d])(?![0-9a-f]))?/;

function b3Single(value: string): SpanContext | undefined {
  const m = SINGLE.exec(value);
  if (!m) return undefined;
  const traceId = m[1]!.length === 16 ? `${'0'.repeat(16)}${m[1]}` : m[1]!;
  const spanId = m[2]!;
  if (!validId(traceId, 32) || !validId(spanId, 16)) return undefined;
  const traceFlags = m[3] === '1' || m[3] === 'd' ? TraceFlags.SAMPLED : TraceFlags.NONE;
  return { traceId, spanId, isRemote: true, traceFlags };
}

const SAMPLED = new Set<unknown>(['1', 'true', 'True', 1]);
const UNSAMPLED = new Set<unknown>(['0', 'false', 'False', 0]);

function b3Multi(headers: Headers): SpanContext | undefined {
  const t = first(headers['x-b3-traceid']);
  const s = first(headers['x-b3-spanid']);
  const traceId = typeof t === 'string' ? t.padStart(32, '0') : '';
  const spanId = typeof s === 'string' ? s : '';
  const sampled = first(headers['x-b3-sampled']);
  // debug (X-B3-Flags: 1) means sampled; a sampling value that is neither yes nor no spoils the context
  let traceFlags: TraceFlags;
  if (first(headers['x-b3-flags']) === '1' || SAMPLED.has(sampled)) traceFlags = TraceFlags.SAMPLED;
  else if (sampled === undefined || UNSAMPLED.has(sampled)) traceFlags = TraceFlags.NONE;
  else return undefined;
  if (!validId(traceId, 32) || !validId(spanId, 16)) return undefined;
  return { traceId, spanId, isRemote: true, traceFlags };
}

/** `length` hex digits (either case), not all zeros. */
function validId(id: string, length: number): boolean {
  if (id.length !== length) return false;
  let nonZero = false;
  for (let i = 0; i < length; i++) {
    const c = id.charCodeAt(i);
    const hex = (c >= 48 && c <= 57) || (c >= 97 && c <= 102) || (c >= 65 && c <= 70);
    if (!hex) return false;
    if (c !== 48) nonZero = true;
  }
  return nonZero;
}
