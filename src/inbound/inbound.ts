// The inbound pipeline (listener 15006): calls to this pod's app. Per connection:
//   caller       a peer sidecar connects directly: mTLS (strict: required; the peer's SPIFFE
//                ID from its verified certificate), then the mesh preamble names the app port
//                and the protocol; a caller without a sidecar arrives redirected by iptables:
//                its original destination port is the app port (refused in strict mode)
//   protocol     opaque (the preamble says so, or an opaque port) is piped as TCP; HTTP/2 (the
//                preamble says "h2" and the TLS ALPN agrees, or a redirected connection starts
//                with the HTTP/2 preface) goes to the HTTP/2 server; the rest is HTTP/1.1 when
//                its first bytes are, else TCP
//   authorize    the pod's `allow` list: TCP closed / HTTP 403 forbidden (gRPC: PERMISSION_DENIED)
// and per HTTP request or HTTP/2 stream:
//   forward      to the app at the pod's own IP (not 127.0.0.1: an app that listens only on
//                localhost chose not to be reachable from other pods) and the target port, in
//                the protocol the caller spoke (HTTP/2 as h2c with prior knowledge)
//   trace        a SERVER span continuing the caller's CLIENT span, its context sent to the app
//   observe      x-forwarded-*, x-forwarded-client-cert, metrics, access log
import type { IncomingMessage } from 'node:http';
import { connect, type Socket } from 'node:net';
import type { TLSSocket, Server as TlsServer } from 'node:tls';
import { readPreamble } from '../mesh/preamble.ts';
import { detectProtocol, type Protocol } from '../detect/detect.ts';
import { setForwarded } from '../http/headers.ts';
import { pipeSockets } from '../tcp/pipe.ts';
import { httpProtocol, logHttp, logTcp, type RequestLine } from '../log/access.ts';
import type { IncomingHttpHeaders as H2Headers } from 'node:http2';
import { createH2Listener, type H2Listener } from '../h2/server.ts';
import { ProxiedStream } from '../h2/forward.ts';
import { forwardStreamOnce } from '../h2/transport.ts';
import { requestHeaders } from '../h2/headers.ts';
import { isGrpc } from '../h2/grpc.ts';
import type { GrpcMetrics } from '../h2/grpc-metrics.ts';
import type { H2Pools } from '../upstream/h2-pool.ts';
import { targetUrl, type Forwarder } from '../http/forward.ts';
import { Http1Server, type ServerRequest } from '../http1/server.ts';
import { ForwardOnce, type ForwardResult } from '../http1/transport.ts';
import type { Http1Pools } from '../http1/client.ts';
import { ProxyError } from '../errors/errors.ts';
import { endWithProxyError } from '../errors/response.ts';
import { compileAllowList, handOver, xfccValue, XFCC_HEADER, type AllowList } from '../mtls/index.ts';
import type { ConnectionPools } from '../upstream/pool.ts';
import type { LiveConfig } from '../config/live.ts';
import { serviceOpaquePorts, type MtlsMode } from '../config/annotations.ts';
import type { Logger } from '../log/log.ts';
import type { Tracker } from '../lifecycle/tracker.ts';
import type { Limits } from '../config/settings.ts';
import { admission, declaredBodyTooLarge } from '../http/limits.ts';
import type { Tracing, ServerSpan } from '../tracing/index.ts';
import type { MeshMetrics, Peers, RequestSeries } from '../metrics/mesh-metrics.ts';
import { workloadName } from '../metrics/workload.ts';
import type { Registry } from '../registry/registry.ts';

export interface InboundTls {
  readonly ownSpiffeId: string;
  readonly strict: TlsServer;
  readonly permissive: TlsServer;
}

