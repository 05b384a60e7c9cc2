// The outbound pipeline (listener 15001): the app's connections to other services.
// Per connection:
//   destination  the original destination (iptables REDIRECT): a ClusterIP:port is a service
//                port, a pod IP a pod, anything else passes through unchanged as TCP; a
//                connection sent here on purpose (HTTP_PROXY, explicit mode) has none
//   protocol     opaque ports are TCP; else the first bytes decide: HTTP/1.x, the HTTP/2
//                preface (h2c with prior knowledge: gRPC), or TCP
// Per HTTP/1.1 request, and per HTTP/2 stream (each gRPC call on its own):
//   route       the connection's destination, or (explicit mode) the authority: Host /
//               :authority, or the absolute-form URL of an HTTP_PROXY client (unknown: 503
//               no-healthy-endpoints); then the Service's mesh routes (HTTPRoute, GRPCRoute:
//               ./route-step.ts) choose the backend Service, filter, redirect, 404 or 500
//   policy      defaults <- this pod's annotations <- the destination Service's annotations
//   trace       a CLIENT span (continuing the app's trace), its context sent upstream
//   exchange    deadline -> retries -> balancing -> breaker -> transport (./exchange.ts): a
//               pooled HTTP/1.1 connection, or a stream on the endpoint's shared HTTP/2
//               session; a child span per attempt
//   observe     metrics (and gRPC statuses), access log (with the trace and span ids)
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { detectProtocol } from '../detect/detect.ts';
import { pipeSockets } from '../tcp/pipe.ts';
import { logTcp, type RequestLine } from '../log/access.ts';
import { serviceOpaquePorts } from '../config/annotations.ts';
import type { OriginalDestination } from '../origdst/origdst.ts';
import { endpointDestination, type Dialer, type Destination } from '../upstream/dial.ts';
import type { LiveConfig } from '../config/live.ts';
import type { Pod, Service } from '../registry/model.ts';
import { ProxyError } from '../errors/errors.ts';
import { endWithProxyError } from '../errors/response.ts';
import { httpProtocol, logHttp } from '../log/access.ts';
import { runExchange, type ExchangeDeps, type ExchangeResult, type Destination as ExchangeDestination, type Deadlines } from './exchange.ts';
import { targetUrl } from '../http/forward.ts';
import { Http1Server, type ServerRequest } from '../http1/server.ts';
import { Http1Transport } from '../http1/transport.ts';
import type { IncomingHttpHeaders } from 'node:http2';
import { createH2Listener, type H2Listener } from '../h2/server.ts';
import { ProxiedStream } from '../h2/forward.ts';
import { h2Transport } from '../h2/transport.ts';
import { requestHeaders } from '../h2/headers.ts';
import { grpcStatusLabel, isGrpc, parseGrpcTimeout } from '../h2/grpc.ts';
import { classifyGrpc } from '../classify/classify.ts';
import type { GrpcMetrics } from '../h2/grpc-metrics.ts';
import { IDEMPOTENT } from '../retry/replay.ts';
import type { Registry } from '../registry/registry.ts';
import type { AddressMatch, ServiceTarget } from '../registry/view.ts';
import type { Endpoint } from '../registry/model.ts';
import type { Logger } from '../log/log.ts';
import type { Tracker } from '../lifecycle/tracker.ts';
import type { Limits } from '../config/settings.ts';
import { admission, declaredBodyTooLarge } from '../http/limits.ts';
import type { Tracing, ClientSpan } from '../tracing/index.ts';
import { workloadName } from '../metrics/workload.ts';
import type { MeshMetrics, Peers, RequestSeries } from '../metrics/mesh-metrics.ts';
import { http1Head, modifyH2Response, modifyHttp1Response, modifyingResponses, redirectLines, rewriteH2, rewriteHttp1, routeStep, type RouteStep } from './route-step.ts';
import { mirrorH2, mirrorHttp1, type MirrorTarget } from './mirror.ts';
import { modifyHeaders, type Forward, type RequestHead } from '../route/table.ts';
import { routeKey, type RouteRef } from '../route/model.ts';
import { RouteMetrics } from '../route/metrics.ts';

