// An immutable, indexed snapshot of the registry, with the lookups the pipelines need.
import type { Endpoint, Pod, RegistryData, Service, ServicePort } from './model.ts';
import type { MeshRoute } from '../route/model.ts';
import { RouteTable } from '../route/table.ts';

/**
 * What a source that loads services on demand (discovery) learns from the lookups: which
 * services are in use, and which lookups found nothing. The file source passes none.
 */
export interface ViewHooks {
  /** A lookup returned this service (keeps its subscription alive). */
  used(service: Service): void;
  /** byAuthority found nothing for this authority. */
  missedAuthority(authority: string, callerNamespace: string): void;
  /** byAddress found nothing for this original destination. */
  missedAddress(ip: string, port: number): void;
}

export interface ServiceTarget {
  readonly service: Service;
  readonly port: ServicePort;
}

export const CLUSTER_DOMAIN = 'cluster.local';

/** Authorities remembered per caller namespace and snapshot (Host headers are the client's: bounded). */
const MAX_AUTHORITIES = 1024;

export class RegistryView {
  readonly version: number;
  readonly services: readonly Service[];
  readonly pods: readonly Pod[];
  readonly routes: readonly MeshRoute[];
  readonly #routeTables = new Map<string, RouteTable | null>(); // "ns/name:port|callerNamespace"
  readonly #byName = new Map<string, Service>(); // "name.namespace"
  readonly #byClusterIP = new Map<string, Service>();
  readonly #podsByIP = new Map<string, Pod>();
  // the lookups of the per-request path, remembered for this snapshot: hits by caller namespace
  // and authority (bounded), endpoints by the ServicePort object
  readonly #authorities = new Map<string, Map<string, ServiceTarget>>();
  readonly #endpointsOf = new WeakMap<ServicePort, readonly Endpoint[]>();
  readonly #hooks: ViewHooks | undefined;

  constructor(data: RegistryData, version: number, hooks?: ViewHooks) {
    this.version = version;
    this.#hooks = hooks;
    this.services = data.services.map((s) => ({
      name: s.name,
      namespace: s.namespace,
      clusterIP: s.clusterIP,
      ports: s.ports.map((p) => ({ name: p.name, port: p.port, targetPort: p.targetPort ?? p.port })),
      selector: s.selector,
      annotations: s.annotations,
      endpoints: s.endpoints?.map((e) => ({ ip: e.ip, ready: e.ready, pod: e.pod })),
    }));
    this.pods = data.pods;
    this.routes = data.routes ?? [];
    for (const s of this.services) {
      this.#byName.set(`${s.name}.${s.namespace}`, s);
      if (s.clusterIP) this.#byClusterIP.set(s.clusterIP, s);
    }
    for (const p of this.pods) this.#podsByIP.set(p.ip, p);
  }

  static empty(): RegistryView {
    return new RegistryView({ services: [], pods: [] }, 0);
  }

  service(name: string, namespace: string): Service | undefined {
    return this.#byName.get(`${name}.${namespace}`);
  }

  /**
   * The service an HTTP authority names, as Kubernetes DNS resolves it from a pod in
   * `callerNamespace`: `name`, `name.ns`, `name.ns.svc`, `name.ns.svc.cluster.local`, or a
   * ClusterIP; the port defaults to 80.
   */
  byAuthority(authority: string, callerNamespace: string): ServiceTarget | undefined {
    let known = this.#authorities.get(callerNamespace);
    const hit = known?.get(authority);
    if (hit !== undefined) {
      this.#hooks?.used(hit.service);
      return hit;
    }
    const target = this.#byAuthority(authority, callerNamespace);
    if (target !== undefined) {
      if (known === undefined) this.#authorities.set(callerNamespace, (known = new Map()));
      if (known.size < MAX_AUTHORITIES) known.set(authority, target);
    }
    return target;
  }

