// Tracing for the sidecar's pipelines: a CLIENT span per outbound request with a child span per
// attempt, a SERVER span per inbound request, OpenTelemetry HTTP semantic conventions, context
// read from and written to the request headers (./propagation.ts), export over OTLP
// (./export.ts). One TracerProvider per sidecar and never the global one: nothing here patches
// node:http, so the proxy's own client and server make no spans, and two sidecars in one process
// (tests) keep their own service.name.
//
// An unsampled request costs a sampling decision, two ids and the trace headers: no attributes
// are built and nothing reaches a span processor. A sampled one is a MeshSpan (./span.ts): a
// ReadableSpan made here, handed to the SDK's processors (export, the recent-spans listener)
// when it ends; the SDK's Tracer is not used on the request path.
import type { IncomingHttpHeaders } from 'node:http';
import { randomFillSync } from 'node:crypto';
import { SpanKind, SpanStatusCode, TraceFlags, type Attributes, type SpanContext } from '@opentelemetry/api';
import type { SpanExporter, SpanProcessor } from '@opentelemetry/sdk-trace-base';
import type { Registry } from 'prom-client';
import type { Logger } from '../log/log.ts';
import { extractContext, injectContext } from './propagation.ts';
import { sampleDecision } from './sampler.ts';
import { podResource, type PodIdentity } from './resource.ts';
import { BoundedExportProcessor, createOtlpExporter, otlpTargetFromEnv, queueOptionsFromEnv, type ExportStats, type OtlpTarget, type QueueOptions } from './export.ts';
import { ListenerProcessor, type SpanListener } from './recorder.ts';
import { MeshSpan, SpanSink } from './span.ts';

type Headers = IncomingHttpHeaders | Record<string, string | string[] | number | undefined>;

/** What the spans need of a request; a Node IncomingMessage is one. */
export interface HttpRequestInfo {
  readonly method?: string | undefined;
  /** Origin-form (/path?q) or absolute-form (http://host/path) request target. */
  readonly url?: string | undefined;
  readonly headers: IncomingHttpHeaders;
  /** "1.1", "2". */
  readonly httpVersion?: string | undefined;
}

/** How a request or an attempt ended. A forward.ts Exchange is one; so is a ProxyError wrapped as { status, error }. */
export interface HttpOutcome {
  /** The response status the client saw (the proxy's own for its errors); 0 when there was none. */
  readonly status: number;
  /** The proxy's error: `reason` is the x-tsmesh-error reason, recorded as error.type. */
  readonly error?: { readonly reason: string; readonly message: string } | undefined;
}

export type AttemptOutcome = 'success' | 'retry' | 'failure';

export interface AttemptSpan {
  /** `outcome`: success (its response went to the client), retry (failed, another attempt follows), failure (failed, the last one). */
  end(result: HttpOutcome & { readonly outcome: AttemptOutcome }): void;
}

export interface ClientSpan {
  /** True when the span is recorded (sampled); false: every call below is nearly free. */
  readonly sampled: boolean;
  readonly context: SpanContext;
  /** Replaces the trace headers in `headers` with this span's context (W3C + B3 multi). */
  inject(headers: Headers): void;
  /**
   * The destination service once routed, "name.namespace" (attribute tsmesh.destination.service);
   * when a mesh route chose it, the Service the app called and the route (tsmesh.route.parent,
   * tsmesh.route.name "Kind/namespace/name").
   */
  setDestination(service: string, route?: { readonly parent: string; readonly route: string | undefined }): void;
  /** A child span for try number `n` (1 for the first) to `endpoint`. */
  attempt(n: number, endpoint: { readonly ip: string; readonly port: number; readonly pod?: string | undefined }): AttemptSpan;
  end(result: HttpOutcome): void;
}

export interface ServerSpan {
  readonly sampled: boolean;
  readonly context: SpanContext;
  /** Replaces the trace headers in `headers` (the request to the app) with this span's context. */
  inject(headers: Headers): void;
  end(result: HttpOutcome): void;
}

export interface PeerInfo {
  /** The caller's address as seen on the socket (network.peer.address, client.address). */
  readonly address?: string | undefined;
  readonly port?: number | undefined;
  /** The caller's SPIFFE ID when it came over mTLS (tsmesh.peer.identity). */
  readonly identity?: string | undefined;
}

