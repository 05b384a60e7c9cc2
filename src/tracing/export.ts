// Span export: OTLP over HTTP to the endpoint in the standard OTEL_EXPORTER_OTLP_* variables,
// batched, with a bounded queue. Export must never slow a request down: spans are handed over
// with a synchronous push, and when the queue is full (the collector is slow or down) they are
// dropped and counted, not waited for.
import { Counter, type Registry } from 'prom-client';
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import { BatchSpanProcessor, type ReadableSpan, type SpanExporter, type SpanProcessor } from '@opentelemetry/sdk-trace-base';
import type { Context } from '@opentelemetry/api';
import type { Span } from '@opentelemetry/sdk-trace-base';

export type OtlpProtocol = 'http/protobuf' | 'http/json';
export const OTLP_PROTOCOLS: readonly OtlpProtocol[] = ['http/protobuf', 'http/json'];

export interface OtlpTarget {
  /** The full traces URL, e.g. http://jaeger.tsmesh-system:4318/v1/traces. */
  readonly url: string;
  readonly protocol: OtlpProtocol;
}

export interface OtlpProblem {
  readonly variable: string;
  readonly value: string;
  readonly reason: string;
}

/**
 * Where to export, from the OTEL_* variables: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (used as is)
 * or OTEL_EXPORTER_OTLP_ENDPOINT (+ /v1/traces); OTEL_EXPORTER_OTLP_TRACES_PROTOCOL or
 * OTEL_EXPORTER_OTLP_PROTOCOL (http/protobuf by default). `target` is undefined when no
 * endpoint is set, when OTEL_TRACES_EXPORTER is "none", or when a value is unusable (then
 * `problem` names the variable).
 */
export function otlpTargetFromEnv(env: NodeJS.ProcessEnv): { target: OtlpTarget | undefined; problem?: OtlpProblem } {
  const get = (name: string) => {
    const v = env[name]?.trim();
    return v ? v : undefined;
  };
  if (get('OTEL_SDK_DISABLED')?.toLowerCase() === 'true') return { target: undefined };
  const exporters = get('OTEL_TRACES_EXPORTER');
  if (exporters !== undefined && exporters.split(',').map((s) => s.trim()).every((s) => s === 'none')) return { target: undefined };

  const protocolVar = get('OTEL_EXPORTER_OTLP_TRACES_PROTOCOL') !== undefined ? 'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL' : 'OTEL_EXPORTER_OTLP_PROTOCOL';
  const protocol = get(protocolVar) ?? 'http/protobuf';
  if (!(OTLP_PROTOCOLS as readonly string[]).includes(protocol)) {
    return { target: undefined, problem: { variable: protocolVar, value: protocol, reason: `unsupported OTLP protocol (tsmesh exports ${OTLP_PROTOCOLS.join(' or ')}; for Jaeger use port 4318)` } };
  }

  let variable = 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT';
  let url = get(variable);
  if (url === undefined) {
    variable = 'OTEL_EXPORTER_OTLP_ENDPOINT';
    const base = get(variable);
    if (base === undefined) return { target: undefined };
    url = base.replace(/\/+$/, '') + '/v1/traces';
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return { target: undefined, problem: { variable, value: env[variable] ?? '', reason: 'not a URL (e.g. http://jaeger.tsmesh-system:4318)' } };
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    return { target: undefined, problem: { variable, value: env[variable] ?? '', reason: `scheme ${parsed.protocol} is not http: or https:` } };
  }
  return { target: { url, protocol: protocol as OtlpProtocol } };
}

/**
 * The OTLP exporter for `target`; the other OTEL_EXPORTER_OTLP_* variables (headers, timeout,
 * compression) are read by the exporter. The exporter (./otlp.ts: OTLP's HTTP delegate and its
 * trace serializer, ~0.3 MiB) is loaded at the first export, so a sidecar that exports nothing
 * never loads it.
 */
export function createOtlpExporter(target: OtlpTarget, options: { timeoutMillis?: number } = {}): SpanExporter {
  const config = { url: target.url, ...(options.timeoutMillis !== undefined ? { timeoutMillis: options.timeoutMillis } : {}) };
  let loaded: Promise<SpanExporter> | undefined;
  let exporter: SpanExporter | undefined;
  const load = (): Promise<SpanExporter> =>
    (loaded ??= import('./otlp.ts').then((m) => (exporter = m.otlpTraceExporter(target.protocol, config))));
  return {
    export(spans, done) {
      if (exporter) return exporter.export(spans, done);
      load().then(
        (e) => e.export(spans, done),
        (err: Error) => done({ code: ExportResultCode.FAILED, error: err }),
      );
    },
    shutdown() {
      // an export waiting for the load runs first (registered earlier), then the shutdown
      return loaded ? loaded.then((e) => e.shutdown(), () => undefined) : Promise.resolve();
    },
    forceFlush() {
      return loaded ? loaded.then((e) => e.forceFlush?.(), () => undefined) : Promise.resolve();
    },
  };
}

