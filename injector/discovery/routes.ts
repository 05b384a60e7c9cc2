// Mesh routes in the control plane: HTTPRoute and GRPCRoute (gateway.networking.k8s.io) are
// listed and watched beside Services, checked with the sidecar's own validation
// (src/route/model.ts), streamed with the details of the Services they attach to, and given a
// status: for each Service in parentRefs, an entry of controller `tsmesh.io/mesh` with the
// Gateway API's Accepted and ResolvedRefs conditions, written through the status subresource.
//
// A cluster without the Gateway API CRDs works as before: the served version of each kind is
// probed (HTTPRoute v1, then v1beta1; GRPCRoute v1, then v1alpha2); when none is served that
// is logged once (TSMESH_ROUTES_UNAVAILABLE), tsmesh_discovery_routes_available says 0, and the
// probe is repeated quietly, so routes start working when the CRDs are installed.
import { CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import { Gauge, type Registry } from 'prom-client';
import type { Logger } from '../../src/log/log.ts';
import { GATEWAY_GROUP, RouteInvalid, validateRoute, type MeshRoute, type RouteKind } from '../../src/route/model.ts';
import { Reflector, type KubeListPage, type RawObject, type ReflectorMetrics, type ReflectorOptions } from './reflector.ts';
import type { ServiceInfo } from './cluster.ts';

export const MESH_CONTROLLER = 'tsmesh.io/mesh';

export const ROUTE_RESOURCES: readonly { readonly kind: RouteKind; readonly plural: string; readonly versions: readonly string[] }[] = [
  { kind: 'HTTPRoute', plural: 'httproutes', versions: ['v1', 'v1beta1'] },
  { kind: 'GRPCRoute', plural: 'grpcroutes', versions: ['v1', 'v1alpha2'] },
];

/** A Service parentRef as the route wrote it (echoed in its status entry). */
export interface ServiceParentRef {
  readonly group: '';
  readonly kind: 'Service';
  readonly name: string;
  readonly namespace?: string;
  readonly port?: number;
}

/** What discovery keeps of a route. */
export interface RouteInfo {
  /** "Kind/namespace/name" */
  readonly key: string;
  readonly kind: RouteKind;
  /** The group/version it was read with (status is written back with the same). */
  readonly apiVersion: string;
  readonly plural: string;
  readonly namespace: string;
  readonly name: string;
  readonly generation: number | undefined;
  readonly resourceVersion: string | undefined;
  /** The object sidecars get: apiVersion, kind, metadata (name, namespace, creationTimestamp, generation), spec. */
  readonly object: Record<string, unknown>;
  /** The validated route; undefined when it does not validate (`problems`). */
  readonly route: MeshRoute | undefined;
  readonly problems: readonly string[];
  /** The Service parentRefs (status has an entry for each). */
  readonly parentRefs: readonly ServiceParentRef[];
  /** status.parents as read (other controllers' entries are kept as they are). */
  readonly statusParents: readonly Record<string, unknown>[];
}

type Obj = Record<string, unknown>;
const obj = (v: unknown): Obj => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Obj) : {});
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

