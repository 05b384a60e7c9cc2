// The sidecar, composed: the one place that constructs things and wires them together.
import { createServer as createNetServer, type Server as NetServer, type AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { readFile } from 'node:fs/promises';
import { Registry as Metrics } from 'prom-client';
import { MeshMetrics } from './metrics/mesh-metrics.ts';
import { workloadName } from './metrics/workload.ts';
import { createTracing, SpanRecorder } from './tracing/index.ts';
import { parsePodInfo } from './config/podinfo.ts';
import type { Settings } from './config/settings.ts';
import { LiveConfig } from './config/live.ts';
import { Registry } from './registry/registry.ts';
import type { DiscoveryClient, DiscoveryClientOptions } from './discovery/client.ts';
import { watchFile, type FileWatch } from './watch/watch.ts';
import { P2CBalancer } from './balance/p2c.ts';
import { HealthTable } from './breaker/endpoint-health.ts';
import { RetryBudget } from './retry/budget.ts';
import { meshDialer } from './upstream/dial.ts';
import { createIdentityProvider, type IdentityProvider } from './identity/index.ts';
import { createMeshTls, MESH_ALPN, type MeshTls } from './mtls/index.ts';
import type { InboundTls } from './inbound/inbound.ts';
import { ConnectionPools } from './upstream/pool.ts';
import { Http1Pools } from './http1/client.ts';
import { H2Pools } from './upstream/h2-pool.ts';
import { GrpcMetrics } from './h2/grpc-metrics.ts';
import { createForwarder } from './http/forward.ts';
import { createOutbound } from './outbound/outbound.ts';
import { createInbound } from './inbound/inbound.ts';
import { createAdmin } from './admin/admin.ts';
import { parseAppProbes, type AppProbe } from './admin/app-probes.ts';
import { Tracker } from './lifecycle/tracker.ts';
import { startMemoryTrim } from './lifecycle/trim.ts';
import { originalDestination, originalDestinationAvailable } from './origdst/origdst.ts';
import type { Logger } from './log/log.ts';
import type { ConfigError } from './errors/errors.ts';

export interface Sidecar {
  readonly outbound: AddressInfo;
  readonly inbound: AddressInfo;
  readonly admin: AddressInfo;
  readonly config: LiveConfig;
  readonly registry: Registry;
  /** Stops accepting, lets in-flight work finish up to the drain deadline, then closes everything. */
  drain(): Promise<void>;
  /** Closes everything now. */
  close(): Promise<void>;
}

export interface SidecarOptions {
  onQuit?: () => void;
  /**
   * The workload identity. Default: the files in TSMESH_TLS_DIR, else the control plane's CA;
   * none (a plaintext mesh) in local mode (TSMESH_REGISTRY) without TSMESH_TLS_DIR.
   */
  identity?: IdentityProvider | null;
  /** The environment the OTEL_* variables come from (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** Discovery client tuning (tests: name resolution of the control plane, backoff, idle time). */
  discovery?: Partial<Pick<DiscoveryClientOptions, 'lookup' | 'backoffInitialMs' | 'backoffMaxMs' | 'idleMs' | 'heartbeatTimeoutMs'>>;
  /** The random source of trace and span ids, and so of which new traces are sampled (tests: a seeded one). */
  random?: (into: Buffer) => void;
}

export async function startSidecar(settings: Settings, log: Logger, options: SidecarOptions = {}): Promise<Sidecar> {
  const config = new LiveConfig(log.child({ component: 'config' }));
  const registry = new Registry();
  const tracker = new Tracker(settings.limits.maxRequests);
  const metrics = new Metrics();
  const meshMetrics = new MeshMetrics(metrics);
  const grpcMetrics = new GrpcMetrics(metrics);
  const watches: FileWatch[] = [];

  // Configuration: the pod's annotations file, live.
  const annotations = watchFile(
    settings.annotationsFile,
    (text, err) => {
      if (text !== null) config.applyAnnotationsFile(text);
      else if (err?.code !== 'ENOENT') log.warn({ path: settings.annotationsFile, err: err?.message }, 'cannot read the annotations file; keeping the current settings');
    },
    { intervalMs: settings.watchIntervalMs },
  );
  watches.push(annotations);
  await annotations.check();
  // The log-level annotation, live; without it the level the logger was made with.
  const initialLevel = log.level;
  const applyLevel = () => {
    const level = config.annotations['tsmesh.io/log-level'] !== undefined ? config.pod['log-level'] : initialLevel;
    if (log.level !== level) log.level = level;
  };
  config.on('change', applyLevel);
  applyLevel();

  // Registry: the YAML file in local mode (TSMESH_REGISTRY wins); else the control plane's
  // discovery stream, started below once the identity exists (its certificate authenticates us).
  // Each source is loaded only when used: yaml for the file, ws for the stream (bench/NOTES.md, memory).
  if (settings.registryFile) {
    const { fileRegistrySource } = await import('./registry/file-source.ts');
    const source = fileRegistrySource(settings.registryFile, registry, log.child({ component: 'registry' }), { intervalMs: settings.watchIntervalMs });
    watches.push(source);
    await source.check();
  }

  // Identity and mTLS: the TLS contexts exist once the first certificate does; until then the
  // sidecar is not ready, meshed calls fail over, and inbound mTLS is refused.
  const identity =
    options.identity !== undefined
      ? options.identity
      : settings.registryFile && !settings.tlsDir
        ? null
        : createIdentityProvider(settings, { log: log.child({ component: 'identity' }), registry: metrics });
  if (!identity) log.warn({ code: 'TSMESH_MTLS_OFF' }, 'no workload identity (local mode without TSMESH_TLS_DIR): the mesh hop is plaintext');
  // Discovery: ready after its first snapshot (registry.loaded); the last good view stays while
  // the control plane is away.
  let discovery: DiscoveryClient | undefined;
  if (!settings.registryFile && identity) {
    const { startDiscoveryClient } = await import('./discovery/client.ts');
    discovery = startDiscoveryClient({
      url: settings.controlPlane,
      identity,
      registry,
      pod: { name: settings.podName, namespace: settings.podNamespace, ip: settings.podIP },
      log: log.child({ component: 'discovery' }),
      ...options.discovery,
    });
  } else if (!settings.registryFile) {
    log.warn({ code: 'TSMESH_NO_REGISTRY' }, 'no registry: discovery needs a workload identity (none was given); set TSMESH_REGISTRY to a registry file. Destinations known to no registry pass through');
    registry.replace({ services: [], pods: [] });
  }
  let mesh: MeshTls | undefined;
  let inboundTls: InboundTls | undefined;
  const dialer = meshDialer({
    inboundPort: settings.inboundPort,
    localAddress: isUnspecified(settings.bindAddress) ? undefined : settings.bindAddress,
    trustDomain: settings.trustDomain,
    mtls: identity !== null,
    mesh: () => mesh,
    onHandshakeError: (err) => meshMetrics.tlsHandshakeError('outbound', err.code),
  });
  const pools = new ConnectionPools(dialer); // node:http agents: WebSocket upgrades (http-proxy)
  const http1pools = new Http1Pools(dialer, { maxPerEndpoint: settings.limits.maxUpstreamConnections }); // HTTP/1.1: the raw-socket path's keep-alive pools
  const h2pools = new H2Pools(dialer); // HTTP/2 (gRPC): one multiplexed session per endpoint
  registry.on('change', (view) => {
    const keep = ({ ip }: { ip: string }) => ip === settings.podIP || view.podByIP(ip) !== undefined;
    pools.retain(keep);
    http1pools.retain(keep);
    h2pools.retain(keep);
  });
  // Observability: the pod's labels name its workload for metrics and traces.
  const labels = await readFile(settings.labelsFile, 'utf8').then(parsePodInfo, () => ({}) as Record<string, string>);
  const self = { name: settings.podName, namespace: settings.podNamespace, labels, workload: workloadName(settings.podName, labels) };
  const tracing = createTracing({
    pod: { podName: settings.podName, namespace: settings.podNamespace, labels, nodeName: process.env.NODE_NAME },
    sampling: () => config.pod['trace-sampling'],
    ...(options.random ? { random: options.random } : {}),
    env: options.env ?? process.env,
    registry: metrics,
    log: log.child({ component: 'tracing' }),
  });
  const recentSpans = new SpanRecorder(2000); // GET /debug/spans: the demo's waterfall
  tracing.onSpanEnd(recentSpans.listener);

  const forwarder = createForwarder();
  // Resilience state, per endpoint (latency, breaker, ejection) and per destination (budget).
  const balancer = new P2CBalancer();
  const health = new HealthTable({ onState: (h) => meshMetrics.circuitBreaker(h.service, h.key, h.state) });
  const budgets = new Map<string, RetryBudget>();
  const budgetFor = (destination: string, ratio: number) => {
    let b = budgets.get(destination);
    if (!b) budgets.set(destination, (b = new RetryBudget({ ratio })));
    else b.ratio = ratio;
    return b;
  };
  // GET /config: per endpoint its latency estimate, and per Service that reaches it its health
  const endpointStates = () => {
    const latency = balancer.snapshot();
    const out: Record<string, { ewmaMs?: number; pending?: number; breakerOpen: boolean; ejected: boolean; services: Record<string, unknown> }> = {};
    for (const { service, endpoint, ...state } of health.snapshot()) {
      const e = (out[endpoint] ??= { ...latency[endpoint], breakerOpen: false, ejected: false, services: {} });
      e.services[service] = state;
      e.breakerOpen ||= state.breaker === 'open';
      e.ejected ||= state.accrual === 'ejected';
    }
    return out;
  };
  registry.on('change', (view) => {
    const live = new Map(view.services.map((s) => [`${s.name}.${s.namespace}`, new Set(s.ports.flatMap((p) => view.endpoints({ service: s, port: p }).map((e) => e.key)))]));
    const keys = new Set([...live.values()].flatMap((k) => [...k]));
    balancer.retain((key) => keys.has(key));
    // a destination that is no Service is a pod called directly: kept while the pod serves
    health.retain((service, key) => live.get(service)?.has(key) ?? keys.has(key), (h) => meshMetrics.forgetEndpoint(h.service, h.key));
  });
  const accessLog = log.child({ component: 'access' });

  // Interception: the original destination of redirected connections (SO_ORIGINAL_DST).
  if (!originalDestinationAvailable()) log.warn({ code: 'TSMESH_NO_ORIGINAL_DST' }, 'cannot read original destinations on this system: only explicit (HTTP_PROXY) outbound traffic will be routed');
  const outbound = createOutbound({
    limits: settings.limits,
    namespace: settings.podNamespace,
    config,
    registry,
    dialer,
    detectTimeoutMs: settings.detectTimeoutMs,
    originalDestination,
    exchange: { forwarder, pools, http1: http1pools, h2: h2pools, balancer, health, budget: budgetFor, onRetry: (destination, reason) => meshMetrics.retry(destination, reason) },
    tracing,
    metrics: meshMetrics,
    grpcMetrics,
    self,
    mtls: identity !== null,
    tracker,
    log: accessLog,
  });
  const inbound = createInbound({
    limits: settings.limits,
    podIP: settings.podIP,
    trustDomain: settings.trustDomain,
    mtls: identity !== null,
    tls: () => inboundTls,
    tracing,
    metrics: meshMetrics,
    grpcMetrics,
    registry,
    self,
    config,
    pools,
    http1: http1pools,
    h2: h2pools,
    forwarder,
    tracker,
    log: accessLog,
    preambleTimeoutMs: 5_000,
    detectTimeoutMs: settings.detectTimeoutMs,
    originalPort: (socket) => originalDestination(socket)?.port,
  });

  identity?.ready.then(
    () => {
      mesh = createMeshTls(identity, { log, alpn: [MESH_ALPN, 'h2'] }); // h2: HTTP/2 between sidecars
      const tlsLog = log.child({ component: 'mtls' });
      const servers = (['strict', 'permissive'] as const).map((mode) => {
        const server = mesh!.inboundServer(mode, (socket, peer) => inbound.handleSecure(socket, peer));
        server.on('tlsClientError', (err: Error & { code?: string; reason?: string }, socket: { remoteAddress?: string }) => {
          meshMetrics.tlsHandshakeError('inbound', err.reason ?? err.code);
          tlsLog.warn({ code: err.code, reason: err.reason, client: socket.remoteAddress }, `inbound TLS refused: ${err.message}`);
        });
        return server;
      });
      inboundTls = { ownSpiffeId: mesh.ownSpiffeId, strict: servers[0]!, permissive: servers[1]! };
      log.info({ spiffeId: mesh.ownSpiffeId }, 'workload identity ready: mTLS on');
    },
    () => undefined, // closed before the first certificate
  );

  // The app's probes, moved to the admin port by the injector; a bad value is reported and the
  // probes it named answer 404 (the kubelet then reports the pod unready, with the reason in our log).
  let probes = new Map<string, AppProbe>();
  try {
    probes = parseAppProbes(settings.appProbes);
  } catch (err) {
    log.error({ code: (err as ConfigError).code, issues: (err as ConfigError).issues }, `ignoring TSMESH_APP_PROBES: ${(err as Error).message}`);
  }

  let draining = false;
  let drained: Promise<void> | undefined;
  const admin = createAdmin({
    ready: () => {
      const reasons: string[] = [];
      if (draining) reasons.push('draining');
      if (!registry.loaded) reasons.push('registry not loaded');
      if (identity && !mesh) reasons.push('no workload certificate yet');
      return { ok: reasons.length === 0, reasons };
    },
    config: () => ({
      pod: { name: settings.podName, namespace: settings.podNamespace, ip: settings.podIP, serviceAccount: settings.serviceAccount },
      settings,
      annotations: config.pod,
      policy: config.policy,
      problems: config.problems,
      registry: { version: registry.view.version, services: registry.view.services.length, pods: registry.view.pods.length, ...(discovery ? { discovery: discovery.status() } : {}) },
      // the effective policy per destination service, and each endpoint's state
      destinations: Object.fromEntries(registry.view.services.map((svc) => [`${svc.name}.${svc.namespace}`, config.policyFor(svc)])),
      endpoints: endpointStates(),
      inFlight: tracker.active,
    }),
    metrics,
    spans: (traceId) => recentSpans.spans(traceId),
    appProbes: { probes, podIP: settings.podIP },
    quit: () => {
      void drain().then(() => options.onQuit?.());
    },
  });

  // In a pod the outbound listener takes only loopback (iptables REDIRECT delivers the app's
  // connections to 127.0.0.1 / ::1), so it is no open proxy for other pods; the inbound and
  // admin listeners take every address, IPv4 and IPv6. In local mode all bind the pod's address.
  const outboundListener = createNetServer({ noDelay: true }, (s) => outbound.handleConnection(s));
  const outboundListener6 = createNetServer({ noDelay: true }, (s) => outbound.handleConnection(s));
  const inboundListener = createNetServer({ noDelay: true }, (s) => inbound.handleConnection(s));
  // A cap on open connections per listener: past it Node closes new ones at once.
  for (const [name, l] of [['outbound', outboundListener], ['outbound', outboundListener6], ['inbound', inboundListener]] as const) {
    l.maxConnections = settings.limits.maxConnections;
    l.on('drop', (d?: { remoteAddress?: string }) => log.warn({ code: 'TSMESH_TOO_MANY_CONNECTIONS', listener: name, client: d?.remoteAddress, max: settings.limits.maxConnections }, `connection refused: the ${name} listener has TSMESH_MAX_CONNECTIONS open`));
  }
  const inPod = isUnspecified(settings.bindAddress);
  let outboundAddr: AddressInfo, inboundAddr: AddressInfo, adminAddr: AddressInfo;
  try {
    [outboundAddr, inboundAddr, adminAddr] = await Promise.all([
      listen(outboundListener, inPod ? '127.0.0.1' : settings.bindAddress, settings.outboundPort, 'outbound'),
      listenAll(inboundListener, settings.bindAddress, settings.inboundPort, 'inbound'),
      listenAll(admin, settings.bindAddress, settings.adminPort, 'admin'),
    ]);
    if (inPod) await listen(outboundListener6, '::1', outboundAddr.port, 'outbound (IPv6)').catch((err: Error) => log.debug({ err: err.message }, 'no IPv6 loopback; outbound listens on IPv4 only'));
  } catch (err) {
    discovery?.close();
    for (const w of watches) w.close();
    for (const s of [outboundListener, outboundListener6, inboundListener, admin]) if (s.listening) s.close();
    pools.close();
    http1pools.close();
    h2pools.close();
    forwarder.close();
    identity?.close();
    await tracing.shutdown(0);
    throw err;
  }
  log.info({ outbound: outboundAddr, inbound: inboundAddr, admin: adminAddr, pod: settings.podName }, 'sidecar listening');

  const httpServers = [outbound.server, inbound.server];
  // native memory freed after a burst of connections goes back to the system (glibc keeps it otherwise)
  const memoryTrim = startMemoryTrim({ log });
  const closeAll = async () => {
    memoryTrim.stop();
    discovery?.close();
    for (const w of watches) w.close();
    for (const s of httpServers) s.closeAllConnections();
    outbound.h2.closeAll();
    inbound.h2.closeAll();
    admin.closeAllConnections();
    await Promise.all([close(outboundListener), close(outboundListener6), close(inboundListener), close(admin)]);
    for (const s of httpServers) s.close();
    pools.close();
    http1pools.close();
    h2pools.close();
    forwarder.close();
    health.close();
    mesh?.close();
    identity?.close();
    await tracing.shutdown(2000);
  };

  const drain = (): Promise<void> => {
    drained ??= (async () => {
      draining = true;
      log.info({ inFlight: tracker.active, deadlineMs: settings.drainTimeoutMs }, 'draining: no new connections; waiting for in-flight requests');
      outboundListener.close();
      outboundListener6.close();
      inboundListener.close();
      const idle = setInterval(() => httpServers.forEach((s) => s.closeIdleConnections()), 100);
      httpServers.forEach((s) => s.closeIdleConnections());
      outbound.h2.goaway(); // HTTP/2 clients finish their streams and reconnect elsewhere
      inbound.h2.goaway();
      const finished = await tracker.drain(settings.drainTimeoutMs);
      clearInterval(idle);
      log.info({ finished, inFlight: tracker.active }, finished ? 'drained' : 'drain deadline reached; closing what is left');
      await closeAll();
    })();
    return drained;
  };

  return {
    outbound: outboundAddr,
    inbound: inboundAddr,
    admin: adminAddr,
    config,
    registry,
    drain,
    close: closeAll,
  };
}

function listen(server: NetServer | Server, host: string, port: number, name: string): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      const hint = err.code === 'EADDRINUSE' ? ' (another process uses it: stop it or set the port variable)' : err.code === 'EADDRNOTAVAIL' ? ' (no interface has this address: check TSMESH_BIND_ADDRESS)' : '';
      reject(Object.assign(new Error(`cannot listen for ${name} on ${host}:${port}: ${err.code}${hint}`), { code: err.code }));
    });
    server.listen({ host, port }, () => {
      server.removeAllListeners('error');
      resolve(server.address() as AddressInfo);
    });
  });
}

/** Listens on every address: dual-stack `::` where the system has IPv6, else 0.0.0.0. */
async function listenAll(server: NetServer | Server, host: string, port: number, name: string): Promise<AddressInfo> {
  if (host !== '0.0.0.0') return listen(server, host, port, name);
  try {
    return await listen(server, '::', port, name);
  } catch (err) {
    if (!['EAFNOSUPPORT', 'EADDRNOTAVAIL'].includes((err as NodeJS.ErrnoException).code ?? '')) throw err;
    return listen(server, '0.0.0.0', port, name);
  }
}

function close(server: NetServer | Server): Promise<void> {
  return new Promise((resolve) => (server.listening ? server.close(() => resolve()) : resolve()));
}

const isUnspecified = (address: string) => address === '0.0.0.0' || address === '::';
