// The outbound pipeline, once for every protocol: an HTTP/1.1 request, an HTTP/2 stream (a
// gRPC call) and a WebSocket (any Upgrade) request go through the same stages, in this order:
//   admission   TSMESH_MAX_REQUESTS (503 overloaded), a declared body over
//               TSMESH_MAX_REQUEST_BODY (413), what the protocol itself refuses (a malformed
//               grpc-timeout); the request counts as in flight from here to its end
//   trace       a CLIENT span (continuing the app's trace)
//   route       the connection's destination, or (explicit mode) the authority: Host /
//               :authority, or the absolute-form URL of an HTTP_PROXY client (unknown: 503
//               no-healthy-endpoints); then the Service's mesh routes (HTTPRoute, GRPCRoute:
//               ./route-step.ts) choose the backend Service, filter, redirect, 404 or 500
//   policy      defaults <- this pod's annotations <- the destination Service's annotations,
//               a route's timeouts over them
//   exchange    the protocol's: deadline -> retries -> balancing -> breaker -> transport
//               (./exchange.ts) for HTTP, one endpoint for an Upgrade; its context sent upstream
//   observe     metrics (and gRPC statuses, route counters), the access line, the span's end
// What differs per protocol (how a request is read, refused, redirected, rewritten and sent)
// is its adapter (./adapters.ts); what a stage decides is written here once, so a limit, a
// metric or a header rule holds on every path. A request's state is one OutboundCall: the
// stages are its methods, not closures made per request.
import { ProxyError } from '../errors/errors.ts';
import { admission } from '../http/limits.ts';
import { logHttp, type RequestLine } from '../log/access.ts';
import { workloadName } from '../metrics/workload.ts';
import type { MeshMetrics, Peers, RequestSeries } from '../metrics/mesh-metrics.ts';
import type { GrpcMetrics } from '../h2/grpc-metrics.ts';
import { grpcStatusLabel } from '../h2/grpc.ts';
import { classifyGrpc } from '../classify/classify.ts';
import { routeKey, type RouteRef } from '../route/model.ts';
import type { RouteMetrics } from '../route/metrics.ts';
import type { Forward, RequestHead } from '../route/table.ts';
import type { HeaderModifier } from '../route/model.ts';
import type { Registry } from '../registry/registry.ts';
import type { ServiceTarget } from '../registry/view.ts';
import type { Endpoint, Service } from '../registry/model.ts';
import type { LiveConfig } from '../config/live.ts';
import type { Policy } from '../config/annotations.ts';
import type { Limits } from '../config/settings.ts';
import type { Tracker } from '../lifecycle/tracker.ts';
import type { Logger } from '../log/log.ts';
import type { ClientSpan, HttpRequestInfo, Tracing } from '../tracing/index.ts';
import { routeStep, type RouteStep } from './route-step.ts';
import type { Destination, ExchangeResult } from './exchange.ts';

/** Where a redirected connection was going, as the registry knows it. */
export type ConnectionTarget =
  | { kind: 'service'; target: ServiceTarget }
  | { kind: 'pod'; endpoint: Endpoint }
  | { kind: 'passthrough'; address: string; port: number };

/** What differs per protocol: how a request is refused, redirected, rewritten and sent. One per protocol, shared by its requests. */
export interface OutboundAdapter<Q> {
  /** What the span reads of the request. */
  spanRequest(call: OutboundCall<Q>): HttpRequestInfo;
  /** Sends the proxy's error to the client; the status the client saw (0: none). */
  refuse(call: OutboundCall<Q>, err: ProxyError): number;
  /** Answers a route's RequestRedirect. */
  redirect(call: OutboundCall<Q>, status: number, location: string, responseHeaders: readonly HeaderModifier[]): void;
  /** The request's head as the route step reads it. */
  routeHead(call: OutboundCall<Q>): RequestHead;
  /** Applies a route's request filters (headers, URLRewrite). */
  rewrite(call: OutboundCall<Q>, forward: Forward): void;
  /** Sends the request on (its trace context is in `call.headers` already); `call.done` once it ends. */
  forward(call: OutboundCall<Q>, forward: Forward | undefined): void;
  /** A gRPC call's status as the client saw it (undefined until known, and for other requests). */
  grpcStatus(call: OutboundCall<Q>): number | undefined;
}