export interface TracingOptions {
  /** Who makes the spans: service.name and k8s.* resource attributes. */
  readonly pod: PodIdentity;
  /** The live trace-sampling ratio (0..1) for new traces, read per new trace. */
  readonly sampling: () => number;
  /**
   * Fills a buffer with random bytes: the source of trace and span ids, and so of the sampling
   * of new traces (their ids decide, ./sampler.ts). Default node:crypto's randomFillSync; tests
   * pass a seeded one.
   */
  readonly random?: (into: Buffer) => void;
  /** OTEL_* variables (default process.env). */
  readonly env?: NodeJS.ProcessEnv;
  /** Export to this exporter instead of the one the environment names (tests); null: no export. */
  readonly exporter?: SpanExporter | null;
  /** Overrides of the export queue settings (default from OTEL_BSP_* and OTEL_EXPORTER_OTLP_TIMEOUT). */
  readonly queue?: Partial<QueueOptions>;
  /** Registers tsmesh_trace_spans_dropped_total / tsmesh_trace_spans_exported_total. */
  readonly registry?: Registry;
  readonly log?: Logger;
}

export interface Tracing {
  /** A CLIENT span for an outbound request, continuing the app's trace when its headers carry one. */
  client(req: HttpRequestInfo): ClientSpan;
  /** A SERVER span for an inbound request, continuing the caller's trace (its CLIENT span). */
  server(req: HttpRequestInfo, peer?: PeerInfo): ServerSpan;
  /** Calls `listener` with each finished sampled span (export or not); returns the unsubscribe. */
  onSpanEnd(listener: SpanListener): () => void;
  /** Where spans are exported; undefined when they are not. */
  readonly exportTarget: OtlpTarget | undefined;
  readonly stats: ExportStats;
  forceFlush(): Promise<void>;
  /** Flushes what it can within `timeoutMs` (default 2000), then stops. Never rejects. */
  shutdown(timeoutMs?: number): Promise<void>;
}

export function createTracing(options: TracingOptions): Tracing {
  const env = options.env ?? process.env;
  const log = options.log;
  const listeners = new ListenerProcessor();
  const processors: SpanProcessor[] = [listeners];

  const { options: envQueue, problems } = queueOptionsFromEnv(env);
  for (const p of problems) log?.warn({ code: 'TSMESH_OTEL_ENV_INVALID', variable: p.variable, value: p.value }, `${p.variable}="${p.value}": ${p.reason}`);
  const queue: QueueOptions = { ...envQueue, ...options.queue };

  let exporter: SpanExporter | undefined;
  let exportTarget: OtlpTarget | undefined;
  if (options.exporter !== undefined) {
    exporter = options.exporter ?? undefined;
  } else {
    const { target, problem } = otlpTargetFromEnv(env);
    if (problem) log?.warn({ code: 'TSMESH_OTLP_CONFIG_INVALID', variable: problem.variable, value: problem.value }, `${problem.variable}="${problem.value}": ${problem.reason}; spans are not exported`);
    if (target) {
      exportTarget = target;
      exporter = createOtlpExporter(target, { timeoutMillis: queue.exportTimeoutMillis });
    }
  }
  const exportProcessor = exporter ? new BoundedExportProcessor(exporter, queue, options.registry) : undefined;
  if (exportProcessor) processors.push(exportProcessor);
  const stats: ExportStats = exportProcessor?.stats ?? { exported: 0, droppedQueueFull: 0, droppedExportFailed: 0 };

  const sink = new SpanSink(podResource(options.pod), { name: 'tsmesh' }, processors);
  const sampling = options.sampling;
  const randomId = randomIds(options.random ?? randomFillSync);
  const start = (req: HttpRequestInfo, kind: SpanKind): MeshSpan | UnsampledSpan => {
    const caller = extractContext(req.headers);
    const parent = caller?.parent;
    const traceId = parent ? parent.traceId : randomId(16);
    const sampled = sampleDecision(caller, traceId, sampling);
    const context: SpanContext = { traceId, spanId: randomId(8), traceFlags: sampled ? TraceFlags.SAMPLED : TraceFlags.NONE };
    if (parent?.traceState) context.traceState = parent.traceState;
    return sampled ? new MeshSpan(sink, spanName(req.method), kind, context, parent) : new UnsampledSpan(context);
  };
  if (exportTarget) log?.info({ url: exportTarget.url, protocol: exportTarget.protocol }, 'exporting spans over OTLP');

  let shutdown: Promise<void> | undefined;
  return {
    client(req) {
      const span = start(req, SpanKind.CLIENT);
      return span instanceof UnsampledSpan ? span : clientSpan(sink, span, req, randomId);
    },
    server(req, peer) {
      const span = start(req, SpanKind.SERVER);
      return span instanceof UnsampledSpan ? span : serverSpan(span, req, peer);
    },
    onSpanEnd: (listener) => listeners.add(listener),
    exportTarget,
    stats,
    forceFlush: () => sink.forceFlush(),
    shutdown(timeoutMs = 2000) {
      shutdown ??= new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, timeoutMs);
        timer.unref();
        sink.shutdown().then(
          () => {
            clearTimeout(timer);
            resolve();
          },
          (err: Error) => {
            log?.warn({ code: 'TSMESH_TRACE_EXPORT_FAILED', err: err.message }, 'could not export the last spans');
            clearTimeout(timer);
            resolve();
          },
        );
      });
      return shutdown;
    },
  };
}