export interface InboundDeps {
  readonly podIP: string;
  readonly trustDomain: string;
  readonly config: LiveConfig;
  /** node:http agents: WebSocket upgrades (http-proxy). */
  readonly pools: ConnectionPools;
  /** HTTP/1.1 keep-alive pools to the app (the raw-socket path). */
  readonly http1: Http1Pools;
  /** HTTP/2 sessions to the app (h2c), for HTTP/2 callers. */
  readonly h2: H2Pools;
  readonly forwarder: Forwarder;
  readonly tracker: Tracker;
  readonly log: Logger;
  readonly preambleTimeoutMs: number;
  readonly detectTimeoutMs: number;
  /** The original destination port of a redirected connection (interception); undefined when not redirected. */
  readonly originalPort: (socket: Socket) => number | undefined;
  /** Whether the mesh has identities (mTLS); false in local mode without certificates. */
  readonly mtls: boolean;
  /** The TLS servers, once this sidecar has a certificate. */
  readonly tls: () => InboundTls | undefined;
  readonly limits: Limits;
  readonly tracing: Tracing;
  readonly metrics: MeshMetrics;
  readonly grpcMetrics: GrpcMetrics;
  /** The registry: who the caller is (by IP), which service this pod serves on a port. */
  readonly registry: Registry;
  /** This pod, as metrics name it, with its labels (to find the services that select it). */
  readonly self: { readonly name: string; readonly workload: string; readonly namespace: string; readonly labels: Readonly<Record<string, string>> };
}

export interface Caller {
  /** The peer's verified SPIFFE ID; null for a plaintext or unauthenticated caller. */
  readonly peer: string | null;
  readonly port: number;
}

/** How a caller's requests are observed (./inbound.ts `observed`). */
interface Observed {
  readonly version: number;
  readonly remote: string | undefined;
  readonly peers: Peers;
  readonly series: RequestSeries;
  /** The app's address, as the access line writes it. */
  readonly upstream: string;
}

export interface Inbound {
  /** The HTTP/1.1 side (connections are handed to it; it listens nowhere). */
  readonly server: Http1Server<Caller>;
  /** The HTTP/2 side: streams from peer sidecars (and h2c callers without a sidecar, where allowed). */
  readonly h2: H2Listener<Caller>;
  handleConnection(socket: Socket): void;
  /** A connection that completed the mTLS handshake (from InboundTls's servers). */
  handleSecure(socket: TLSSocket, peer: string | null): void;
}

