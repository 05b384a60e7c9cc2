// The cluster as discovery sees it: Services, EndpointSlices and Pods, each projected to the
// few fields the sidecars use, joined into the registry model (src/registry/model.ts) per
// service. Changes mark services dirty; the stream (./server.ts) takes the dirty set when it
// pushes, so any number of events between two pushes cost one push.
import { STATUS_KEY, PROXY_NAME } from '../inject/inject.ts';
import { PREFIX } from '../../src/config/annotations.ts';
import type { PodSpec, ServiceSpec } from '../../src/registry/model.ts';
import type { IndexEntry, ServiceDetail } from '../../src/discovery/protocol.ts';
import type { RawObject } from './reflector.ts';
import { parentKeys, type RouteInfo } from './routes.ts';

export interface ServiceInfo {
  readonly namespace: string;
  readonly name: string;
  readonly clusterIP: string | undefined;
  readonly ports: readonly { readonly name: string; readonly port: number; readonly targetPort: number | string }[];
  readonly selector: Readonly<Record<string, string>>;
  /** tsmesh.io/ annotations only: per-destination policy. */
  readonly annotations: Readonly<Record<string, string>>;
}

export interface SliceInfo {
  /** "namespace/name" of the Service it belongs to (label kubernetes.io/service-name). */
  readonly service: string;
  readonly ports: readonly { readonly name: string; readonly port: number }[];
  readonly endpoints: readonly { readonly ip: string; readonly ready: boolean; readonly pod: string | undefined }[];
}

export interface PodInfo {
  readonly namespace: string;
  readonly name: string;
  readonly serviceAccount: string;
  readonly meshed: boolean;
  /** Only the labels the sidecars name workloads by (app.kubernetes.io/name, app). */
  readonly labels: Readonly<Record<string, string>>;
}

const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';
const WORKLOAD_LABELS = ['app.kubernetes.io/name', 'app'];

type Obj = Record<string, unknown>;
const obj = (v: unknown): Obj => (v && typeof v === 'object' ? (v as Obj) : {});
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);
const strMap = (v: unknown): Record<string, string> => Object.fromEntries(Object.entries(obj(v)).filter((e): e is [string, string] => typeof e[1] === 'string'));

/** A Service, or undefined for ExternalName Services and those without TCP ports (nothing to route). */
export function projectService(o: RawObject): ServiceInfo | undefined {
  const spec = obj(o.spec);
  if (spec.type === 'ExternalName') return undefined;
  const clusterIP = str(spec.clusterIP);
  const ports = arr(spec.ports)
    .map(obj)
    .filter((p) => typeof p.port === 'number' && (p.protocol === undefined || p.protocol === 'TCP'))
    .map((p) => ({ name: str(p.name) ?? '', port: p.port as number, targetPort: typeof p.targetPort === 'number' || typeof p.targetPort === 'string' ? p.targetPort : (p.port as number) }));
  if (ports.length === 0) return undefined; // UDP/SCTP only: nothing a TCP proxy routes
  return {
    namespace: o.metadata?.namespace ?? 'default',
    name: o.metadata?.name ?? '',
    clusterIP: clusterIP && clusterIP !== 'None' ? clusterIP : undefined,
    ports,
    selector: strMap(spec.selector),
    annotations: Object.fromEntries(Object.entries(strMap(o.metadata?.annotations)).filter(([k]) => k.startsWith(PREFIX))),
  };
}

/** An EndpointSlice of a Service (IPv4 or IPv6 addresses); undefined for others (FQDN, no service label). */
export function projectSlice(o: RawObject): SliceInfo | undefined {
  const service = o.metadata?.labels?.[SERVICE_NAME_LABEL];
  if (!service || (o.addressType !== 'IPv4' && o.addressType !== 'IPv6')) return undefined;
  const endpoints: SliceInfo['endpoints'][number][] = [];
  for (const e of arr(o.endpoints).map(obj)) {
    const ip = str(arr(e.addresses)[0]);
    if (!ip) continue;
    const ready = obj(e.conditions).ready;
    const ref = obj(e.targetRef);
    // The API: a nil ready condition is to be read as ready.
    endpoints.push({ ip, ready: ready !== false, pod: ref.kind === 'Pod' ? str(ref.name) : undefined });
  }
  return {
    service: `${o.metadata?.namespace ?? 'default'}/${service}`,
    ports: arr(o.ports)
      .map(obj)
      .filter((p) => typeof p.port === 'number' && (p.protocol === undefined || p.protocol === 'TCP'))
      .map((p) => ({ name: str(p.name) ?? '', port: p.port as number })),
    endpoints,
  };
}