export interface QueueOptions {
  /** Spans waiting for export at most; more are dropped. Default OTEL_BSP_MAX_QUEUE_SIZE or 2048. */
  readonly maxQueueSize: number;
  /** Spans per OTLP request. Default OTEL_BSP_MAX_EXPORT_BATCH_SIZE or 512. */
  readonly maxExportBatchSize: number;
  /** How long a span may wait for a batch to fill. Default OTEL_BSP_SCHEDULE_DELAY or 1000 ms. */
  readonly scheduledDelayMillis: number;
  /** How long one export may take. Default OTEL_EXPORTER_OTLP_TIMEOUT or 10000 ms. */
  readonly exportTimeoutMillis: number;
}

export function queueOptionsFromEnv(env: NodeJS.ProcessEnv): { options: QueueOptions; problems: OtlpProblem[] } {
  const problems: OtlpProblem[] = [];
  const num = (name: string, def: number): number => {
    const raw = env[name]?.trim();
    if (!raw) return def;
    const n = Number(raw);
    if (Number.isInteger(n) && n > 0) return n;
    problems.push({ variable: name, value: raw, reason: `must be a positive integer; using ${def}` });
    return def;
  };
  const maxQueueSize = num('OTEL_BSP_MAX_QUEUE_SIZE', 2048);
  const options = {
    maxQueueSize,
    maxExportBatchSize: Math.min(maxQueueSize, num('OTEL_BSP_MAX_EXPORT_BATCH_SIZE', 512)),
    scheduledDelayMillis: num('OTEL_BSP_SCHEDULE_DELAY', 1000),
    exportTimeoutMillis: num('OTEL_EXPORTER_OTLP_TRACES_TIMEOUT', num('OTEL_EXPORTER_OTLP_TIMEOUT', 10_000)),
  };
  return { options, problems };
}

export const SPANS_DROPPED_METRIC = 'tsmesh_trace_spans_dropped_total';
export const SPANS_EXPORTED_METRIC = 'tsmesh_trace_spans_exported_total';

/** Counts of what became of finished, sampled spans; also registered as Prometheus counters. */
export interface ExportStats {
  exported: number;
  droppedQueueFull: number;
  droppedExportFailed: number;
}

/**
 * The OpenTelemetry BatchSpanProcessor behind a guard that keeps its queue bounded and counts:
 * the guard tracks how many spans the batch processor holds (handed to it, not yet handed to
 * the exporter) and drops at the limit itself, so every drop is counted; spans in a failed
 * export are counted as dropped too.
 */
export class BoundedExportProcessor implements SpanProcessor {
  readonly stats: ExportStats = { exported: 0, droppedQueueFull: 0, droppedExportFailed: 0 };
  readonly #batch: BatchSpanProcessor;
  readonly #limit: number;
  #queued = 0;
  #closed = false;

  constructor(exporter: SpanExporter, queue: QueueOptions, registry?: Registry) {
    this.#limit = queue.maxQueueSize;
    const stats = this.stats;
    const counting: SpanExporter = {
      export: (spans: ReadableSpan[], done: (r: ExportResult) => void) => {
        this.#queued -= spans.length;
        exporter.export(spans, (r) => {
          if (r.code === ExportResultCode.SUCCESS) stats.exported += spans.length;
          else stats.droppedExportFailed += spans.length;
          done(r);
        });
      },
      shutdown: () => exporter.shutdown(),
      ...(exporter.forceFlush ? { forceFlush: () => exporter.forceFlush!() } : {}),
    };
    // exportTimeoutMillis of the batch processor is a backstop above the exporter's own timeout.
    this.#batch = new BatchSpanProcessor(counting, {
      maxQueueSize: queue.maxQueueSize,
      maxExportBatchSize: queue.maxExportBatchSize,
      scheduledDelayMillis: queue.scheduledDelayMillis,
      exportTimeoutMillis: queue.exportTimeoutMillis + 1000,
    });
    if (registry) registerExportCounters(registry, stats);
  }

  onStart(_span: Span, _parentContext: Context): void {}

  onEnd(span: ReadableSpan): void {
    if (this.#closed) return;
    if (this.#queued >= this.#limit) {
      this.stats.droppedQueueFull++;
      return;
    }
    this.#queued++;
    this.#batch.onEnd(span);
  }

  forceFlush(): Promise<void> {
    return this.#batch.forceFlush();
  }

  shutdown(): Promise<void> {
    this.#closed = true;
    return this.#batch.shutdown();
  }
}

function registerExportCounters(registry: Registry, stats: ExportStats): void {
  for (const name of [SPANS_DROPPED_METRIC, SPANS_EXPORTED_METRIC]) if (registry.getSingleMetric(name)) registry.removeSingleMetric(name);
  new Counter({
    name: SPANS_DROPPED_METRIC,
    help: 'Sampled spans not exported: reason queue_full (the collector is slow or down and the export queue is full) or export_failed (the collector refused or did not answer)',
    labelNames: ['reason'],
    registers: [registry],
    collect() {
      this.reset();
      this.inc({ reason: 'queue_full' }, stats.droppedQueueFull);
      this.inc({ reason: 'export_failed' }, stats.droppedExportFailed);
    },
  });
  new Counter({
    name: SPANS_EXPORTED_METRIC,
    help: 'Spans the OTLP collector accepted',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(stats.exported);
    },
  });
}