export function projectRoute(kind: RouteKind, plural: string, apiVersion: string): (o: RawObject) => RouteInfo {
  return (o) => {
    const metadata = obj(o.metadata);
    const namespace = typeof metadata.namespace === 'string' ? metadata.namespace : 'default';
    const name = typeof metadata.name === 'string' ? metadata.name : '';
    const creationTimestamp = metadata.creationTimestamp instanceof Date ? metadata.creationTimestamp.toISOString() : metadata.creationTimestamp;
    const generation = typeof metadata.generation === 'number' ? metadata.generation : undefined;
    const object = {
      apiVersion,
      kind,
      metadata: { name, namespace, ...(typeof creationTimestamp === 'string' ? { creationTimestamp } : {}), ...(generation !== undefined ? { generation } : {}) },
      spec: o.spec,
    };
    let route: MeshRoute | undefined;
    let problems: readonly string[] = [];
    try {
      route = validateRoute(object);
    } catch (err) {
      problems = err instanceof RouteInvalid ? err.problems : [(err as Error).message];
    }
    const parentRefs: ServiceParentRef[] = arr(obj(o.spec).parentRefs)
      .map(obj)
      .filter((p) => p.group === '' && p.kind === 'Service' && typeof p.name === 'string')
      .map((p) => ({ group: '', kind: 'Service', name: p.name as string, ...(typeof p.namespace === 'string' ? { namespace: p.namespace } : {}), ...(typeof p.port === 'number' ? { port: p.port } : {}) }));
    return {
      key: `${kind}/${namespace}/${name}`,
      kind,
      apiVersion,
      plural,
      namespace,
      name,
      generation,
      resourceVersion: typeof metadata.resourceVersion === 'string' ? metadata.resourceVersion : undefined,
      object,
      route,
      problems,
      parentRefs,
      statusParents: arr(obj(o.status).parents).map(obj),
    };
  };
}

/** The keys ("namespace/name") of the Services a route names as parents. */
export function parentKeys(r: RouteInfo): string[] {
  return [...new Set(r.parentRefs.map((p) => `${p.namespace ?? r.namespace}/${p.name}`))];
}

// ---- status ----------------------------------------------------------------------------------

export interface Condition {
  readonly type: 'Accepted' | 'ResolvedRefs';
  readonly status: 'True' | 'False';
  readonly reason: string;
  readonly message: string;
  readonly observedGeneration?: number;
  readonly lastTransitionTime: string;
}

export interface ParentStatus {
  readonly parentRef: ServiceParentRef;
  readonly controllerName: string;
  readonly conditions: readonly Condition[];
}

/** The backendRefs (and mirror backendRefs) of the spec as written, valid or not. */
function backendRefsOf(spec: unknown): Obj[] {
  const refs: Obj[] = [];
  for (const rule of arr(obj(spec).rules).map(obj)) {
    for (const b of arr(rule.backendRefs)) refs.push(obj(b));
    for (const f of arr(rule.filters).map(obj)) if (f.type === 'RequestMirror') refs.push(obj(obj(f.requestMirror).backendRef));
  }
  return refs;
}

/**
 * Our status entries for a route: Accepted (UnsupportedValue when it does not validate,
 * NoMatchingParent when the Service or its port does not exist) and ResolvedRefs (InvalidKind,
 * RefNotPermitted for another namespace, BackendNotFound), one entry per Service parentRef.
 * `previous` carries the lastTransitionTime of conditions that did not change.
 */