  #byAuthority(authority: string, callerNamespace: string): ServiceTarget | undefined {
    const { host, port } = splitAuthority(authority);
    if (!host) return undefined;
    const byIP = this.#byClusterIP.get(host);
    const named = byIP ? undefined : serviceNameOf(host, callerNamespace);
    const service = byIP ?? (named && this.service(named.name, named.namespace));
    const servicePort = service?.ports.find((p) => p.port === (port ?? 80));
    if (!service || !servicePort) {
      this.#hooks?.missedAuthority(authority, callerNamespace);
      return undefined;
    }
    this.#hooks?.used(service);
    return { service, port: servicePort };
  }

  /**
   * The routes that apply to requests from a pod in `callerNamespace` to this service port,
   * in precedence order (src/route/table.ts); undefined when none does.
   */
  routeTable(target: ServiceTarget, callerNamespace: string): RouteTable | undefined {
    if (this.routes.length === 0) return undefined;
    const key = `${target.service.namespace}/${target.service.name}:${target.port.port}|${callerNamespace}`;
    let table = this.#routeTables.get(key);
    if (table === undefined) {
      table = RouteTable.build(this.routes, target.service, target.port.port, callerNamespace) ?? null;
      this.#routeTables.set(key, table);
    }
    return table ?? undefined;
  }

  /** What an original destination ip:port is: a service by its ClusterIP, or a pod by its IP. */
  byAddress(ip: string, port: number): AddressMatch | undefined {
    const service = this.#byClusterIP.get(ip);
    if (service) {
      const servicePort = service.ports.find((p) => p.port === port);
      if (servicePort) this.#hooks?.used(service);
      return servicePort ? { target: { service, port: servicePort } } : undefined;
    }
    const pod = this.#podsByIP.get(ip);
    if (!pod) this.#hooks?.missedAddress(ip, port);
    return pod ? { pod } : undefined;
  }

  podByIP(ip: string): Pod | undefined {
    return this.#podsByIP.get(ip);
  }

  /**
   * A service port's endpoints: the ready addresses of its EndpointSlices when the source gave
   * them (discovery), else the namespace's ready pods whose labels match the selector.
   */
  endpoints(target: ServiceTarget): readonly Endpoint[] {
    this.#hooks?.used(target.service);
    const known = this.#endpointsOf.get(target.port);
    if (known !== undefined) return known;
    const { service, port } = target;
    const selector = Object.entries(service.selector);
    let eps: readonly Endpoint[];
    if (service.endpoints) {
      eps = service.endpoints
        .filter((e) => e.ready)
        .map((e) => {
          const pod = this.#podsByIP.get(e.ip) ?? addressOnly(e.ip, e.pod, service.namespace);
          return { key: `${e.ip}:${port.targetPort}`, ip: e.ip, port: port.targetPort, pod };
        });
    } else {
      eps =
        selector.length === 0
          ? []
          : this.pods
              .filter((p) => p.ready && p.namespace === service.namespace && selector.every(([k, v]) => p.labels[k] === v))
              .map((pod) => ({ key: `${pod.ip}:${port.targetPort}`, ip: pod.ip, port: port.targetPort, pod }));
    }
    this.#endpointsOf.set(target.port, eps);
    return eps;
  }
}

export type AddressMatch = { target: ServiceTarget } | { pod: Pod };

/** An address no pod record describes (an EndpointSlice written by hand, a pod not seen yet): plain, unmeshed. */
function addressOnly(ip: string, name: string | undefined, namespace: string): Pod {
  return { name: name ?? ip, namespace, ip, labels: {}, serviceAccount: 'default', meshed: false, ready: true };
}

/**
 * The service a host name names, as Kubernetes DNS resolves it from a pod in `callerNamespace`:
 * `name`, `name.ns`, `name.ns.svc`, `name.ns.svc.cluster.local`; undefined for any other name.
 */
export function serviceNameOf(host: string, callerNamespace: string): { name: string; namespace: string } | undefined {
  const labels = host.toLowerCase().replace(/\.$/, '').split('.');
  if (labels.length === 1) return { name: labels[0]!, namespace: callerNamespace };
  if (labels.length === 2) return { name: labels[0]!, namespace: labels[1]! };
  const suffix = labels.slice(2).join('.');
  if (suffix === 'svc' || suffix === `svc.${CLUSTER_DOMAIN}`) return { name: labels[0]!, namespace: labels[1]! };
  return undefined;
}

export function splitAuthority(authority: string): { host: string; port: number | undefined } {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(authority) ?? /^([^:]*)(?::(\d+))?$/.exec(authority);
  if (!m) return { host: authority, port: undefined };
  return { host: m[1] ?? '', port: m[2] !== undefined ? Number(m[2]) : undefined };
}
