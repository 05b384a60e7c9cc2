// Discovery, the control plane's third part: three list+watches (Services, EndpointSlices,
// Pods: one set per replica, not per pod) feed the cluster state; the stream pushes it to the
// sidecars. Mesh routes (HTTPRoute, GRPCRoute) are watched too where the API server serves
// them, streamed with their parent Services' details, and given a status (./routes.ts). Mounted by `tsmesh injector` (src/cli/injector.ts) as a component:
//   WebSocket upgrade at /v1/discovery (sidecars, mesh certificate required)
//   GET /debug/sidecars (who is connected, which version each has acknowledged)
import { CoreV1Api, DiscoveryV1Api, type KubeConfig } from '@kubernetes/client-node';
import type { Registry } from 'prom-client';
import type { Logger } from '../../src/log/log.ts';
import { DISCOVERY_PATH } from '../../src/discovery/protocol.ts';
import { HttpError, sendJson } from '../server/http.ts';
import type { RouteHandler } from '../server/server.ts';
import type { Component, InjectorContext, RouteFactory, UpgradeHandler } from '../main.ts';
import { ClusterState, projectPod, projectService, projectSlice } from './cluster.ts';
import { Reflector, reflectorMetrics, type KubeListPage, type ReflectorOptions } from './reflector.ts';
import { DiscoveryServer, type DiscoveryServerOptions } from './server.ts';
import { RouteStatusWriter, watchRoutes, type RouteWatch } from './routes.ts';

export { ClusterState } from './cluster.ts';
export { DiscoveryServer, DISCOVERY_SERVER_DEFAULTS } from './server.ts';
export const SIDECARS_PATH = '/debug/sidecars';

export interface DiscoveryOptions {
  readonly kubeConfig: KubeConfig;
  readonly trustDomain: string;
  readonly log: Logger;
  readonly registry?: Registry;
  /** Stream tuning (coalescing, heartbeats, slow readers). */
  readonly server?: Partial<Omit<DiscoveryServerOptions, 'cluster' | 'synced' | 'trustDomain' | 'log' | 'registry'>>;
  readonly reflector?: Partial<Pick<ReflectorOptions<unknown>, 'backoffInitialMs' | 'backoffMaxMs' | 'pageSize' | 'watchTimeoutSeconds'>>;
  /** Routes: how often an unserved route kind is probed again, and the status writer's delays. */
  readonly routes?: { readonly probeIntervalMs?: number; readonly statusDelayMs?: number; readonly statusRetryMs?: number };
}

export interface Discovery {
  readonly server: DiscoveryServer;
  readonly cluster: ClusterState;
  readonly routes: RouteWatch;
  readonly routeStatus: RouteStatusWriter;
  /** Resolves once Services, EndpointSlices and Pods (and the route kinds that are served) have each been listed. */
  readonly synced: Promise<void>;
  readonly upgrade: UpgradeHandler;
  readonly sidecarsRoute: RouteHandler;
  stop(): void;
}

