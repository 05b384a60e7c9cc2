// A recorded span, made directly rather than by the OpenTelemetry SDK's Tracer: the sidecar
// decides sampling itself, never uses the global context or span limits, and sets a handful of
// attributes, so the SDK's general-purpose span (clock anchoring, limit checks on every
// attribute, context plumbing, span-start hooks) cost more than the span is worth on every
// request (bench/NOTES.md). The object is a ReadableSpan, so the SDK's span processors and OTLP
// exporters take it as they take their own: times are converted to HrTime only when read.
import { SpanStatusCode, type Attributes, type AttributeValue, type HrTime, type Link, type SpanContext, type SpanKind, type SpanStatus } from '@opentelemetry/api';
import { millisToHrTime, type InstrumentationScope } from '@opentelemetry/core';
import type { Resource } from '@opentelemetry/resources';
import type { ReadableSpan, SpanProcessor, TimedEvent } from '@opentelemetry/sdk-trace-base';

/** Where finished spans go: the processors, and what every span of this sidecar shares. */
export class SpanSink {
  readonly resource: Resource;
  readonly scope: InstrumentationScope;
  readonly processors: readonly SpanProcessor[];
  constructor(resource: Resource, scope: InstrumentationScope, processors: readonly SpanProcessor[]) {
    this.resource = resource;
    this.scope = scope;
    this.processors = processors;
  }

  end(span: MeshSpan): void {
    for (const p of this.processors) p.onEnd(span);
  }

  forceFlush(): Promise<void> {
    return Promise.all(this.processors.map((p) => p.forceFlush())).then(() => undefined);
  }

  shutdown(): Promise<void> {
    return Promise.all(this.processors.map((p) => p.shutdown())).then(() => undefined);
  }
}

const NO_LINKS: Link[] = [];
const NO_EVENTS: TimedEvent[] = [];
const now = (): number => performance.timeOrigin + performance.now();

export class MeshSpan implements ReadableSpan {
  readonly name: string;
  readonly kind: SpanKind;
  readonly parentSpanContext: SpanContext | undefined;
  readonly attributes: Attributes;
  status: SpanStatus = { code: SpanStatusCode.UNSET };
  readonly links = NO_LINKS;
  readonly events = NO_EVENTS;
  readonly droppedAttributesCount = 0;
  readonly droppedEventsCount = 0;
  readonly droppedLinksCount = 0;
  readonly #context: SpanContext;
  readonly #sink: SpanSink;
  readonly #startMs = now();
  #endMs = -1;

  constructor(sink: SpanSink, name: string, kind: SpanKind, context: SpanContext, parent: SpanContext | undefined, attributes: Attributes = {}) {
    this.#sink = sink;
    this.name = name;
    this.kind = kind;
    this.#context = context;
    this.parentSpanContext = parent;
    this.attributes = attributes;
  }

  spanContext(): SpanContext {
    return this.#context;
  }

  setAttribute(key: string, value: AttributeValue | undefined): void {
    if (this.#endMs < 0 && value !== undefined && value !== null) this.attributes[key] = value;
  }

  setStatus(status: SpanStatus): void {
    if (this.#endMs < 0) this.status = status;
  }

  /** Ends the span once and hands it to the processors. */
  end(): void {
    if (this.#endMs >= 0) return;
    this.#endMs = Math.max(now(), this.#startMs);
    this.#sink.end(this);
  }

  get ended(): boolean {
    return this.#endMs >= 0;
  }
  get startTime(): HrTime {
    return millisToHrTime(this.#startMs);
  }
  get endTime(): HrTime {
    return millisToHrTime(this.#endMs >= 0 ? this.#endMs : this.#startMs);
  }
  get duration(): HrTime {
    return millisToHrTime(this.#endMs >= 0 ? this.#endMs - this.#startMs : 0);
  }
  get resource(): Resource {
    return this.#sink.resource;
  }
  get instrumentationScope(): InstrumentationScope {
    return this.#sink.scope;
  }
}