// ---- spans ----

const KNOWN_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH', 'QUERY']);

/** The span name: the method, or HTTP for a method the conventions do not know. */
const spanName = (method: string | undefined): string => (method !== undefined && KNOWN_METHODS.has(method) ? method : 'HTTP');

function methodAttributes(attrs: Attributes, method: string | undefined): void {
  const m = method ?? '';
  if (KNOWN_METHODS.has(m)) {
    attrs['http.request.method'] = m;
  } else {
    attrs['http.request.method'] = '_OTHER';
    attrs['http.request.method_original'] = m;
  }
}

/** Splits a request target into authority (absolute-form only) and path without the query. */
function splitTarget(url: string | undefined): { authority: string | undefined; path: string } {
  let u = url ?? '/';
  let authority: string | undefined;
  const scheme = u.startsWith('http://') ? 7 : u.startsWith('https://') ? 8 : 0;
  if (scheme) {
    const slash = u.indexOf('/', scheme);
    authority = u.slice(scheme, slash === -1 ? undefined : slash);
    u = slash === -1 ? '/' : u.slice(slash);
  }
  const q = u.search(/[?#]/);
  return { authority, path: q === -1 ? u : u.slice(0, q) };
}

function hostPort(authority: string, defaultPort: number): { host: string; port: number } {
  const m = /^(\[[^\]]*\]|[^:]*)(?::(\d+))?$/.exec(authority);
  if (!m) return { host: authority, port: defaultPort };
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port: m[2] ? Number(m[2]) : defaultPort };
}

function endAttributes(span: MeshSpan, result: HttpOutcome, errorFrom: number): void {
  if (result.status > 0) span.setAttribute('http.response.status_code', result.status);
  if (result.error) {
    span.setAttribute('error.type', result.error.reason);
    span.setStatus({ code: SpanStatusCode.ERROR, message: `${result.error.reason}: ${result.error.message}` });
  } else if (result.status >= errorFrom) {
    span.setAttribute('error.type', String(result.status));
    span.setStatus({ code: SpanStatusCode.ERROR });
  }
}

const NOOP_ATTEMPT: AttemptSpan = { end() {} };

/** `bytes` random bytes as lower-case hex (16: a trace id, 8: a span id); never all zeros. */
type RandomId = (bytes: number) => string;

// Random ids from a pooled buffer refilled from `fill` (the system CSPRNG by default), turned
// into hex once per refill: an id is then a slice of that text (measured: ~0.1 us vs ~2 us
// formatting Math.random() words for a trace id, and no native call per id).
function randomIds(fill: (into: Buffer) => void): RandomId {
  const pool = Buffer.alloc(4096);
  let hex = '';
  let offset = pool.length;
  return (bytes) => {
    if (offset + bytes > pool.length) {
      fill(pool);
      hex = pool.toString('hex');
      offset = 0;
    }
    let id = hex.slice(offset * 2, (offset + bytes) * 2);
    offset += bytes;
    if (isZeros(id)) id = id.slice(0, -1) + '1';
    return id;
  };
}

function isZeros(hex: string): boolean {
  for (let i = 0; i < hex.length; i++) if (hex.charCodeAt(i) !== 48) return false;
  return true;
}

class UnsampledSpan implements ClientSpan, ServerSpan {
  readonly sampled = false;
  readonly context: SpanContext;
  constructor(context: SpanContext) {
    this.context = context;
  }
  inject(headers: Headers): void {
    injectContext(headers, this.context);
  }
  setDestination(): void {}
  attempt(): AttemptSpan {
    return NOOP_ATTEMPT;
  }
  end(): void {}
}

class RecordingAttempt implements AttemptSpan {
  readonly #span: MeshSpan;
  #ended = false;
  constructor(span: MeshSpan) {
    this.#span = span;
  }
  end(result: HttpOutcome & { readonly outcome: AttemptOutcome }): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#span.setAttribute('tsmesh.attempt.outcome', result.outcome);
    endAttributes(this.#span, result, 400);
    this.#span.end();
  }
}