/** A Pod: meshed when it has the injector's status annotation or its proxy container. */
export function projectPod(o: RawObject): PodInfo {
  const spec = obj(o.spec);
  const containers = [...arr(spec.initContainers), ...arr(spec.containers)].map(obj);
  const labels = o.metadata?.labels ?? {};
  return {
    namespace: o.metadata?.namespace ?? 'default',
    name: o.metadata?.name ?? '',
    serviceAccount: str(spec.serviceAccountName) ?? str(spec.serviceAccount) ?? 'default',
    meshed: o.metadata?.annotations?.[STATUS_KEY] !== undefined || containers.some((c) => c.name === PROXY_NAME),
    labels: Object.fromEntries(WORKLOAD_LABELS.filter((k) => typeof labels[k] === 'string').map((k) => [k, labels[k]!])),
  };
}

const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);

export class ClusterState {
  readonly services = new Map<string, ServiceInfo>();
  readonly #slices = new Map<string, Map<string, SliceInfo>>(); // service key -> slice key -> slice
  readonly pods = new Map<string, PodInfo>();
  /** Mesh routes by "Kind/namespace/name". */
  readonly routes = new Map<string, RouteInfo>();
  /** service key -> the routes that name it as a parent (their changes dirty it). */
  readonly #parentRoutes = new Map<string, Set<string>>();
  /** pod key -> the services whose slices name it (a pod's change dirties them). */
  readonly #podServices = new Map<string, Set<string>>();
  #dirty = new Set<string>();
  readonly #onDirty: () => void;

  constructor(onDirty: () => void) {
    this.#onDirty = onDirty;
  }