export function createInbound(deps: InboundDeps): Inbound {
  const { podIP, config, pools, forwarder, tracker, log } = deps;

  // The allow-list, compiled once per annotation change.
  let allow: AllowList = compileAllowList(config.pod.allow, deps.trustDomain);
  config.on('change', () => (allow = compileAllowList(config.pod.allow, deps.trustDomain)));
  const mode = (): MtlsMode => (deps.mtls ? config.pod.mtls : 'disabled');

  // Metrics peers: the caller from the registry (by its pod IP), this pod as the destination,
  // and the service that selects this pod on the port (cached per registry version).
  let servicesVersion = -1;
  const portInfo = new Map<number, { service: string | undefined; opaque: boolean }>();
  const onPort = (port: number) => {
    const view = deps.registry.view;
    if (view.version !== servicesVersion) {
      servicesVersion = view.version;
      portInfo.clear();
    }
    let info = portInfo.get(port);
    if (!info) {
      const selecting = view.services.filter((s) => s.namespace === deps.self.namespace && s.ports.some((p) => p.targetPort === port) && Object.keys(s.selector).length > 0 && Object.entries(s.selector).every(([k, v]) => deps.self.labels[k] === v));
      const svc = selecting[0];
      // a Service that selects this pod may mark the port opaque (by its service port), as for its callers
      const opaque = selecting.some((s) => s.ports.some((p) => p.targetPort === port && serviceOpaquePorts(s).includes(p.port)));
      portInfo.set(port, (info = { service: svc ? `${svc.name}.${svc.namespace}` : undefined, opaque }));
    }
    return info;
  };
  const serviceOf = (port: number): string | undefined => onPort(port).service;
  /** The port is plain TCP by this pod's own declaration (its opaque-ports, or a Service's that selects it). */
  const declaredOpaque = (port: number): boolean => config.pod['opaque-ports'].includes(port) || onPort(port).opaque;

  const peersOf = (remote: string | undefined, caller: Caller): Peers => {
    const pod = remote ? deps.registry.view.podByIP(remote.startsWith('::ffff:') ? remote.slice(7) : remote) : undefined;
    return {
      direction: 'inbound' as const,
      sourceWorkload: pod ? workloadName(pod.name, pod.labels) : undefined,
      sourceNamespace: pod?.namespace,
      destinationWorkload: deps.self.workload,
      destinationNamespace: deps.self.namespace,
      destinationService: serviceOf(caller.port),
      mtls: caller.peer !== null,
    };
  };

  const refuse = (socket: Socket, code: string, reason: string, peer: string | null = null) => {
    log.warn({ code, client: socket.remoteAddress, peer, reason }, `inbound connection refused: ${reason}`);
    socket.destroy();
  };

  // What a finished request is observed with, resolved once per caller (a Caller is made per
  // connection) and again when the registry changes (who the caller is, which Service selects
  // this pod on the port): its peers, its series and the app's address. Kept with the Caller:
  // gone with the connection.
  const observedByCaller = new WeakMap<Caller, Observed>();
  const observed = (remote: string | undefined, caller: Caller): Observed => {
    const version = deps.registry.view.version;
    let o = observedByCaller.get(caller);
    if (o === undefined || o.version !== version || o.remote !== remote) {
      const peers = peersOf(remote, caller);
      o = { version, remote, peers, series: deps.metrics.series(peers), upstream: `${podIP}:${caller.port}` };
      observedByCaller.set(caller, o);
    }
    return o;
  };

  const finish = (line: RequestLine, start: number, caller: Caller, span: ServerSpan, grpc?: () => number | undefined) => (e: ForwardResult) => {
    tracker.end();
    span.end(e);
    const o = observed(line.client, caller);
    o.series.record(e.status, (performance.now() - start) / 1000);
    if (grpc) deps.grpcMetrics.record(o.peers, grpc());
    const upstream = o.upstream;
    const peer = caller.peer;
    logHttp(log, {
      direction: 'inbound',
      method: line.method,
      authority: line.authority,
      path: line.path,
      protocol: line.protocol,
      status: e.status,
      duration_ms: Math.round((performance.now() - start) * 1000) / 1000,
      upstream,
      upstream_service: undefined,
      upstream_pod: undefined,
      bytes_in: e.bytesIn,
      bytes_out: e.bytesOut,
      client: line.client,
      peer,
      error: e.error?.reason,
      attempts: undefined,
      upstream_ms: undefined,
      grpc_status: grpc ? grpc() : undefined,
      route_parent: undefined,
      route: undefined,
      trace_id: span.sampled ? span.context.traceId : undefined,
      span_id: span.sampled ? span.context.spanId : undefined,
    });
  };
  const lineOf = (req: ServerRequest<Caller>): RequestLine => ({ method: req.method, authority: typeof req.headers.host === 'string' ? req.headers.host : '', path: req.url, protocol: httpProtocol(req.httpVersion), client: req.socket.remoteAddress });

  /** Per request: authorization (live), then the identity headers for the app. */
  const admit = (req: ServerRequest<Caller>): { caller: Caller; denied: ProxyError | undefined } => {
    const caller = req.conn.context;
    const decision = allow.check(caller.peer);
    delete req.headers[XFCC_HEADER]; // only this sidecar may say who the caller is
    const tls = deps.tls();
    const xfcc = tls ? xfccValue(tls.ownSpiffeId, caller.peer) : undefined;
    if (xfcc) req.headers[XFCC_HEADER] = xfcc;
    setForwarded(req.headers, req.socket.remoteAddress, 'http');
    return { caller, denied: decision.allowed ? undefined : new ProxyError('FORBIDDEN', decision.reason) };
  };

  // One HTTP/1.1 request (src/http1/): admission, authorization, a SERVER span, the app.
  const request = (req: ServerRequest<Caller>) => {
    const start = performance.now();
    const refused = admission(req, deps.limits, tracker.full);
    const admitted = admit(req);
    const { caller } = admitted;
    const denied = refused ?? admitted.denied;
    const span = deps.tracing.server(req as unknown as IncomingMessage, { address: req.socket.remoteAddress, port: req.socket.remotePort, identity: caller.peer ?? undefined });
    tracker.begin();
    if (tracker.draining) req.closeAfter = true;
    if (denied) {
      if (!refused) log.warn({ code: 'TSMESH_FORBIDDEN', peer: caller.peer, client: req.socket.remoteAddress, reason: denied.message }, 'request refused by the allow-list');
      req.fail(denied);
      return finish(lineOf(req), start, caller, span)({ status: denied.status, error: denied, bytesIn: 0, bytesOut: 0 });
    }
    span.inject(req.headers);
    new ForwardOnce(req, deps.http1, { ip: podIP, port: caller.port, meshed: false }, finish(lineOf(req), start, caller, span));
  };
  // A WebSocket (any Upgrade) counts as a request in flight for as long as it is open.
  const upgrade = (sreq: ServerRequest<Caller>, socket: Socket, head: Buffer) => {
    const start = performance.now();
    const overloaded = tracker.full;
    const { caller, denied } = admit(sreq);
    const req = sreq as unknown as IncomingMessage; // what http-proxy reads of it: method, url, headers
    const span = deps.tracing.server(req, { address: req.socket.remoteAddress, identity: caller.peer ?? undefined });
    const done = finish(lineOf(sreq), start, caller, span);
    tracker.begin();
    const refused = overloaded ? new ProxyError('OVERLOADED', 'the sidecar has as many requests in flight as it takes (TSMESH_MAX_REQUESTS)') : denied;
    if (refused) {
      endWithProxyError(socket, refused);
      return done({ status: refused.status, error: refused, bytesIn: 0, bytesOut: 0 });
    }
    span.inject(req.headers);
    const dest = { ip: podIP, port: caller.port, meshed: false };
    forwarder.upgrade(req, socket, head, targetUrl(dest), pools.agentFor(dest), (r) => done({ status: r.status, error: r.error, bytesIn: socket.bytesRead, bytesOut: socket.bytesWritten }));
  };
  const server = new Http1Server<Caller>({ handler: { request, upgrade }, limits: deps.limits, log, direction: 'inbound' });

  const opaque = (client: Socket, caller: Caller) => {
    const decision = allow.check(caller.peer);
    if (!decision.allowed) return refuse(client, 'TSMESH_FORBIDDEN', decision.reason, caller.peer);
    if (tracker.full) return refuse(client, 'TSMESH_OVERLOADED', 'the sidecar has as many requests in flight as it takes (TSMESH_MAX_REQUESTS)', caller.peer);
    const start = performance.now();
    tracker.begin();
    deps.metrics.series(peersOf(client.remoteAddress, caller)).connection();
    const upstream = connect({ host: podIP, port: caller.port, noDelay: true });
    pipeSockets(client, upstream, (o) => {
      tracker.end();
      logTcp(log, {
        direction: 'inbound',
        client: client.remoteAddress,
        peer: caller.peer,
        upstream: `${podIP}:${caller.port}`,
        bytes_in: o.bytesIn,
        bytes_out: o.bytesOut,
        duration_ms: Math.round(performance.now() - start),
        error: o.error,
      });
    }, deps.limits.tcpIdleTimeoutMs);
  };

  // One HTTP/2 stream (a gRPC call) from a caller: authorization, identity headers, a SERVER
  // span, then the app over h2c.
  const h2 = createH2Listener<Caller>((stream, headers, caller) => {
    const start = performance.now();
    const grpc = isGrpc(headers);
    const proxied = new ProxiedStream(stream, grpc, deps.limits.maxRequestBodyBytes);
    const client = stream.session?.socket?.remoteAddress;
    const authority = String(headers[':authority'] ?? headers.host ?? '');
    const line: RequestLine = { method: String(headers[':method'] ?? ''), authority, path: String(headers[':path'] ?? ''), protocol: 'HTTP/2', client };
    const forward = requestHeaders(headers);
    const decision = allow.check(caller.peer);
    delete forward[XFCC_HEADER]; // only this sidecar may say who the caller is
    const tls = deps.tls();
    const xfcc = tls ? xfccValue(tls.ownSpiffeId, caller.peer) : undefined;
    if (xfcc) forward[XFCC_HEADER] = xfcc;
    const forwarded = forward as H2Headers & IncomingMessage['headers'];
    setForwarded(forwarded, client, 'http');
    if (authority) forward['x-forwarded-host'] ??= authority;
    const span = deps.tracing.server({ method: line.method, url: line.path, headers: { ...forwarded, host: authority }, httpVersion: '2' }, { address: client, port: stream.session?.socket?.remotePort, identity: caller.peer ?? undefined });
    const grpcStatus = grpc ? () => proxied.grpcStatus : undefined;
    const done = finish(line, start, caller, span, grpcStatus);
    const overloaded = tracker.full;
    tracker.begin();
    if (overloaded) {
      const err = new ProxyError('OVERLOADED', 'the sidecar has as many requests in flight as it takes (TSMESH_MAX_REQUESTS)');
      return done({ status: proxied.fail(err) ?? 0, error: err, bytesIn: 0, bytesOut: 0 });
    }
    const tooLarge = declaredBodyTooLarge(headers['content-length'], deps.limits.maxRequestBodyBytes);
    if (tooLarge) return done({ status: proxied.fail(tooLarge) ?? 0, error: tooLarge, bytesIn: 0, bytesOut: 0 });
    if (!decision.allowed) {
      const denied = new ProxyError('FORBIDDEN', decision.reason);
      log.warn({ code: 'TSMESH_FORBIDDEN', peer: caller.peer, client, reason: denied.message }, 'request refused by the allow-list');
      return done({ status: proxied.fail(denied) ?? 0, error: denied, bytesIn: 0, bytesOut: 0 });
    }
    span.inject(forward);
    forwardStreamOnce(proxied, forward, deps.h2.sessionFor({ ip: podIP, port: caller.port, meshed: false }), done);
  }, log, { idleTimeoutMs: deps.limits.idleTimeoutMs });

  const http = (socket: Socket, caller: Caller) => void server.accept(socket, caller);

  const detected = (socket: Socket, caller: Caller, protocol: Protocol) => (protocol === 'http1' ? http(socket, caller) : protocol === 'h2' ? h2.accept(socket, caller) : opaque(socket, caller));

  /** After the caller is known: the preamble (from a peer sidecar) names the port and protocol. */
  const fromPeer = (socket: Socket, peer: string | null) => {
    readPreamble(socket, deps.preambleTimeoutMs).then((r) => {
      if (!('port' in r)) return refuse(socket, 'TSMESH_INBOUND_NO_TARGET', 'error' in r ? r.error : 'no mesh preamble and not a redirected connection', peer);
      const caller = { peer, port: r.port };
      // with mTLS the ALPN said the same as the preamble: HTTP/2 is "h2", the rest "tsmesh/1"
      const alpn = (socket as TLSSocket).alpnProtocol;
      if (typeof alpn === 'string' && (alpn === 'h2') !== (r.protocol === 'h2')) return refuse(socket, 'TSMESH_INBOUND_PROTOCOL_MISMATCH', `the preamble says ${r.protocol} but TLS negotiated ALPN "${alpn}"`, peer);
      if (declaredOpaque(r.port)) return opaque(socket, caller);
      // The caller's side took these bytes for TCP, but this pod has not declared the port
      // opaque: they are looked at again here, so an HTTP request is one (authorization,
      // x-forwarded-client-cert) whatever the caller's side decided or was configured to do.
      if (r.protocol === 'tcp') return void detectProtocol(socket, { timeoutMs: deps.detectTimeoutMs }).then(({ protocol }) => detected(socket, caller, protocol));
      return r.protocol === 'h2' ? h2.accept(socket, caller) : http(socket, caller);
    }, () => socket.destroy());
  };

  return {
    server,
    h2,
    handleConnection(socket) {
      const acceptedAt = performance.now(); // detection's silence is counted from here
      socket.setNoDelay(true);
      socket.on('error', () => socket.destroy());
      const redirected = deps.originalPort(socket);
      if (redirected !== undefined) {
        // a caller without a sidecar, redirected here by iptables
        if (mode() === 'strict') return refuse(socket, 'TSMESH_MTLS_REQUIRED', `plaintext to port ${redirected} from a caller without a sidecar (mTLS is strict)`);
        const caller = { peer: null, port: redirected };
        if (declaredOpaque(redirected)) return opaque(socket, caller);
        void detectProtocol(socket, { timeoutMs: deps.detectTimeoutMs, acceptedAt }).then(({ protocol }) => detected(socket, caller, protocol));
        return;
      }
      // a peer sidecar: mTLS, or plaintext where the mode allows it
      void detectProtocol(socket, { timeoutMs: deps.preambleTimeoutMs, acceptedAt }).then(({ protocol }) => {
        if (protocol === 'tls') {
          const tls = deps.tls();
          if (!tls) return refuse(socket, 'TSMESH_NO_CERTIFICATE', 'this sidecar has no certificate yet');
          return handOver(mode() === 'strict' ? tls.strict : tls.permissive, socket);
        }
        if (mode() === 'strict') return refuse(socket, 'TSMESH_MTLS_REQUIRED', 'a plaintext mesh connection (mTLS is strict)');
        fromPeer(socket, null);
      });
    },
    handleSecure(socket, peer) {
      socket.on('error', () => socket.destroy());
      fromPeer(socket, peer);
    },
  };
}