export interface OutboundDeps {
  readonly namespace: string;
  readonly config: LiveConfig;
  readonly registry: Registry;
  readonly dialer: Dialer;
  /** How long a silent new connection waits before it is treated as opaque TCP. */
  readonly detectTimeoutMs: number;
  /** The original destination of a redirected connection; undefined when sent here on purpose. */
  readonly originalDestination: (socket: Socket) => OriginalDestination | undefined;
  readonly exchange: ExchangeDeps;
  readonly tracker: Tracker;
  readonly log: Logger;
  readonly tracing: Tracing;
  readonly metrics: MeshMetrics;
  readonly grpcMetrics: GrpcMetrics;
  /** This pod, as metrics name it. */
  readonly self: { readonly workload: string; readonly namespace: string };
  /** The mesh hop to meshed endpoints is mTLS. */
  readonly mtls: boolean;
  readonly limits: Limits;
  /** 0 <= random() < 1: route weights and mirror shares (tests pass their own). */
  readonly random?: () => number;
}

interface Routed {
  authority: string;
  /** a service port (a route's backend when one applied); or undefined for a call to one pod (`endpoint`) */
  target: ServiceTarget | undefined;
  endpoint: Endpoint | undefined;
  /** The Service port the app called, when a mesh route sent the request elsewhere (or answered it). */
  parent?: ServiceTarget | undefined;
  route?: RouteRef | undefined;
}

export interface Outbound {
  /** The HTTP/1.1 side (connections are handed to it; it listens nowhere). */
  readonly server: Http1Server<ConnectionTarget | undefined>;
  /** The HTTP/2 side (h2c prior knowledge from the app). */
  readonly h2: H2Listener<ConnectionTarget | undefined>;
  handleConnection(socket: Socket): void;
}

/** Where a redirected connection was going, as the registry knows it. */
type ConnectionTarget =
  | { kind: 'service'; target: ServiceTarget }
  | { kind: 'pod'; endpoint: Endpoint }
  | { kind: 'passthrough'; address: string; port: number };