export function routeStatus(r: RouteInfo, service: (key: string) => ServiceInfo | undefined, now: string): ParentStatus[] {
  const condition = (type: Condition['type'], ok: boolean, reason: string, message: string): Condition => ({
    type,
    status: ok ? 'True' : 'False',
    reason,
    message: message.slice(0, 32_768),
    ...(r.generation !== undefined ? { observedGeneration: r.generation } : {}),
    lastTransitionTime: now,
  });
  // ResolvedRefs: the same for every parent
  const refProblems: { reason: string; message: string }[] = [];
  for (const b of backendRefsOf(r.object.spec)) {
    const group = typeof b.group === 'string' ? b.group : '';
    const kind = typeof b.kind === 'string' ? b.kind : 'Service';
    const name = String(b.name ?? '');
    const ns = typeof b.namespace === 'string' ? b.namespace : r.namespace;
    if (group !== '' || kind !== 'Service') refProblems.push({ reason: 'InvalidKind', message: `backendRef ${name}: ${group || 'core'}/${kind} is not a Service` });
    else if (ns !== r.namespace) refProblems.push({ reason: 'RefNotPermitted', message: `backendRef ${ns}/${name}: another namespace (ReferenceGrant is not supported)` });
    else {
      const s = service(`${ns}/${name}`);
      if (!s) refProblems.push({ reason: 'BackendNotFound', message: `backendRef ${ns}/${name}: no such Service` });
      else if (typeof b.port === 'number' && !s.ports.some((p) => p.port === b.port)) refProblems.push({ reason: 'BackendNotFound', message: `backendRef ${ns}/${name}: the Service has no port ${b.port}` });
    }
  }
  const order = ['InvalidKind', 'RefNotPermitted', 'BackendNotFound'];
  refProblems.sort((a, b) => order.indexOf(a.reason) - order.indexOf(b.reason));
  const resolved = refProblems.length
    ? condition('ResolvedRefs', false, refProblems[0]!.reason, refProblems.map((p) => p.message).join('; '))
    : condition('ResolvedRefs', true, 'ResolvedRefs', 'every backendRef is a Service of this namespace that exists');
  return r.parentRefs.map((parentRef) => {
    const key = `${parentRef.namespace ?? r.namespace}/${parentRef.name}`;
    const s = service(key);
    let accepted: Condition;
    if (r.problems.length) accepted = condition('Accepted', false, 'UnsupportedValue', r.problems.join('; '));
    else if (!s) accepted = condition('Accepted', false, 'NoMatchingParent', `Service ${key} does not exist`);
    else if (parentRef.port !== undefined && !s.ports.some((p) => p.port === parentRef.port)) accepted = condition('Accepted', false, 'NoMatchingParent', `Service ${key} has no port ${parentRef.port}`);
    else accepted = condition('Accepted', true, 'Accepted', 'the mesh routes requests to this Service by this route');
    return { parentRef, controllerName: MESH_CONTROLLER, conditions: [accepted, resolved] };
  });
}

/** status.parents with our entries replaced by `ours`; a condition that did not change keeps its lastTransitionTime. */
export function mergeStatusParents(current: readonly Obj[], ours: readonly ParentStatus[]): Obj[] {
  const previous = current.filter((p) => p.controllerName === MESH_CONTROLLER);
  const kept = ours.map((entry) => {
    const before = previous.find((p) => JSON.stringify(p.parentRef) === JSON.stringify(entry.parentRef));
    const conditions = entry.conditions.map((c) => {
      const old = arr(before?.conditions).map(obj).find((x) => x.type === c.type);
      return old && old.status === c.status && old.reason === c.reason && typeof old.lastTransitionTime === 'string' ? { ...c, lastTransitionTime: old.lastTransitionTime } : c;
    });
    return { ...entry, conditions } as unknown as Obj;
  });
  return [...current.filter((p) => p.controllerName !== MESH_CONTROLLER), ...kept];
}

// ---- the watches and the status writer ----------------------------------------------------------

export interface RouteWatchOptions {
  readonly kubeConfig: KubeConfig;
  readonly log: Logger;
  readonly metrics: ReflectorMetrics;
  readonly registry?: Registry;
  readonly reflector?: Partial<Pick<ReflectorOptions<unknown>, 'backoffInitialMs' | 'backoffMaxMs' | 'pageSize' | 'watchTimeoutSeconds'>>;
  readonly onUpsert: (key: string, value: RouteInfo, previous: RouteInfo | undefined) => void;
  readonly onDelete: (key: string, previous: RouteInfo) => void;
  /** How often a kind that is not served is probed again. Default 60 s. */
  readonly probeIntervalMs?: number;
}

export interface RouteWatch {
  /** Resolves once each kind is listed, or known not to be served (or not readable). */
  readonly synced: Promise<void>;
  /** The route kinds being watched, with the version served. */
  readonly served: ReadonlyMap<RouteKind, string>;
  stop(): void;
}

