// Sampling (DESIGN.md: annotation trace-sampling, ratio 0..1 of new traces): a continued trace
// keeps its caller's decision (parent-based), so a trace is whole or absent across hops; a new
// trace (or a B3 caller that deferred the decision) is sampled with the live ratio. The ratio
// is read per decision, so `kubectl annotate` takes effect on the next request.
//
// The decision is made before the SDK is asked for a span, so an unsampled request never
// reaches it (./tracing.ts); the SDK itself then samples everything it is given.
import { TraceFlags } from '@opentelemetry/api';
import type { Extracted } from './propagation.ts';

/**
 * True when `traceId` falls under `ratio`: a pure function of the trace id, so every sidecar
 * that decides for the same trace with the same ratio decides the same way.
 */
export function ratioSamples(traceId: string, ratio: number): boolean {
  if (!(ratio > 0)) return false;
  if (ratio >= 1) return true;
  // The last 8 hex digits of a random trace id are uniform in [0, 2^32).
  return parseInt(traceId.slice(-8), 16) < ratio * 0x1_0000_0000;
}

/** Parent-based: the caller's sampled flag when there is a caller with a decision; else the ratio. */
export function sampleDecision(caller: Extracted | undefined, traceId: string, ratio: () => number): boolean {
  if (caller && !caller.deferred) return (caller.parent.traceFlags & TraceFlags.SAMPLED) === TraceFlags.SAMPLED;
  return ratioSamples(traceId, ratio());
}
