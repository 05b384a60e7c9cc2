// Sampling (DESIGN.md: annotation trace-sampling, ratio 0..1 of new traces): a continued trace
// keeps its caller's decision (parent-based), so a trace is whole or absent across hops; a new
// trace (or a B3 caller that deferred the decision) is sampled with the live ratio. The ratio
// is read per decision, so `kubectl annotate` takes effect on the next request.
import { trace, isSpanContextValid, SamplingDecision, TraceFlags, type Context } from '@opentelemetry/api';
import type { Sampler, SamplingResult } from '@opentelemetry/sdk-trace-base';
import { DEFERRED_SAMPLING } from './propagation.ts';

const SAMPLED: SamplingResult = Object.freeze({ decision: SamplingDecision.RECORD_AND_SAMPLED });
const DROPPED: SamplingResult = Object.freeze({ decision: SamplingDecision.NOT_RECORD });

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

export class MeshSampler implements Sampler {
  readonly #ratio: () => number;
  constructor(ratio: () => number) {
    this.#ratio = ratio;
  }

  shouldSample(context: Context, traceId: string): SamplingResult {
    const parent = trace.getSpanContext(context);
    if (parent && isSpanContextValid(parent) && context.getValue(DEFERRED_SAMPLING) !== true) {
      return (parent.traceFlags & TraceFlags.SAMPLED) === TraceFlags.SAMPLED ? SAMPLED : DROPPED;
    }
    return ratioSamples(traceId, this.#ratio()) ? SAMPLED : DROPPED;
  }

  toString(): string {
    return 'MeshSampler{parent-based; new traces: trace-sampling ratio}';
  }
}
