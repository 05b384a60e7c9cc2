// The inbound listener (15006): calls to this pod's app. Per connection:
//   caller       a peer sidecar connects directly: mTLS (strict: required; the peer's SPIFFE
//                ID from its verified certificate), then the mesh preamble names the app port
//                and the protocol; a caller without a sidecar arrives redirected by iptables:
//                its original destination port is the app port (refused in strict mode)
//   protocol     opaque (the preamble says so, or an opaque port) is piped as TCP; HTTP/2 (the
//                preamble says "h2" and the TLS ALPN agrees, or a redirected connection starts
//                with the HTTP/2 preface) goes to the HTTP/2 server; the rest is HTTP/1.1 when
//                its first bytes are, else TCP
//   authorize    opaque TCP: the pod's `allow` list (closed when not allowed)
// Per HTTP/1.1 request, HTTP/2 stream and WebSocket upgrade: one pipeline (./pipeline.ts:
// admission, authorization, identity headers, trace, forward to the app, observe), which each
// protocol enters through its adapter (./adapters.ts).
import { connect, type Socket } from 'node:net';
import type { TLSSocket, Server as TlsServer } from 'node:tls';
import { readPreamble } from '../mesh/preamble.ts';
import { detectProtocol, type Protocol } from '../detect/detect.ts';
import { pipeSockets } from '../tcp/pipe.ts';
import { logTcp } from '../log/access.ts';
import { createH2Listener, type H2Listener } from '../h2/server.ts';
import type { GrpcMetrics } from '../h2/grpc-metrics.ts';
import type { H2Pools } from '../upstream/h2-pool.ts';
import type { Forwarder } from '../http/forward.ts';
import { Http1Server } from '../http1/server.ts';
import type { Http1Pools } from '../http1/client.ts';
import { compileAllowList, handOver, type AllowList } from '../mtls/index.ts';
import type { ConnectionPools } from '../upstream/pool.ts';
import type { LiveConfig } from '../config/live.ts';
import { serviceOpaquePorts, type MtlsMode } from '../config/annotations.ts';
import type { Logger } from '../log/log.ts';
import type { Tracker } from '../lifecycle/tracker.ts';
import type { Limits } from '../config/settings.ts';
import type { Tracing } from '../tracing/index.ts';
import type { MeshMetrics, Peers } from '../metrics/mesh-metrics.ts';
import { workloadName } from '../metrics/workload.ts';
import type { Registry } from '../registry/registry.ts';
import { InboundPipeline, type Caller, type Observed } from './pipeline.ts';
import { H2Adapter, Http1Adapter, UpgradeAdapter } from './adapters.ts';

export type { Caller } from './pipeline.ts';

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
  const { podIP, config, tracker, log } = deps;

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

  // The pipeline, and each protocol's way into it.
  const pipeline = new InboundPipeline({
    podIP,
    limits: deps.limits,
    tracker,
    tracing: deps.tracing,
    metrics: deps.metrics,
    grpcMetrics: deps.grpcMetrics,
    log,
    allow: () => allow,
    ownSpiffeId: () => deps.tls()?.ownSpiffeId,
    observed,
  });
  const upgrades = new UpgradeAdapter(pipeline, deps.forwarder, deps.pools);
  const server = new Http1Server<Caller>({ handler: { request: new Http1Adapter(pipeline, deps.http1).request, upgrade: upgrades.upgrade }, limits: deps.limits, log, direction: 'inbound' });
  const h2 = createH2Listener<Caller>(new H2Adapter(pipeline, deps.h2).stream, log, { idleTimeoutMs: deps.limits.idleTimeoutMs });

  const refuse = (socket: Socket, code: string, reason: string, peer: string | null = null) => {
    log.warn({ code, client: socket.remoteAddress, peer, reason }, `inbound connection refused: ${reason}`);
    socket.destroy();
  };

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