  #mark(key: string): void {
    this.#dirty.add(key);
    this.#onDirty();
  }

  /** The services changed since the last call. */
  takeDirty(): Set<string> {
    const d = this.#dirty;
    this.#dirty = new Set();
    return d;
  }

  get dirtyCount(): number {
    return this.#dirty.size;
  }

  upsertService(key: string, s: ServiceInfo, previous: ServiceInfo | undefined): void {
    this.services.set(key, s);
    if (!previous || !same(s, previous)) this.#mark(key);
  }

  deleteService(key: string): void {
    this.services.delete(key);
    this.#mark(key);
  }

  upsertSlice(key: string, s: SliceInfo, previous: SliceInfo | undefined): void {
    if (previous && same(s, previous)) return;
    if (previous && previous.service !== s.service) {
      this.deleteSlice(key, previous); // relabelled to another service
      previous = undefined;
    }
    let slices = this.#slices.get(s.service);
    if (!slices) this.#slices.set(s.service, (slices = new Map()));
    slices.set(key, s);
    if (previous) this.#unref(previous, s.service);
    this.#ref(s);
    this.#mark(s.service);
  }

  deleteSlice(key: string, previous: SliceInfo): void {
    const slices = this.#slices.get(previous.service);
    slices?.delete(key);
    if (slices?.size === 0) this.#slices.delete(previous.service);
    this.#unref(previous, previous.service);
    this.#mark(previous.service);
  }

  upsertPod(key: string, p: PodInfo, previous: PodInfo | undefined): void {
    this.pods.set(key, p);
    if (previous && same(p, previous)) return; // status churn: nothing discovery carries
    for (const svc of this.#podServices.get(key) ?? []) this.#mark(svc);
  }

  deletePod(key: string): void {
    this.pods.delete(key);
    for (const svc of this.#podServices.get(key) ?? []) this.#mark(svc);
  }

  upsertRoute(key: string, r: RouteInfo, previous: RouteInfo | undefined): void {
    this.routes.set(key, r);
    // what the sidecars get: the object, when it is valid (a status write changes neither)
    const sent = (x: RouteInfo | undefined) => (x?.route ? JSON.stringify(x.object) : '');
    if (previous) this.#unlinkRoute(key, previous);
    for (const svc of parentKeys(r)) {
      let set = this.#parentRoutes.get(svc);
      if (!set) this.#parentRoutes.set(svc, (set = new Set()));
      set.add(key);
    }
    if (sent(r) === sent(previous) && same(parentKeys(r), previous ? parentKeys(previous) : [])) return;
    for (const svc of new Set([...parentKeys(r), ...(previous ? parentKeys(previous) : [])])) this.#mark(svc);
  }

  deleteRoute(key: string, previous: RouteInfo): void {
    this.routes.delete(key);
    this.#unlinkRoute(key, previous);
    if (previous.route) for (const svc of parentKeys(previous)) this.#mark(svc);
  }

  #unlinkRoute(key: string, r: RouteInfo): void {
    for (const svc of parentKeys(r)) {
      const set = this.#parentRoutes.get(svc);
      set?.delete(key);
      if (set?.size === 0) this.#parentRoutes.delete(svc);
    }
  }

  /** The valid routes naming this service as a parent, as sidecars get them. */
  routesOf(key: string): Record<string, unknown>[] {
    const out: Record<string, unknown>[] = [];
    for (const k of [...(this.#parentRoutes.get(key) ?? [])].sort()) {
      const r = this.routes.get(k);
      if (r?.route) out.push(r.object);
    }
    return out;
  }

  #ref(s: SliceInfo): void {
    const ns = s.service.slice(0, s.service.indexOf('/'));
    for (const e of s.endpoints) {
      if (!e.pod) continue;
      const podKey = `${ns}/${e.pod}`;
      let set = this.#podServices.get(podKey);
      if (!set) this.#podServices.set(podKey, (set = new Set()));
      set.add(s.service);
    }
  }

  #unref(s: SliceInfo, service: string): void {
    const ns = s.service.slice(0, s.service.indexOf('/'));
    const still = new Set<string>();
    for (const slice of this.#slices.get(service)?.values() ?? []) for (const e of slice.endpoints) if (e.pod) still.add(e.pod);
    for (const e of s.endpoints) {
      if (!e.pod || still.has(e.pod)) continue;
      const podKey = `${ns}/${e.pod}`;
      const set = this.#podServices.get(podKey);
      set?.delete(service);
      if (set?.size === 0) this.#podServices.delete(podKey);
    }
  }

  /** The service's entry in the index every sidecar holds; undefined when there is no such Service. */
  indexEntry(key: string): IndexEntry | undefined {
    const s = this.services.get(key);
    if (!s) return undefined;
    const ips = new Set<string>();
    for (const slice of this.#slices.get(key)?.values() ?? []) for (const e of slice.endpoints) ips.add(e.ip);
    return [key, s.clusterIP ?? null, s.ports.map((p) => p.port), [...ips]];
  }

  /** The service as registry data (its EndpointSlices' addresses, the pods behind them); null when gone. */
  detail(key: string): ServiceDetail | null {
    const s = this.services.get(key);
    if (!s) return null;
    const slices = [...(this.#slices.get(key)?.values() ?? [])];
    const ports = s.ports.map((p) => {
      // A named targetPort is resolved per pod by the EndpointSlice controller: take its number.
      const fromSlice = slices.flatMap((sl) => sl.ports).find((sp) => sp.name === p.name)?.port;
      const targetPort = fromSlice ?? (typeof p.targetPort === 'number' ? p.targetPort : p.port);
      return { ...(p.name ? { name: p.name } : {}), port: p.port, targetPort };
    });
    const endpoints = new Map<string, { ip: string; ready: boolean; pod?: string }>();
    const pods: PodSpec[] = [];
    for (const slice of slices) {
      for (const e of slice.endpoints) {
        const prev = endpoints.get(e.ip);
        // The same address in two slices (a slice being replaced): ready if either says so.
        if (prev) {
          prev.ready ||= e.ready;
          continue;
        }
        endpoints.set(e.ip, { ip: e.ip, ready: e.ready, ...(e.pod ? { pod: e.pod } : {}) });
        const pod = e.pod ? this.pods.get(`${s.namespace}/${e.pod}`) : undefined;
        if (pod) pods.push({ name: pod.name, namespace: pod.namespace, ip: e.ip, labels: { ...pod.labels }, serviceAccount: pod.serviceAccount, meshed: pod.meshed, ready: e.ready });
      }
    }
    const service: ServiceSpec = {
      name: s.name,
      namespace: s.namespace,
      ...(s.clusterIP ? { clusterIP: s.clusterIP } : {}),
      ports,
      selector: { ...s.selector },
      annotations: { ...s.annotations },
      endpoints: [...endpoints.values()].map((e) => ({ ip: e.ip, ready: e.ready, ...(e.pod ? { pod: e.pod } : {}) })),
    };
    const routes = this.routesOf(key);
    return routes.length ? { service, pods, routes } : { service, pods };
  }

  get serviceKeys(): IterableIterator<string> {
    return this.services.keys();
  }
}