export interface OutboundPipelineDeps {
  readonly namespace: string;
  readonly config: LiveConfig;
  readonly registry: Registry;
  readonly limits: Limits;
  readonly tracker: Tracker;
  readonly tracing: Tracing;
  readonly metrics: MeshMetrics;
  readonly grpcMetrics: GrpcMetrics;
  readonly routeMetrics: RouteMetrics;
  readonly self: { readonly workload: string; readonly namespace: string };
  readonly mtls: boolean;
  readonly log: Logger;
  readonly random: () => number;
}

/**
 * One request (of any protocol) through the outbound pipeline: its line for the log, where it
 * goes, and, for the exchange, the destination (it is one: name, endpoints, policy).
 */
export class OutboundCall<Q = unknown> implements RequestLine, Destination {
  readonly pipeline: OutboundPipeline;
  readonly adapter: OutboundAdapter<Q>;
  /** The protocol's request (a ServerRequest, a ProxiedStream, an Upgrade). */
  readonly request: Q;
  /** The connection's destination (undefined in explicit mode). */
  readonly conn: ConnectionTarget | undefined;
  readonly start: number;
  // the access line
  readonly method: string;
  readonly authority: string;
  readonly path: string;
  readonly protocol: string;
  readonly client: string | undefined;
  /** A gRPC call (its status is recorded). */
  readonly grpc: boolean;
  /** The request's header fields, as they will be sent upstream (the trace context goes in them). */
  readonly headers: Record<string, string | string[] | number | undefined>;
  /** The call's own deadline in ms (gRPC's grpc-timeout), if it has one. */
  readonly ownTimeoutMs: number | undefined;
  span: ClientSpan | undefined = undefined;
  // where it goes: a Service port (a route's backend when one applied), or one pod (`endpoint`)
  target: ServiceTarget | undefined = undefined;
  endpoint: Endpoint | undefined = undefined;
  /** The Service port the app called, when a mesh route sent the request elsewhere (or answered it). */
  parent: ServiceTarget | undefined = undefined;
  route: RouteRef | undefined = undefined;
  // the exchange's Destination
  name = '';
  policy: Policy;
  /** The exchange's end: the request's observation. */
  readonly done = (e: ExchangeResult): void => this.pipeline.finish(this, e);

  // positional, not an options object: one allocation per request, the call itself
  constructor(
    pipeline: OutboundPipeline,
    adapter: OutboundAdapter<Q>,
    request: Q,
    conn: ConnectionTarget | undefined,
    method: string,
    authority: string,
    path: string,
    protocol: string,
    client: string | undefined,
    grpc: boolean,
    headers: OutboundCall['headers'],
    ownTimeoutMs: number | undefined,
  ) {
    this.start = performance.now();
    this.pipeline = pipeline;
    this.adapter = adapter;
    this.request = request;
    this.conn = conn;
    this.method = method;
    this.authority = authority;
    this.path = path;
    this.protocol = protocol;
    this.client = client;
    this.grpc = grpc;
    this.headers = headers;
    this.ownTimeoutMs = ownTimeoutMs;
    this.policy = pipeline.config.policy;
  }

  /** The endpoints to choose from, read at each attempt (the registry may change). */
  endpoints(): readonly Endpoint[] {
    return this.target ? this.pipeline.registry.view.endpoints(this.target) : this.endpoint ? [this.endpoint] : [];
  }
}

export class OutboundPipeline {
  readonly config: LiveConfig;
  readonly registry: Registry;
  readonly deps: OutboundPipelineDeps;

  constructor(deps: OutboundPipelineDeps) {
    this.deps = deps;
    this.config = deps.config;
    this.registry = deps.registry;
  }