export function startDiscovery(o: DiscoveryOptions): Discovery {
  const log = o.log.child({ component: 'discovery' });
  const core = o.kubeConfig.makeApiClient(CoreV1Api);
  const disco = o.kubeConfig.makeApiClient(DiscoveryV1Api);
  const metrics = reflectorMetrics(o.registry);
  let allSynced = false;
  const holder: { server?: DiscoveryServer } = {};
  const cluster = new ClusterState(() => holder.server?.changed());
  const server = new DiscoveryServer({ ...o.server, cluster, synced: () => allSynced, trustDomain: o.trustDomain, log, ...(o.registry ? { registry: o.registry } : {}) });
  holder.server = server;

  const common = { kubeConfig: o.kubeConfig, log, metrics, ...o.reflector };
  // Route status depends on the routes and on the Services they name.
  const routeStatus = new RouteStatusWriter({
    kubeConfig: o.kubeConfig,
    log,
    route: (k) => cluster.routes.get(k),
    service: (k) => cluster.services.get(k),
    ...(o.routes?.statusDelayMs !== undefined ? { delayMs: o.routes.statusDelayMs } : {}),
    ...(o.routes?.statusRetryMs !== undefined ? { retryMs: o.routes.statusRetryMs } : {}),
  });
  const serviceChanged = () => routeStatus.schedule(cluster.routes.keys());
  const services = new Reflector({
    ...common,
    resource: 'services',
    path: '/api/v1/services',
    list: (p) => core.listServiceForAllNamespaces(p) as Promise<KubeListPage>,
    project: projectService,
    onUpsert: (k, v, prev) => {
      cluster.upsertService(k, v, prev);
      if (!prev || prev.ports.length !== v.ports.length || prev.ports.some((p, i) => p.port !== v.ports[i]!.port)) serviceChanged();
    },
    onDelete: (k) => {
      cluster.deleteService(k);
      serviceChanged();
    },
  });
  const slices = new Reflector({
    ...common,
    resource: 'endpointslices',
    path: '/apis/discovery.k8s.io/v1/endpointslices',
    list: (p) => disco.listEndpointSliceForAllNamespaces(p) as Promise<KubeListPage>,
    project: projectSlice,
    onUpsert: (k, v, prev) => cluster.upsertSlice(k, v, prev),
    onDelete: (k, prev) => cluster.deleteSlice(k, prev),
  });
  const pods = new Reflector({
    ...common,
    resource: 'pods',
    path: '/api/v1/pods',
    list: (p) => core.listPodForAllNamespaces(p) as Promise<KubeListPage>,
    project: projectPod,
    onUpsert: (k, v, prev) => cluster.upsertPod(k, v, prev),
    onDelete: (k) => cluster.deletePod(k),
  });
  const reflectors = [services, slices, pods];
  for (const r of reflectors) r.start();
  const routes = watchRoutes({
    kubeConfig: o.kubeConfig,
    log,
    metrics,
    ...(o.registry ? { registry: o.registry } : {}),
    ...(o.reflector ? { reflector: o.reflector } : {}),
    ...(o.routes?.probeIntervalMs !== undefined ? { probeIntervalMs: o.routes.probeIntervalMs } : {}),
    // (keyed "Kind/namespace/name": an HTTPRoute and a GRPCRoute may share a name)
    onUpsert: (_k, v, prev) => {
      cluster.upsertRoute(v.key, v, prev);
      routeStatus.schedule([v.key]);
    },
    onDelete: (_k, prev) => cluster.deleteRoute(prev.key, prev),
  });
  const synced = Promise.all([...reflectors.map((r) => r.synced), routes.synced]).then(() => {
    allSynced = true;
    server.synced();
  });

  return {
    server,
    cluster,
    routes,
    routeStatus,
    synced,
    upgrade: (req, socket, head) => server.handleUpgrade(req, socket, head),
    sidecarsRoute: (req, res) => {
      if (req.method !== 'GET') throw new HttpError(405, 'METHOD_NOT_ALLOWED', `use GET ${SIDECARS_PATH}`);
      sendJson(res, 200, server.sidecars());
    },
    stop() {
      for (const r of reflectors) r.stop();
      routes.stop();
      routeStatus.stop();
      server.close();
    },
  };
}

/** `tsmesh injector`'s discovery component (src/cli/injector.ts mounts it). */
export function discoveryComponent(extra: Partial<Pick<DiscoveryOptions, 'server' | 'reflector' | 'routes'>> = {}): RouteFactory {
  return (ctx: InjectorContext): Component => {
    const d = startDiscovery({ kubeConfig: ctx.kubeConfig, trustDomain: ctx.settings.trustDomain, log: ctx.logger, registry: ctx.registry, ...extra });
    return {
      routes: new Map([[SIDECARS_PATH, d.sidecarsRoute]]),
      upgrades: new Map([[DISCOVERY_PATH, d.upgrade]]),
      close: () => d.stop(),
    };
  };
}