export function createOutbound(deps: OutboundDeps): Outbound {
  const { registry, tracker, log, config } = deps;
  const { forwarder, pools, balancer } = deps.exchange;
  const random = deps.random ?? Math.random;
  const routeMetrics = RouteMetrics.on(deps.metrics.registry);

  const pick = (target: ServiceTarget): Endpoint => {
    const endpoint = balancer.pick(registry.view.endpoints(target));
    if (!endpoint) throw new ProxyError('NO_HEALTHY_ENDPOINTS', `service ${target.service.name}.${target.service.namespace} has no ready endpoints`);
    return endpoint;
  };

  /**
   * Routes a request: by the connection's destination, else by its authority, then runs `go`
   * (or `fail` with the routing error). The registry may load a service on first use
   * (discovery): on a miss this waits for it, at most 1 s; a hit stays synchronous.
   */
  const withRoute = (authority: string, conn: ConnectionTarget | undefined, go: (r: Routed) => void, fail: (err: ProxyError) => void): void => {
    if (conn?.kind === 'pod') return go({ authority, target: undefined, endpoint: conn.endpoint });
    const routed = (target: ServiceTarget | undefined) => {
      if (target) go({ authority, target, endpoint: undefined });
      else fail(new ProxyError('NO_HEALTHY_ENDPOINTS', `no service in the registry for authority "${authority}"`));
    };
    const known = conn?.kind === 'service' ? conn.target : registry.view.byAuthority(authority, deps.namespace);
    if (known) return routed(known);
    registry.ensureAuthority(authority, deps.namespace).then(routed, () => routed(undefined));
  };

  /**
   * What the exchange needs to know of the destination: its endpoints and policy, live. A
   * route's timeouts replace the backend's `timeout` (request) and `per-try-timeout` (backendRequest).
   */
  const destination = (routed: Routed, forward?: Forward): ExchangeDestination => {
    if (routed.target) {
      const target = routed.target;
      let policy = config.policyFor(target.service);
      if (forward?.requestTimeoutMs != null) policy = { ...policy, timeout: forward.requestTimeoutMs };
      if (forward?.backendTimeoutMs !== undefined) policy = { ...policy, 'per-try-timeout': forward.backendTimeoutMs };
      return { name: nameOf(target.service), endpoints: () => registry.view.endpoints(target), policy };
    }
    const ep = routed.endpoint!;
    return { name: ep.ip, endpoints: () => [ep], policy: config.policy };
  };

  /** One endpoint of each mirror Service the registry has (one not loaded yet is skipped this time). */
  const mirrorTargets = (forward: Forward | undefined): MirrorTarget[] => {
    const out: MirrorTarget[] = [];
    for (const m of forward?.mirrors ?? []) {
      const target = registry.view.byAuthority(`${m.name}.${m.namespace}:${m.port}`, deps.namespace);
      const endpoint = target && balancer.pick(registry.view.endpoints(target));
      if (endpoint) out.push({ service: `${m.name}.${m.namespace}`, endpoint });
    }
    return out;
  };

  /** The route step for a request routed to a service port (a call to one pod has no routes). */
  const withRoutes = (routed: Routed, head: () => RequestHead, go: (routed: Routed, step: RouteStep | undefined) => void): void => {
    // no route applies (the common case): no request head built, no step, no copy of `routed`
    if (!routed.target || !registry.view.routeTable(routed.target, deps.namespace)) return go(routed, undefined);
    routeStep(registry, deps.namespace, random, routed.target, head(), (step) => {
      if (step.type === 'service') return go({ ...routed, target: step.target, parent: step.parent, route: step.route }, step);
      go({ ...routed, target: undefined, parent: step.parent, route: step.route }, step);
    });
  };

  const destinationOf = (orig: OriginalDestination, found: AddressMatch | undefined): ConnectionTarget => {
    if (found && 'target' in found) return { kind: 'service', target: found.target };
    if (found) return { kind: 'pod', endpoint: podEndpoint(found.pod, orig.port) };
    return { kind: 'passthrough', address: orig.address, port: orig.port };
  };

  const isOpaque = (dest: ConnectionTarget, port: number): boolean =>
    config.pod['opaque-ports'].includes(port) || (dest.kind === 'service' && serviceOpaquePorts(dest.target.service).includes(dest.target.port.port));

  // Opaque TCP to the connection's destination: a service's endpoint, a pod, or unchanged.
  const tcp = (client: Socket, dest: ConnectionTarget) => {
    const start = performance.now();
    if (tracker.full) {
      log.warn({ code: 'TSMESH_OVERLOADED', client: client.remoteAddress }, 'TCP connection refused: the sidecar has as many requests in flight as it takes (TSMESH_MAX_REQUESTS)');
      client.destroy();
      return;
    }
    let to: Destination;
    let service: string | undefined;
    let destPod: Pod | undefined;
    try {
      if (dest.kind === 'passthrough') to = { ip: dest.address, port: dest.port, meshed: false };
      else {
        const ep = dest.kind === 'service' ? pick(dest.target) : dest.endpoint;
        destPod = ep.pod;
        to = endpointDestination(ep);
        if (dest.kind === 'service') service = `${dest.target.service.name}.${dest.target.service.namespace}`;
      }
    } catch (err) {
      log.warn({ code: (err as ProxyError).reason, client: client.remoteAddress }, (err as Error).message);
      client.destroy();
      return;
    }
    tracker.begin();
    deps.metrics.series({ ...peersOf(service, undefined), destinationWorkload: destPod ? workloadName(destPod.name, destPod.labels) : undefined, destinationNamespace: destPod?.namespace, mtls: deps.mtls && to.meshed }).connection();
    const upstream = deps.dialer.dial(to, 'tcp');
    pipeSockets(client, upstream, (o) => {
      tracker.end();
      logTcp(log, {
        direction: 'outbound',
        client: client.remoteAddress,
        upstream: `${to.ip}:${to.port}`,
        upstream_service: service,
        bytes_in: o.bytesIn,
        bytes_out: o.bytesOut,
        duration_ms: Math.round(performance.now() - start),
        error: o.error,
      });
    }, deps.limits.tcpIdleTimeoutMs);
  };

  const peersOf = (service: string | undefined, ep: Endpoint | undefined): Peers => ({
    direction: 'outbound' as const,
    sourceWorkload: deps.self.workload,
    sourceNamespace: deps.self.namespace,
    destinationWorkload: ep ? workloadName(ep.pod.name, ep.pod.labels) : undefined,
    destinationNamespace: ep?.pod.namespace,
    destinationService: service,
    mtls: deps.mtls && ep?.pod.meshed === true,
  });

  // What a finished request is observed with, resolved once per endpoint and destination
  // Service (and kept with those objects: gone when the registry drops them), so that a
  // request builds no peers, name or label key: the Service's "name.namespace" and its series.
  const byEndpoint = new WeakMap<Endpoint, Observed>();
  const byService = new WeakMap<Service, Observed>();
  let unrouted: Observed | undefined;
  const observed = (service: Service | undefined, ep: Endpoint | undefined): Observed => {
    let o = ep ? byEndpoint.get(ep) : service ? byService.get(service) : unrouted;
    if (o === undefined || o.service !== service) {
      const name = service ? nameOf(service) : undefined;
      const peers = peersOf(name, ep);
      o = { service, name, peers, series: deps.metrics.series(peers) };
      if (ep) byEndpoint.set(ep, o);
      else if (service) byService.set(service, o);
      else unrouted = o;
    }
    return o;
  };

  const lineOf = (req: ServerRequest<ConnectionTarget | undefined> | IncomingMessage, authority: string): RequestLine => ({ method: req.method ?? '', authority, path: pathOf(req), protocol: httpProtocol(req.httpVersion), client: req.socket.remoteAddress });

  const finish = (line: RequestLine, start: number, routed: Partial<Routed>, span: ClientSpan, grpc?: () => number | undefined) => (e: ExchangeResult) => {
    tracker.end();
    const seconds = (performance.now() - start) / 1000;
    const grpcStatus = grpc?.();
    span.end(grpcOutcome(e, grpcStatus));
    const o = observed(routed.target?.service, e.endpoint);
    const service = o.name;
    o.series.record(e.status, seconds);
    const parent = routed.parent ? nameOf(routed.parent.service) : undefined;
    if (parent) routeMetrics.record(parent, routed.route, service, e.status);
    if (grpc) deps.grpcMetrics.record(o.peers, grpcStatus);
    logHttp(log, {
      direction: 'outbound',
      method: line.method,
      authority: line.authority,
      path: line.path,
      protocol: line.protocol,
      status: e.status,
      duration_ms: round(performance.now() - start),
      upstream: e.endpoint?.key,
      upstream_service: service,
      upstream_pod: e.endpoint?.pod.name,
      bytes_in: e.bytesIn,
      bytes_out: e.bytesOut,
      client: line.client,
      peer: undefined,
      error: e.error?.reason,
      attempts: e.attempts,
      upstream_ms: e.upstreamMs === undefined ? undefined : round(e.upstreamMs),
      grpc_status: grpcStatus,
      route_parent: parent,
      route: parent ? (routed.route ? routeKey(routed.route) : null) : undefined,
      trace_id: span.sampled ? span.context.traceId : undefined,
      span_id: span.sampled ? span.context.spanId : undefined,
    });
  };

  const fail = (req: ServerRequest<ConnectionTarget | undefined>, start: number, err: ProxyError, span: ClientSpan, routed: Partial<Routed> = {}) => {
    tracker.begin();
    req.fail(err);
    finish(lineOf(req, authorityOf(req) ?? ''), start, routed, span)({ status: err.status, bytesIn: 0, bytesOut: 0, error: err, upstreamMs: undefined, endpoint: undefined, attempts: 0 });
  };

  /** The parent and route for the span, when a route applied. */
  const routeOf = (routed: Routed) =>
    routed.parent ? { parent: nameOf(routed.parent.service), route: routed.route ? routeKey(routed.route) : undefined } : undefined;

  // One HTTP/2 stream (a gRPC call): the same pipeline as an HTTP/1.1 request.
  const h2 = createH2Listener<ConnectionTarget | undefined>((stream, headers, conn) => {
    const start = performance.now();
    const authority = String(headers[':authority'] ?? headers.host ?? '');
    const path = String(headers[':path'] ?? '/');
    const method = String(headers[':method'] ?? '');
    const grpc = isGrpc(headers);
    const proxied = new ProxiedStream(stream, grpc, deps.limits.maxRequestBodyBytes);
    const line: RequestLine = { method, authority, path, protocol: 'HTTP/2', client: stream.session?.socket?.remoteAddress };
    const forward = requestHeaders(headers);
    const span = deps.tracing.client({ method, url: `http://${authority}${path}`, headers: forward as IncomingHttpHeaders, httpVersion: '2' });
    const grpcStatus = grpc ? () => proxied.grpcStatus : undefined;
    const overloaded = tracker.full;
    tracker.begin();
    const refuse = (err: ProxyError, routed: Partial<Routed> = {}) => {
      const status = proxied.fail(err) ?? 0;
      finish(line, start, routed, span, grpcStatus)({ status, bytesIn: 0, bytesOut: 0, error: err, upstreamMs: undefined, endpoint: undefined, attempts: 0 });
    };
    if (overloaded) return refuse(new ProxyError('OVERLOADED', 'the sidecar has as many requests in flight as it takes (TSMESH_MAX_REQUESTS)'));
    const tooLarge = declaredBodyTooLarge(headers['content-length'], deps.limits.maxRequestBodyBytes);
    if (tooLarge) return refuse(tooLarge);
    const timeout = grpc ? parseGrpcTimeout(headers['grpc-timeout']) : undefined;
    if (timeout instanceof Error) return refuse(new ProxyError('BAD_REQUEST', timeout.message));
    const head = (): RequestHead => ({ method, path, authority, headers: forward as Record<string, string | string[] | undefined>, grpc });
    withRoute(authority, conn, (found) => withRoutes(found, head, (routed, step) => {
      if (step?.type === 'error') return refuse(step.error, routed);
      if (step?.type === 'redirect') {
        const response: Record<string, string | number> = { ':status': step.status, location: step.location };
        modifyHeaders(response, step.responseHeaders);
        proxied.client.respond(response, { endStream: true });
        return finish(line, start, routed, span, grpcStatus)({ status: step.status, bytesIn: 0, bytesOut: 0, error: undefined, upstreamMs: undefined, endpoint: undefined, attempts: 0 });
      }
      const routeForward = step?.forward;
      const dest = destination(routed, routeForward);
      span.setDestination(dest.name, routeOf(routed));
      if (routeForward) rewriteH2(forward as Record<string, string | string[] | number | undefined>, routeForward);
      span.inject(forward);
      const wantsRetry = forward['x-tsmesh-retry'] === 'true';
      delete forward['x-tsmesh-retry'];
      // gRPC: `timeout` bounds the wait for the response head; the call itself lives as long as
      // the app keeps it, up to its own grpc-timeout (docs/http2-grpc.md). A route's
      // `timeouts.request: 0s` turns the deadline off.
      const policyDeadline = routeForward?.requestTimeoutMs === null ? null : dest.policy.timeout;
      const deadlines: Deadlines = grpc ? { headMs: policyDeadline, totalMs: timeout ?? null } : { totalMs: policyDeadline, headMs: null };
      const mirrors = mirrorTargets(routeForward);
      if (mirrors.length) mirrorH2(mirrors, forward, proxied.client, deps.exchange.h2, log);
      const transport = modifyingResponses(
        h2Transport(proxied, {
          headers: forward,
          retryable: grpc || wantsRetry || IDEMPOTENT.has(method),
          deadlineAt: timeout === undefined ? undefined : start + timeout,
          session: (ep) => deps.exchange.h2.sessionFor(endpointDestination(ep)),
        }),
        routeForward?.responseHeaders ?? [],
        modifyH2Response,
      );
      runExchange(deps.exchange, transport, dest, span, finish(line, start, routed, span, grpcStatus), deadlines);
    }), refuse);
  }, log, { idleTimeoutMs: deps.limits.idleTimeoutMs });

  // One HTTP/1.1 request (src/http1/): the pipeline above, over the raw-socket core.
  const request = (req: ServerRequest<ConnectionTarget | undefined>) => {
    const start = performance.now();
    const span = deps.tracing.client(req as unknown as IncomingMessage);
    const refused = admission(req, deps.limits, tracker.full);
    if (refused) return fail(req, start, refused, span);
    const go = (routed: Routed, step: RouteStep | undefined) => {
      if (step?.type === 'error') return fail(req, start, step.error, span, routed);
      if (step?.type === 'redirect') {
        tracker.begin();
        if (!req.bodyDone) req.closeAfter = true; // its body is not read: the connection cannot go on
        req.writeHead(step.status, '', redirectLines(step.location, step.responseHeaders), 'length');
        req.end();
        return finish(lineOf(req, routed.authority), start, routed, span)({ status: step.status, bytesIn: 0, bytesOut: 0, error: undefined, upstreamMs: undefined, endpoint: undefined, attempts: 0 });
      }
      const routeForward = step?.forward;
      const dest = destination(routed, routeForward);
      span.setDestination(dest.name, routeOf(routed));
      if (routeForward) rewriteHttp1(req, routeForward);
      span.inject(req.headers);
      tracker.begin();
      if (tracker.draining) req.closeAfter = true;
      const transport = modifyingResponses(new Http1Transport(req, deps.exchange.http1, endpointDestination), routeForward?.responseHeaders ?? [], modifyHttp1Response);
      // after the transport has prepared the head (hop-by-hop removed), before the body flows
      const mirrors = mirrorTargets(routeForward);
      if (mirrors.length) mirrorHttp1(mirrors, req, deps.dialer, log);
      const deadlines: Deadlines | undefined = routeForward?.requestTimeoutMs === null ? { totalMs: null, headMs: null } : undefined;
      runExchange(deps.exchange, transport, dest, span, finish(lineOf(req, routed.authority), start, routed, span), deadlines);
    };
    const authority = authorityOf(req) ?? '';
    withRoute(authority, req.conn.context, (found) => withRoutes(found, () => http1Head(req, authority, pathOf(req)), go), (err) => fail(req, start, err, span));
  };

  // A WebSocket (any Upgrade) counts as a request in flight for as long as it is open.
  const upgrade = (sreq: ServerRequest<ConnectionTarget | undefined>, socket: Socket, head: Buffer) => {
    const req = sreq as unknown as IncomingMessage; // what http-proxy reads of it: method, url, headers
    const start = performance.now();
    const refuse = (e: ProxyError) => endWithProxyError(socket, e);
    withRoute(authorityOf(req) ?? '', sreq.conn.context, (routed) => {
      let endpoint: Endpoint;
      try {
        endpoint = routed.endpoint ?? pick(routed.target!);
      } catch (err) {
        return refuse(err as ProxyError);
      }
      const span = deps.tracing.client(req);
      const done = finish(lineOf(req, routed.authority), start, routed, span);
      const overloaded = tracker.full;
      tracker.begin();
      if (overloaded) {
        const err = new ProxyError('OVERLOADED', 'the sidecar has as many requests in flight as it takes (TSMESH_MAX_REQUESTS)');
        refuse(err);
        return done({ status: err.status, error: err, endpoint: undefined, attempts: 0, bytesIn: 0, bytesOut: 0, upstreamMs: undefined });
      }
      req.headers['x-tsmesh-attempt'] = '1';
      span.inject(req.headers);
      forwarder.upgrade(req, socket, head, targetUrl(endpoint), pools.agentFor(endpointDestination(endpoint)), (r) =>
        done({ status: r.status, error: r.error, endpoint, attempts: 1, bytesIn: socket.bytesRead, bytesOut: socket.bytesWritten, upstreamMs: undefined }),
      );
    }, refuse);
  };
  const server = new Http1Server<ConnectionTarget | undefined>({ handler: { request, upgrade }, limits: deps.limits, log, direction: 'outbound' });
  const http1 = (socket: Socket, dest: ConnectionTarget | undefined) => void server.accept(socket, dest);

  return {
    server,
    h2,
    handleConnection(socket) {
      const acceptedAt = performance.now(); // detection's silence is counted from here
      socket.on('error', () => socket.destroy());
      const orig = deps.originalDestination(socket);
      if (!orig) {
        // explicit mode: each request names the service (Host, :authority, absolute-form URL)
        void detectProtocol(socket, { timeoutMs: deps.detectTimeoutMs, acceptedAt }).then(({ protocol }) => (protocol === 'h2' ? h2.accept(socket, undefined) : http1(socket, undefined)));
        return;
      }
      const proceed = (found: AddressMatch | undefined) => {
        const dest = destinationOf(orig, found);
        if (dest.kind === 'passthrough' || isOpaque(dest, orig.port)) return tcp(socket, dest);
        void detectProtocol(socket, { timeoutMs: deps.detectTimeoutMs, acceptedAt }).then(({ protocol }) => {
          if (protocol === 'http1') return http1(socket, dest);
          if (protocol === 'h2') return h2.accept(socket, dest);
          return tcp(socket, dest);
        });
      };
      // a service discovery has not loaded yet is waited for (at most 1 s); unknown passes through
      const found = registry.view.byAddress(orig.address, orig.port);
      if (found) proceed(found);
      else registry.ensureAddress(orig.address, orig.port).then(proceed, () => proceed(undefined));
    },
  };
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
function nameOf(service: Service): string {
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

function authorityOf(req: { readonly url?: string | undefined; readonly headers: { host?: string | string[] | undefined } }): string | undefined {
  const url = req.url ?? '';
  if (url.startsWith('http://')) {
    const end = url.indexOf('/', 7);
    return url.slice(7, end === -1 ? undefined : end) || undefined;
  }
  const host = req.headers.host;
  return typeof host === 'string' ? host : undefined;
}

function pathOf(req: { readonly url?: string | undefined }): string {
  const url = req.url ?? '/';
  if (!url.startsWith('http://')) return url;
  const slash = url.indexOf('/', 7);
  return slash === -1 ? '/' : url.slice(slash);
}

function podEndpoint(pod: Pod, port: number): Endpoint {
  return { key: `${pod.ip}:${port}`, ip: pod.ip, port, pod };
}



const round = (ms: number) => Math.round(ms * 1000) / 1000;
