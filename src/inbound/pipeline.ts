// The inbound pipeline, once for every protocol: an HTTP/1.1 request, an HTTP/2 stream (a
// gRPC call) and a WebSocket (any Upgrade) request from a caller go through the same stages:
//   admission   TSMESH_MAX_REQUESTS (503 overloaded), a declared body over
//               TSMESH_MAX_REQUEST_BODY (413); in flight from here to its end
//   authorize   the pod's `allow` list, live (403 forbidden; gRPC: PERMISSION_DENIED)
//   identity    x-forwarded-client-cert: the caller's as this sidecar verified it, and only
//               that (a value the caller sent is dropped); x-forwarded-for/-proto/-host
//   trace       a SERVER span continuing the caller's CLIENT span, its context sent to the app
//   forward     the protocol's: to the app at the pod's own IP (not 127.0.0.1: an app that
//               listens only on localhost chose not to be reachable from other pods) and the
//               target port, in the protocol the caller spoke, one try
//   observe     metrics (and gRPC statuses), the access line, the span's end
// How each protocol is read, refused and forwarded is its adapter (./adapters.ts); what a
// stage decides is written here once, so a limit or a header rule holds on every path.
import { ProxyError } from '../errors/errors.ts';
import { admission } from '../http/limits.ts';
import { setForwarded } from '../http/headers.ts';
import { logHttp, type RequestLine } from '../log/access.ts';
import { xfccValue, XFCC_HEADER, type AllowList } from '../mtls/index.ts';
import type { MeshMetrics, Peers, RequestSeries } from '../metrics/mesh-metrics.ts';
import type { GrpcMetrics } from '../h2/grpc-metrics.ts';
import type { Limits } from '../config/settings.ts';
import type { Tracker } from '../lifecycle/tracker.ts';
import type { Logger } from '../log/log.ts';
import type { HttpRequestInfo, ServerSpan, Tracing } from '../tracing/index.ts';

export interface Caller {
  /** The peer's verified SPIFFE ID; null for a plaintext or unauthenticated caller. */
  readonly peer: string | null;
  readonly port: number;
}

/** How a request ended, as the pipeline observes it. */
export interface InboundResult {
  status: number;
  error: ProxyError | undefined;
  bytesIn: number;
  bytesOut: number;
}

/** What differs per protocol. One per protocol, shared by its requests. */
export interface InboundAdapter<Q> {
  /** What the span reads of the request. */
  spanRequest(call: InboundCall<Q>): HttpRequestInfo;
  /** Sends the proxy's error to the caller; the status it saw (0: none). */
  refuse(call: InboundCall<Q>, err: ProxyError): number;
  /** Sends the request to the app (identity headers and trace context are in `call.headers`); `call.done` once it ends. */
  forward(call: InboundCall<Q>): void;
  /** A gRPC call's status as the caller saw it. */
  grpcStatus(call: InboundCall<Q>): number | undefined;
}

export interface InboundPipelineDeps {
  readonly podIP: string;
  readonly limits: Limits;
  readonly tracker: Tracker;
  readonly tracing: Tracing;
  readonly metrics: MeshMetrics;
  readonly grpcMetrics: GrpcMetrics;
  readonly log: Logger;
  /** The allow-list in force (live). */
  readonly allow: () => AllowList;
  /** This sidecar's SPIFFE ID, once it has a certificate (the `By` of x-forwarded-client-cert). */
  readonly ownSpiffeId: () => string | undefined;
  /** How a caller's requests are observed (resolved once per caller and registry version). */
  readonly observed: (remote: string | undefined, caller: Caller) => Observed;
}

/** How a caller's requests are observed. */
export interface Observed {
  readonly version: number;
  readonly remote: string | undefined;
  readonly peers: Peers;
  readonly series: RequestSeries;
  /** The app's address, as the access line writes it. */
  readonly upstream: string;
}

/** One request (of any protocol) through the inbound pipeline. */
export class InboundCall<Q = unknown> implements RequestLine {
  readonly pipeline: InboundPipeline;
  readonly adapter: InboundAdapter<Q>;
  readonly request: Q;
  readonly caller: Caller;
  readonly start: number;
  // the access line
  readonly method: string;
  readonly authority: string;
  readonly path: string;
  readonly protocol: string;
  readonly client: string | undefined;
  readonly clientPort: number | undefined;
  readonly grpc: boolean;
  /** The request's header fields, as they will be sent to the app. */
  readonly headers: Record<string, string | string[] | number | undefined>;
  span: ServerSpan | undefined = undefined;
  /** The forward's end: the request's observation. */
  readonly done = (e: InboundResult): void => this.pipeline.finish(this, e);