export function watchRoutes(o: RouteWatchOptions): RouteWatch {
  const custom = o.kubeConfig.makeApiClient(CustomObjectsApi);
  const served = new Map<RouteKind, string>();
  const reflectors: Reflector<RouteInfo>[] = [];
  const timers = new Set<NodeJS.Timeout>();
  let stopped = false;
  new Gauge({
    name: 'tsmesh_discovery_routes_available',
    help: 'Whether the Gateway API route kind is served by the API server and watched (1) or not (0: its CRD is not installed)',
    labelNames: ['kind'] as const,
    registers: o.registry ? [o.registry] : [],
    collect() {
      for (const r of ROUTE_RESOURCES) this.set({ kind: r.kind }, served.has(r.kind) ? 1 : 0);
    },
  });

  const synced = Promise.all(
    ROUTE_RESOURCES.map(
      (res) =>
        new Promise<void>((settle) => {
          let reported = false;
          const probe = async (): Promise<void> => {
            if (stopped) return settle();
            let version: string | undefined;
            let failure: string | undefined;
            for (const v of res.versions) {
              try {
                await custom.listClusterCustomObject({ group: GATEWAY_GROUP, version: v, plural: res.plural, limit: 1 });
                version = v;
                break;
              } catch (err) {
                const code = (err as { code?: number }).code;
                if (code !== 404) failure = `${code ?? ''} ${(err as Error).message.split('\n')[0]}`.trim();
              }
            }
            if (stopped) return settle();
            if (!version) {
              if (!reported) {
                reported = true;
                if (failure) o.log.warn({ code: 'TSMESH_ROUTES_UNAVAILABLE', kind: res.kind, err: failure }, `cannot read ${res.kind}s; mesh routes of this kind are not applied (probing again)`);
                else o.log.info({ code: 'TSMESH_ROUTES_UNAVAILABLE', kind: res.kind }, `the API server does not serve ${res.kind} (${GATEWAY_GROUP} ${res.versions.join(', ')}): the Gateway API CRDs are not installed; mesh routes of this kind are not applied`);
              }
              settle(); // discovery does not wait for routes that cannot be read
              const t = setTimeout(() => {
                timers.delete(t);
                void probe();
              }, o.probeIntervalMs ?? 60_000);
              timers.add(t);
              return;
            }
            served.set(res.kind, version);
            if (reported) o.log.info({ kind: res.kind, version }, `${res.kind} is served now: watching mesh routes`);
            const apiVersion = `${GATEWAY_GROUP}/${version}`;
            const reflector = new Reflector<RouteInfo>({
              ...o.reflector,
              kubeConfig: o.kubeConfig,
              log: o.log,
              metrics: o.metrics,
              resource: res.plural,
              path: `/apis/${GATEWAY_GROUP}/${version}/${res.plural}`,
              list: async (p) => {
                const page = (await custom.listClusterCustomObject({ group: GATEWAY_GROUP, version: version!, plural: res.plural, limit: p.limit, ...(p._continue ? { _continue: p._continue } : {}) })) as { items?: unknown[]; metadata?: { resourceVersion?: string; continue?: string } };
                return { items: page.items ?? [], metadata: { resourceVersion: page.metadata?.resourceVersion, _continue: page.metadata?.continue } } as KubeListPage;
              },
              project: projectRoute(res.kind, res.plural, apiVersion),
              onUpsert: o.onUpsert,
              onDelete: o.onDelete,
            });
            reflectors.push(reflector);
            reflector.start();
            void reflector.synced.then(() => settle());
          };
          void probe();
        }),
    ),
  ).then(() => undefined);

  return {
    synced,
    served,
    stop() {
      stopped = true;
      for (const t of timers) clearTimeout(t);
      for (const r of reflectors) r.stop();
    },
  };
}

export interface StatusWriterOptions {
  readonly kubeConfig: KubeConfig;
  readonly log: Logger;
  /** The route now (undefined: gone) and the Services, read when the write is made. */
  readonly route: (key: string) => RouteInfo | undefined;
  readonly service: (key: string) => ServiceInfo | undefined;
  /** Delay before a batch of status writes (changes coalesce). Default 50 ms. */
  readonly delayMs?: number;
  readonly retryMs?: number;
  readonly now?: () => Date;
}