class RecordingClientSpan implements ClientSpan {
  readonly sampled = true;
  readonly context: SpanContext;
  readonly #span: MeshSpan;
  readonly #sink: SpanSink;
  readonly #method: string;
  readonly #randomId: RandomId;
  #ended = false;
  constructor(sink: SpanSink, span: MeshSpan, method: string, randomId: RandomId) {
    this.#sink = sink;
    this.#span = span;
    this.#method = method;
    this.#randomId = randomId;
    this.context = span.spanContext();
  }
  inject(headers: Headers): void {
    injectContext(headers, this.context);
  }
  setDestination(service: string, route?: { readonly parent: string; readonly route: string | undefined }): void {
    this.#span.setAttribute('tsmesh.destination.service', service);
    if (route) {
      this.#span.setAttribute('tsmesh.route.parent', route.parent);
      if (route.route) this.#span.setAttribute('tsmesh.route.name', route.route);
    }
  }
  attempt(n: number, endpoint: { readonly ip: string; readonly port: number; readonly pod?: string | undefined }): AttemptSpan {
    const attrs: Attributes = {
      'tsmesh.attempt': n,
      'network.peer.address': endpoint.ip,
      'network.peer.port': endpoint.port,
      'tsmesh.endpoint': endpoint.ip.includes(':') ? `[${endpoint.ip}]:${endpoint.port}` : `${endpoint.ip}:${endpoint.port}`,
    };
    if (n > 1) attrs['http.request.resend_count'] = n - 1;
    if (endpoint.pod) attrs['tsmesh.endpoint.pod'] = endpoint.pod;
    const context: SpanContext = { ...this.context, spanId: this.#randomId(8), isRemote: false };
    return new RecordingAttempt(new MeshSpan(this.#sink, `${this.#method} attempt ${n}`, SpanKind.INTERNAL, context, this.context, attrs));
  }
  end(result: HttpOutcome): void {
    if (this.#ended) return;
    this.#ended = true;
    endAttributes(this.#span, result, 400);
    this.#span.end();
  }
}

class RecordingServerSpan implements ServerSpan {
  readonly sampled = true;
  readonly context: SpanContext;
  readonly #span: MeshSpan;
  #ended = false;
  constructor(span: MeshSpan) {
    this.#span = span;
    this.context = span.spanContext();
  }
  inject(headers: Headers): void {
    injectContext(headers, this.context);
  }
  end(result: HttpOutcome): void {
    if (this.#ended) return;
    this.#ended = true;
    endAttributes(this.#span, result, 500);
    this.#span.end();
  }
}

function clientSpan(sink: SpanSink, span: MeshSpan, req: HttpRequestInfo, randomId: RandomId): ClientSpan {
  const attrs = span.attributes;
  methodAttributes(attrs, req.method);
  const target = splitTarget(req.url);
  const authority = target.authority ?? (typeof req.headers.host === 'string' ? req.headers.host : '');
  const { host, port } = hostPort(authority, 80);
  attrs['server.address'] = host;
  attrs['server.port'] = port;
  attrs['url.full'] = `http://${authority}${target.path}`;
  attrs['url.path'] = target.path;
  if (req.httpVersion) attrs['network.protocol.version'] = req.httpVersion;
  const ua = req.headers['user-agent'];
  if (ua) attrs['user_agent.original'] = ua;
  return new RecordingClientSpan(sink, span, spanName(req.method), randomId);
}

function serverSpan(span: MeshSpan, req: HttpRequestInfo, peer: PeerInfo = {}): ServerSpan {
  const attrs = span.attributes;
  attrs['url.scheme'] = 'http';
  methodAttributes(attrs, req.method);
  attrs['url.path'] = splitTarget(req.url).path;
  const host = req.headers.host;
  if (host) {
    const hp = hostPort(host, 80);
    attrs['server.address'] = hp.host;
    attrs['server.port'] = hp.port;
  }
  if (peer.address) {
    attrs['client.address'] = peer.address;
    attrs['network.peer.address'] = peer.address;
  }
  if (peer.port !== undefined) attrs['network.peer.port'] = peer.port;
  if (peer.identity) attrs['tsmesh.peer.identity'] = peer.identity;
  if (req.httpVersion) attrs['network.protocol.version'] = req.httpVersion;
  const ua = req.headers['user-agent'];
  if (ua) attrs['user_agent.original'] = ua;
  return new RecordingServerSpan(span);
}