  // positional, not an options object: one allocation per request, the call itself
  constructor(
    pipeline: InboundPipeline,
    adapter: InboundAdapter<Q>,
    request: Q,
    caller: Caller,
    method: string,
    authority: string,
    path: string,
    protocol: string,
    client: string | undefined,
    clientPort: number | undefined,
    grpc: boolean,
    headers: InboundCall['headers'],
  ) {
    this.start = performance.now();
    this.pipeline = pipeline;
    this.adapter = adapter;
    this.request = request;
    this.caller = caller;
    this.method = method;
    this.authority = authority;
    this.path = path;
    this.protocol = protocol;
    this.client = client;
    this.clientPort = clientPort;
    this.grpc = grpc;
    this.headers = headers;
  }

  /** Where the app is: the pod's own IP, the port the caller asked for. */
  get app(): { readonly ip: string; readonly port: number; readonly meshed: false } {
    return this.pipeline.app(this.caller.port);
  }
}

export class InboundPipeline {
  readonly deps: InboundPipelineDeps;
  /** The app's address per port, one object each (the pools key their connections by it). */
  readonly #apps = new Map<number, { readonly ip: string; readonly port: number; readonly meshed: false }>();

  constructor(deps: InboundPipelineDeps) {
    this.deps = deps;
  }

  /** Where the app is for a request to `port`: the pod's own IP (one object per port). */
  app(port: number): { readonly ip: string; readonly port: number; readonly meshed: false } {
    let app = this.#apps.get(port);
    if (app === undefined) this.#apps.set(port, (app = { ip: this.deps.podIP, port, meshed: false }));
    return app;
  }

  handle(call: InboundCall): void {
    const { deps } = this;
    const { caller, headers } = call;
    // admission
    const refused = admission(call, deps.limits, deps.tracker.full);
    deps.tracker.begin();
    // authorize (live)
    const decision = deps.allow().check(caller.peer);
    // identity: only this sidecar may say who the caller is
    delete headers[XFCC_HEADER];
    const own = deps.ownSpiffeId();
    const xfcc = own ? xfccValue(own, caller.peer) : undefined;
    if (xfcc) headers[XFCC_HEADER] = xfcc;
    setForwarded(headers, call.client, 'http', call.authority);
    // trace
    const span = (call.span = deps.tracing.server(call.adapter.spanRequest(call), { address: call.client, port: call.clientPort, identity: caller.peer ?? undefined }));
    if (refused) return this.refuse(call, refused);
    if (!decision.allowed) {
      deps.log.warn({ code: 'TSMESH_FORBIDDEN', peer: caller.peer, client: call.client, reason: decision.reason }, 'request refused by the allow-list');
      return this.refuse(call, new ProxyError('FORBIDDEN', decision.reason));
    }
    span.inject(headers);
    call.adapter.forward(call);
  }

  refuse(call: InboundCall, err: ProxyError): void {
    this.finish(call, { status: call.adapter.refuse(call, err), error: err, bytesIn: 0, bytesOut: 0 });
  }

  /** Observe: the span's end, metrics, the access line. Once per request, whatever its protocol and end. */
  finish(call: InboundCall, e: InboundResult): void {
    const { deps } = this;
    deps.tracker.end();
    const span = call.span!;
    span.end(e);
    const o = deps.observed(call.client, call.caller);
    o.series.record(e.status, (performance.now() - call.start) / 1000);
    const grpcStatus = call.grpc ? call.adapter.grpcStatus(call) : undefined;
    if (call.grpc) deps.grpcMetrics.record(o.peers, grpcStatus);
    logHttp(deps.log, {
      direction: 'inbound',
      method: call.method,
      authority: call.authority,
      path: call.path,
      protocol: call.protocol,
      status: e.status,
      duration_ms: Math.round((performance.now() - call.start) * 1000) / 1000,
      upstream: o.upstream,
      upstream_service: undefined,
      upstream_pod: undefined,
      bytes_in: e.bytesIn,
      bytes_out: e.bytesOut,
      client: call.client,
      peer: call.caller.peer,
      error: e.error?.reason,
      attempts: undefined,
      upstream_ms: undefined,
      grpc_status: grpcStatus,
      route_parent: undefined,
      route: undefined,
      trace_id: span.sampled ? span.context.traceId : undefined,
      span_id: span.sampled ? span.context.spanId : undefined,
    });
  }
}