/**
 * Writes each route's status.parents entries when they differ from what the route has
 * (conditions compared without their lastTransitionTime, so our own write, coming back as a
 * watch event, writes nothing). Writes go one at a time; a conflict (409) reads the route
 * again and retries; other failures retry later.
 */
export class RouteStatusWriter {
  readonly #o: StatusWriterOptions;
  readonly #custom: CustomObjectsApi;
  readonly #pending = new Set<string>();
  #timer: NodeJS.Timeout | undefined;
  #running = false;
  #stopped = false;
  /** Writes made (tests and logs). */
  writes = 0;

  constructor(o: StatusWriterOptions) {
    this.#o = o;
    this.#custom = o.kubeConfig.makeApiClient(CustomObjectsApi);
  }

  /** The route `key` (or every route, with its keys) may need a new status. */
  schedule(keys: Iterable<string>): void {
    for (const k of keys) this.#pending.add(k);
    if (this.#timer || this.#running || this.#stopped || this.#pending.size === 0) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#run();
    }, this.#o.delayMs ?? 50);
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }

  async #run(): Promise<void> {
    this.#running = true;
    const failed: string[] = [];
    try {
      while (this.#pending.size && !this.#stopped) {
        const key = this.#pending.values().next().value!;
        this.#pending.delete(key);
        if (!(await this.#write(key))) failed.push(key);
      }
    } finally {
      this.#running = false;
    }
    if (failed.length && !this.#stopped) {
      const t = setTimeout(() => this.schedule(failed), this.#o.retryMs ?? 5000);
      t.unref();
    }
    if (this.#pending.size) this.schedule([]);
  }

  /** Returns false when the write should be tried again later. */
  async #write(key: string, route = this.#o.route(key), attempt = 1): Promise<boolean> {
    if (!route || route.parentRefs.length === 0) return true;
    const ours = routeStatus(route, this.#o.service, (this.#o.now?.() ?? new Date()).toISOString());
    const strip = (parents: readonly Obj[]) => JSON.stringify(parents.filter((p) => p.controllerName === MESH_CONTROLLER).map((p) => ({ ...p, conditions: arr(p.conditions).map((c) => ({ ...obj(c), lastTransitionTime: undefined })) })));
    const parents = mergeStatusParents(route.statusParents, ours);
    if (strip(parents) === strip(route.statusParents)) return true;
    const [group, version] = route.apiVersion.split('/') as [string, string];
    try {
      await this.#custom.replaceNamespacedCustomObjectStatus({
        group,
        version,
        namespace: route.namespace,
        plural: route.plural,
        name: route.name,
        body: { apiVersion: route.apiVersion, kind: route.kind, metadata: { name: route.name, namespace: route.namespace, resourceVersion: route.resourceVersion }, status: { parents } },
      });
      this.writes++;
      this.#o.log.debug({ route: key, accepted: ours.map((p) => p.conditions[0]!.status) }, 'route status written');
      return true;
    } catch (err) {
      const code = (err as { code?: number }).code;
      if (code === 404) return true; // the route is gone
      if (code === 409 && attempt === 1) {
        // changed since we read it: read it again and retry once
        try {
          const fresh = (await this.#custom.getNamespacedCustomObject({ group, version, namespace: route.namespace, plural: route.plural, name: route.name })) as RawObject;
          return this.#write(key, projectRoute(route.kind, route.plural, route.apiVersion)(fresh), 2);
        } catch (e) {
          if ((e as { code?: number }).code === 404) return true;
        }
      }
      this.#o.log.warn({ code: 'TSMESH_ROUTE_STATUS_FAILED', route: key, status: code, err: (err as Error).message.split('\n')[0] }, 'cannot write the route status; retrying later');
      return false;
    }
  }
}
