// The sidecar, composed: the one place that constructs things and wires them together. Each part
// comes from the folder of its concern; what is here is which parts exist and how they connect.
import type { AddressInfo } from 'node:net';
import { readFile } from 'node:fs/promises';
import { Registry as Metrics } from 'prom-client';
import { MeshMetrics } from './metrics/mesh-metrics.ts';
import { workloadName } from './metrics/workload.ts';
import { createTracing, SpanRecorder } from './tracing/index.ts';
import { parsePodInfo } from './config/podinfo.ts';
import type { Settings } from './config/settings.ts';
import { LiveConfig } from './config/live.ts';
import { watchAnnotationsFile } from './config/annotations-file.ts';
import { followLogLevel } from './config/log-level.ts';
import { Registry } from './registry/registry.ts';
import type { DiscoveryClient, DiscoveryClientOptions } from './discovery/client.ts';
import type { FileWatch } from './watch/watch.ts';
import { meshDialer } from './upstream/dial.ts';
import { retainKnownPods } from './upstream/retain.ts';
import type { IdentityProvider } from './identity/index.ts';
import { workloadIdentity } from './identity/workload.ts';
import { meshTlsOnIdentity } from './mtls/on-identity.ts';
import { ConnectionPools } from './upstream/pool.ts';
import { Http1Pools } from './http1/client.ts';
import { H2Pools } from './upstream/h2-pool.ts';
import { GrpcMetrics } from './h2/grpc-metrics.ts';
import { createForwarder } from './http/forward.ts';
import { createOutbound } from './outbound/outbound.ts';
import { Resilience } from './outbound/resilience.ts';
import { createInbound } from './inbound/inbound.ts';
import { createAdmin } from './admin/admin.ts';
import { appProbesOrNone } from './admin/app-probes.ts';
import { readiness } from './admin/readiness.ts';
import { Tracker } from './lifecycle/tracker.ts';
import { startMemoryTrim } from './lifecycle/trim.ts';
import { Listeners, isUnspecified, type Bound } from './lifecycle/listeners.ts';
import { Drain } from './lifecycle/drain.ts';
import { originalDestination, originalDestinationAvailable } from './origdst/origdst.ts';
import type { Logger } from './log/log.ts';

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

  // Configuration: the pod's annotations file, live; the log level follows its annotation.
  const annotations = watchAnnotationsFile(settings.annotationsFile, config, log, settings.watchIntervalMs);
  watches.push(annotations);
  await annotations.check();
  followLogLevel(config, log);

  // Registry: the YAML file in local mode (TSMESH_REGISTRY wins); else the control plane's
  // discovery stream, started below once the identity exists (its certificate authenticates us).
  // Each source is loaded only when used: yaml for the file, ws for the stream (bench/NOTES.md, memory).
  if (settings.registryFile) {
    const { fileRegistrySource } = await import('./registry/file-source.ts');
    const source = fileRegistrySource(settings.registryFile, registry, log.child({ component: 'registry' }), { intervalMs: settings.watchIntervalMs });
    watches.push(source);
    await source.check();
  }

  // Identity and mTLS: the TLS contexts exist once the first certificate does (meshTls below).
  const identity = workloadIdentity(settings, options.identity, log, metrics);
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

  // Upstream connections: one dialer (mTLS once meshTls has a certificate), three pools.
  const dialer = meshDialer({
    inboundPort: settings.inboundPort,
    localAddress: isUnspecified(settings.bindAddress) ? undefined : settings.bindAddress,
    trustDomain: settings.trustDomain,
    mtls: identity !== null,
    mesh: () => meshTls.mesh,
    onHandshakeError: (err) => meshMetrics.tlsHandshakeError('outbound', err.code),
  });
  const pools = new ConnectionPools(dialer); // node:http agents: WebSocket upgrades (http-proxy)
  const http1pools = new Http1Pools(dialer, { maxPerEndpoint: settings.limits.maxUpstreamConnections }); // HTTP/1.1: the raw-socket path's keep-alive pools
  const h2pools = new H2Pools(dialer); // HTTP/2 (gRPC): one multiplexed session per endpoint
  registry.on('change', (view) => retainKnownPods(view, settings.podIP, [pools, http1pools, h2pools]));

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
  const resilience = new Resilience(meshMetrics);
  registry.on('change', (view) => resilience.retain(view));
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
    exchange: {
      forwarder,
      pools,
      http1: http1pools,
      h2: h2pools,
      balancer: resilience.balancer,
      health: resilience.health,
      budget: resilience.budgetFor,
      onRetry: (destination, reason) => meshMetrics.retry(destination, reason),
    },
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
    tls: () => meshTls.inbound,
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

  // mTLS from the first certificate on: until then not ready, meshed calls fail over, inbound mTLS refused.
  const meshTls = meshTlsOnIdentity(identity, {
    log,
    onSecure: (socket, peer) => inbound.handleSecure(socket, peer),
    onHandshakeError: (reason) => meshMetrics.tlsHandshakeError('inbound', reason),
  });

  // The drain (quitquitquit, SIGTERM): stop accepting, let the work in flight finish, close all.
  const httpServers = [outbound.server, inbound.server];
  const drain = new Drain({
    tracker,
    deadlineMs: settings.drainTimeoutMs,
    log,
    stopAccepting: () => listeners.stopAccepting(),
    closeIdle: () => httpServers.forEach((s) => s.closeIdleConnections()),
    goaway: () => {
      outbound.h2.goaway();
      inbound.h2.goaway();
    },
    closeAll: () => closeAll(),
  });

  const admin = createAdmin({
    ready: () => readiness({ draining: drain.draining, registryLoaded: registry.loaded, awaitingCertificate: identity !== null && !meshTls.mesh }),
    config: () => ({
      pod: { name: settings.podName, namespace: settings.podNamespace, ip: settings.podIP, serviceAccount: settings.serviceAccount },
      settings,
      annotations: config.pod,
      policy: config.policy,
      problems: config.problems,
      registry: { version: registry.view.version, services: registry.view.services.length, pods: registry.view.pods.length, ...(discovery ? { discovery: discovery.status() } : {}) },
      // the effective policy per destination service, and each endpoint's state
      destinations: Object.fromEntries(registry.view.services.map((svc) => [`${svc.name}.${svc.namespace}`, config.policyFor(svc)])),
      endpoints: resilience.endpointStates(),
      inFlight: tracker.active,
    }),
    metrics,
    spans: (traceId) => recentSpans.spans(traceId),
    // the app's probes, moved to the admin port by the injector
    appProbes: { probes: appProbesOrNone(settings.appProbes, log), podIP: settings.podIP },
    quit: () => {
      void drain.start().then(() => options.onQuit?.());
    },
  });

  const listeners = new Listeners({
    outbound: (s) => outbound.handleConnection(s),
    inbound: (s) => inbound.handleConnection(s),
    admin,
    maxConnections: settings.limits.maxConnections,
    log,
  });
  let bound: Bound;
  try {
    bound = await listeners.listen(settings);
  } catch (err) {
    discovery?.close();
    for (const w of watches) w.close();
    listeners.abort();
    pools.close();
    http1pools.close();
    h2pools.close();
    forwarder.close();
    identity?.close();
    await tracing.shutdown(0);
    throw err;
  }
  log.info({ outbound: bound.outbound, inbound: bound.inbound, admin: bound.admin, pod: settings.podName }, 'sidecar listening');

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
    await listeners.close();
    for (const s of httpServers) s.close();
    pools.close();
    http1pools.close();
    h2pools.close();
    forwarder.close();
    resilience.close();
    meshTls.mesh?.close();
    identity?.close();
    await tracing.shutdown(2000);
  };

  return {
    ...bound,
    config,
    registry,
    drain: drain.start,
    close: closeAll,
  };
}
