// The outbound listener (15001): the app's connections to other services.
// Per connection:
//   destination  the original destination (iptables REDIRECT): a ClusterIP:port is a service
//                port, a pod IP a pod, anything else passes through unchanged as TCP; a
//                connection sent here on purpose (HTTP_PROXY, explicit mode) has none
//   protocol     opaque ports are TCP; else the first bytes decide: HTTP/1.x, the HTTP/2
//                preface (h2c with prior knowledge: gRPC), or TCP
// Per HTTP/1.1 request, HTTP/2 stream (each gRPC call on its own) and WebSocket upgrade: one
// pipeline (./pipeline.ts: admission, trace, route, policy, exchange, observe), which each
// protocol enters through its adapter (./adapters.ts).
import type { Socket } from 'node:net';
import { detectProtocol } from '../detect/detect.ts';
import { pipeSockets } from '../tcp/pipe.ts';
import { logTcp } from '../log/access.ts';
import { serviceOpaquePorts } from '../config/annotations.ts';
import type { OriginalDestination } from '../origdst/origdst.ts';
import { endpointDestination, type Dialer, type Destination } from '../upstream/dial.ts';
import type { LiveConfig } from '../config/live.ts';
import type { Pod } from '../registry/model.ts';
import { ProxyError } from '../errors/errors.ts';
import type { ExchangeDeps } from './exchange.ts';
import { Http1Server } from '../http1/server.ts';
import { createH2Listener, type H2Listener } from '../h2/server.ts';
import type { GrpcMetrics } from '../h2/grpc-metrics.ts';
import type { Registry } from '../registry/registry.ts';
import type { AddressMatch, ServiceTarget } from '../registry/view.ts';
import type { Endpoint } from '../registry/model.ts';
import type { Logger } from '../log/log.ts';
import type { Tracker } from '../lifecycle/tracker.ts';
import type { Limits } from '../config/settings.ts';
import type { Tracing } from '../tracing/index.ts';
import { workloadName } from '../metrics/workload.ts';
import type { MeshMetrics } from '../metrics/mesh-metrics.ts';
import { RouteMetrics } from '../route/metrics.ts';
import { OutboundPipeline, type ConnectionTarget } from './pipeline.ts';
import { H2Adapter, Http1Adapter, UpgradeAdapter } from './adapters.ts';

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

export interface Outbound {
  /** The HTTP/1.1 side (connections are handed to it; it listens nowhere). */
  readonly server: Http1Server<ConnectionTarget | undefined>;
  /** The HTTP/2 side (h2c prior knowledge from the app). */
  readonly h2: H2Listener<ConnectionTarget | undefined>;
  handleConnection(socket: Socket): void;
}

export function createOutbound(deps: OutboundDeps): Outbound {
  const { registry, tracker, log, config } = deps;
  const { balancer } = deps.exchange;

  // The pipeline, and each protocol's way into it.
  const pipeline = new OutboundPipeline({ ...deps, routeMetrics: RouteMetrics.on(deps.metrics.registry), random: deps.random ?? Math.random });
  const adapterDeps = { pipeline, exchange: deps.exchange, dialer: deps.dialer, maxRequestBodyBytes: deps.limits.maxRequestBodyBytes, log };
  const http1Adapter = new Http1Adapter(adapterDeps);
  const upgradeAdapter = new UpgradeAdapter(adapterDeps);
  const h2Adapter = new H2Adapter(adapterDeps);
  const server = new Http1Server<ConnectionTarget | undefined>({ handler: { request: http1Adapter.request, upgrade: upgradeAdapter.upgrade }, limits: deps.limits, log, direction: 'outbound' });
  const h2 = createH2Listener<ConnectionTarget | undefined>(h2Adapter.stream, log, { idleTimeoutMs: deps.limits.idleTimeoutMs });
  const http1 = (socket: Socket, dest: ConnectionTarget | undefined) => void server.accept(socket, dest);

  const pick = (target: ServiceTarget): Endpoint => {
    const endpoint = balancer.pick(registry.view.endpoints(target));
    if (!endpoint) throw new ProxyError('NO_HEALTHY_ENDPOINTS', `service ${target.service.name}.${target.service.namespace} has no ready endpoints`);
    return endpoint;
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
    deps.metrics.series({ ...pipeline.peersOf(service, undefined), destinationWorkload: destPod ? workloadName(destPod.name, destPod.labels) : undefined, destinationNamespace: destPod?.namespace, mtls: deps.mtls && to.meshed }).connection();
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

function podEndpoint(pod: Pod, port: number): Endpoint {
  return { key: `${pod.ip}:${port}`, ip: pod.ip, port, pod };
}