  /** Runs a request through the stages; `invalid`: what its protocol refuses of it. */
  handle(call: OutboundCall, invalid?: ProxyError): void {
    const { tracker } = this.deps;
    // admission: the limits, the same on every path
    const refused = admission(call, this.deps.limits, tracker.full) ?? invalid;
    tracker.begin();
    // trace
    call.span = this.deps.tracing.client(call.adapter.spanRequest(call));
    if (refused) return this.refuse(call, refused);
    this.route(call);
  }

  /**
   * Route: by the connection's destination, else by the authority. The registry may load a
   * service on first use (discovery): on a miss this waits for it, at most 1 s; a hit stays
   * synchronous.
   */
  route(call: OutboundCall): void {
    const conn = call.conn;
    if (conn?.kind === 'pod') {
      call.endpoint = conn.endpoint;
      return this.forward(call, undefined);
    }
    const known = conn?.kind === 'service' ? conn.target : this.registry.view.byAuthority(call.authority, this.deps.namespace);
    if (known) return this.routed(call, known);
    this.registry.ensureAuthority(call.authority, this.deps.namespace).then(
      (target) => this.routed(call, target),
      () => this.routed(call, undefined),
    );
  }

  routed(call: OutboundCall, target: ServiceTarget | undefined): void {
    if (!target) return this.refuse(call, new ProxyError('NO_HEALTHY_ENDPOINTS', `no service in the registry for authority "${call.authority}"`));
    call.target = target;
    // no route applies (the common case): no request head built, no step
    if (!this.registry.view.routeTable(target, this.deps.namespace)) return this.forward(call, undefined);
    routeStep(this.registry, this.deps.namespace, this.deps.random, target, call.adapter.routeHead(call), (step) => this.stepped(call, step));
  }

  /** The mesh routes' decision: a backend, a redirect, or an error. */
  stepped(call: OutboundCall, step: RouteStep): void {
    call.parent = step.parent;
    call.route = step.route;
    if (step.type === 'service') {
      call.target = step.target;
      return this.forward(call, step.forward);
    }
    call.target = undefined;
    if (step.type === 'error') return this.refuse(call, step.error);
    call.adapter.redirect(call, step.status, step.location, step.responseHeaders);
    this.finish(call, { status: step.status, bytesIn: 0, bytesOut: 0, error: undefined, upstreamMs: undefined, endpoint: undefined, attempts: 0 });
  }

  /** Policy, the route's filters, the trace context; then the protocol's exchange. */
  forward(call: OutboundCall, forward: Forward | undefined): void {
    const target = call.target;
    if (target) {
      call.name = nameOf(target.service);
      let policy = this.config.policyFor(target.service);
      // a route's timeouts replace the backend's `timeout` (request) and `per-try-timeout` (backendRequest)
      if (forward?.requestTimeoutMs != null) policy = { ...policy, timeout: forward.requestTimeoutMs };
      if (forward?.backendTimeoutMs !== undefined) policy = { ...policy, 'per-try-timeout': forward.backendTimeoutMs };
      call.policy = policy;
    } else call.name = call.endpoint!.ip;
    const span = call.span!;
    span.setDestination(call.name, call.parent ? { parent: nameOf(call.parent.service), route: call.route ? routeKey(call.route) : undefined } : undefined);
    if (forward) call.adapter.rewrite(call, forward);
    span.inject(call.headers);
    call.adapter.forward(call, forward);
  }

  /** The proxy's error as the answer, observed as any other. */
  refuse(call: OutboundCall, err: ProxyError): void {
    const status = call.adapter.refuse(call, err);
    this.finish(call, { status, bytesIn: 0, bytesOut: 0, error: err, upstreamMs: undefined, endpoint: undefined, attempts: 0 });
  }

  /** Who the metrics say called whom. */
  peersOf(service: string | undefined, ep: Endpoint | undefined): Peers {
    return {
      direction: 'outbound' as const,
      sourceWorkload: this.deps.self.workload,
      sourceNamespace: this.deps.self.namespace,
      destinationWorkload: ep ? workloadName(ep.pod.name, ep.pod.labels) : undefined,
      destinationNamespace: ep?.pod.namespace,
      destinationService: service,
      mtls: this.deps.mtls && ep?.pod.meshed === true,
    };
  }

