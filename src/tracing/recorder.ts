// Finished spans as plain data, for the demo's terminal waterfall and for debugging without a
// collector: listeners get each finished sampled span; SpanRecorder keeps the last N in memory
// (serve them on the admin port: GET /debug/spans?trace=<id> -> spansToJSON(recorder.spans(id))).
import { SpanKind, SpanStatusCode, type AttributeValue } from '@opentelemetry/api';
import { hrTimeToMicroseconds } from '@opentelemetry/core';
import type { ReadableSpan, SpanProcessor } from '@opentelemetry/sdk-trace-base';
import type { Logger } from '../log/log.ts';

export type FinishedSpanKind = 'internal' | 'server' | 'client' | 'producer' | 'consumer';

/** A finished span as JSON-safe data. Times are microseconds since the Unix epoch. */
export interface FinishedSpan {
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId: string | undefined;
  readonly name: string;
  readonly kind: FinishedSpanKind;
  /** The resource's service.name (the workload). */
  readonly service: string;
  readonly startUs: number;
  readonly durationUs: number;
  readonly status: 'unset' | 'ok' | 'error';
  readonly statusMessage?: string | undefined;
  readonly attributes: Readonly<Record<string, AttributeValue | undefined>>;
}

const KINDS: Record<number, FinishedSpanKind> = {
  [SpanKind.INTERNAL]: 'internal',
  [SpanKind.SERVER]: 'server',
  [SpanKind.CLIENT]: 'client',
  [SpanKind.PRODUCER]: 'producer',
  [SpanKind.CONSUMER]: 'consumer',
};

export function toFinishedSpan(span: ReadableSpan): FinishedSpan {
  const sc = span.spanContext();
  const status = span.status.code === SpanStatusCode.ERROR ? 'error' : span.status.code === SpanStatusCode.OK ? 'ok' : 'unset';
  return {
    traceId: sc.traceId,
    spanId: sc.spanId,
    parentSpanId: span.parentSpanContext?.spanId,
    name: span.name,
    kind: KINDS[span.kind] ?? 'internal',
    service: String(span.resource.attributes['service.name'] ?? 'unknown'),
    startUs: Math.round(hrTimeToMicroseconds(span.startTime)),
    durationUs: Math.round(hrTimeToMicroseconds(span.duration)),
    status,
    ...(span.status.message ? { statusMessage: span.status.message } : {}),
    attributes: { ...span.attributes },
  };
}

export type SpanListener = (span: FinishedSpan) => void;

/** A span processor that hands finished sampled spans to listeners (converted only when there are listeners). */
export class ListenerProcessor implements SpanProcessor {
  readonly #listeners = new Set<SpanListener>();

  add(listener: SpanListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  get size(): number {
    return this.#listeners.size;
  }

  onStart(): void {}

  onEnd(span: ReadableSpan): void {
    if (this.#listeners.size === 0) return;
    const finished = toFinishedSpan(span);
    for (const l of this.#listeners) {
      try {
        l(finished);
      } catch {
        // A listener's failure must not reach the request that ended the span.
      }
    }
  }

  forceFlush(): Promise<void> {
    return Promise.resolve();
  }

  shutdown(): Promise<void> {
    this.#listeners.clear();
    return Promise.resolve();
  }
}

/** The last `capacity` finished spans, oldest dropped first. Use as a listener. */
export class SpanRecorder {
  readonly #ring: (FinishedSpan | undefined)[];
  #next = 0;
  #count = 0;
  readonly listener: SpanListener = (s) => this.record(s);

  constructor(capacity = 2000) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`span recorder capacity must be a positive integer, got ${capacity}`);
    this.#ring = new Array<FinishedSpan | undefined>(capacity);
  }

  record(span: FinishedSpan): void {
    this.#ring[this.#next] = span;
    this.#next = (this.#next + 1) % this.#ring.length;
    this.#count = Math.min(this.#count + 1, this.#ring.length);
  }

  /** Recorded spans, oldest first; only those of `traceId` when given. */
  spans(traceId?: string): FinishedSpan[] {
    const out: FinishedSpan[] = [];
    const n = this.#ring.length;
    for (let i = 0; i < this.#count; i++) {
      const s = this.#ring[(this.#next - this.#count + i + n) % n]!;
      if (traceId === undefined || s.traceId === traceId) out.push(s);
    }
    return out;
  }

  clear(): void {
    this.#ring.fill(undefined);
    this.#next = 0;
    this.#count = 0;
  }
}

/** A listener that logs each finished span at debug as a pino line with `type: "span"`. */
export function spanLogListener(log: Logger): SpanListener {
  return (s) => {
    if (log.isLevelEnabled('debug')) log.debug({ type: 'span', span: s }, `span ${s.service} ${s.name} ${(s.durationUs / 1000).toFixed(3)} ms`);
  };
}