  // What a finished request is observed with, resolved once per endpoint and destination
  // Service (and kept with those objects: gone when the registry drops them), so that a
  // request builds no peers, name or label key: the Service's "name.namespace" and its series.
  readonly #byEndpoint = new WeakMap<Endpoint, Observed>();
  readonly #byService = new WeakMap<Service, Observed>();
  #unrouted: Observed | undefined;
  observed(service: Service | undefined, ep: Endpoint | undefined): Observed {
    let o = ep ? this.#byEndpoint.get(ep) : service ? this.#byService.get(service) : this.#unrouted;
    if (o === undefined || o.service !== service) {
      const name = service ? nameOf(service) : undefined;
      const peers = this.peersOf(name, ep);
      o = { service, name, peers, series: this.deps.metrics.series(peers) };
      if (ep) this.#byEndpoint.set(ep, o);
      else if (service) this.#byService.set(service, o);
      else this.#unrouted = o;
    }
    return o;
  }

  /** Observe: the span's end, metrics, the access line. Once per request, whatever its protocol and end. */
  finish(call: OutboundCall, e: ExchangeResult): void {
    const { deps } = this;
    deps.tracker.end();
    const seconds = (performance.now() - call.start) / 1000;
    const grpcStatus = call.grpc ? call.adapter.grpcStatus(call) : undefined;
    const span = call.span!;
    span.end(grpcOutcome(e, grpcStatus));
    const o = this.observed(call.target?.service, e.endpoint);
    const service = o.name;
    o.series.record(e.status, seconds);
    const parent = call.parent ? nameOf(call.parent.service) : undefined;
    if (parent) deps.routeMetrics.record(parent, call.route, service, e.status);
    if (call.grpc) deps.grpcMetrics.record(o.peers, grpcStatus);
    logHttp(deps.log, {
      direction: 'outbound',
      method: call.method,
      authority: call.authority,
      path: call.path,
      protocol: call.protocol,
      status: e.status,
      duration_ms: round(performance.now() - call.start),
      upstream: e.endpoint?.key,
      upstream_service: service,
      upstream_pod: e.endpoint?.pod.name,
      bytes_in: e.bytesIn,
      bytes_out: e.bytesOut,
      client: call.client,
      peer: undefined,
      error: e.error?.reason,
      attempts: e.attempts,
      upstream_ms: e.upstreamMs === undefined ? undefined : round(e.upstreamMs),
      grpc_status: grpcStatus,
      route_parent: parent,
      route: parent ? (call.route ? routeKey(call.route) : null) : undefined,
      trace_id: span.sampled ? span.context.traceId : undefined,
      span_id: span.sampled ? span.context.spanId : undefined,
    });
  }
}

/** How a finished request is observed: its destination Service (name as metrics write it) and series. */
interface Observed {
  readonly service: Service | undefined;
  readonly name: string | undefined;
  readonly peers: Peers;
  readonly series: RequestSeries;
}

const serviceNames = new WeakMap<Service, string>();
/** "name.namespace", made once per Service object. */
export function nameOf(service: Service): string {
  let name = serviceNames.get(service);
  if (name === undefined) serviceNames.set(service, (name = `${service.name}.${service.namespace}`));
  return name;
}

/** The span's outcome: a gRPC call that failed on the server side is an error with its status name. */
function grpcOutcome(e: ExchangeResult, grpcStatus: number | undefined): { status: number; error?: { reason: string; message: string } | undefined } {
  if (e.error || grpcStatus === undefined || grpcStatus === 0) return e;
  const c = classifyGrpc(grpcStatus);
  return c.failure ? { status: e.status, error: { reason: grpcStatusLabel(grpcStatus), message: `grpc-status ${grpcStatus}` } } : e;
}

const round = (ms: number) => Math.round(ms * 1000) / 1000;
