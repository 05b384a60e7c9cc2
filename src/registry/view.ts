// An immutable, indexed snapshot of the registry, with the lookups the pipelines need.
import type { Endpoint, Pod, RegistryData, Service, ServicePort } from './model.ts';

export interface ServiceTarget {
  readonly service: Service;
  readonly port: ServicePort;
}

export const CLUSTER_DOMAIN = 'cluster.local';

export class RegistryView {
  readonly version: number;
  readonly services: readonly Service[];
  readonly pods: readonly Pod[];
  readonly #byName = new Map<string, Service>(); // "name.namespace"
  readonly #byClusterIP = new Map<string, Service>();
  readonly #podsByIP = new Map<string, Pod>();
  readonly #endpoints = new Map<string, readonly Endpoint[]>(); // "ns/name:port"

  constructor(data: RegistryData, version: number) {
    this.version = version;
    this.services = data.services.map((s) => ({
      name: s.name,
      namespace: s.namespace,
      clusterIP: s.clusterIP,
      ports: s.ports.map((p) => ({ name: p.name, port: p.port, targetPort: p.targetPort ?? p.port })),
      selector: s.selector,
      annotations: s.annotations,
    }));
    this.pods = data.pods;
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
    const { host, port } = splitAuthority(authority);
    if (!host) return undefined;
    const byIP = this.#byClusterIP.get(host);
    const service = byIP ?? this.#byHostName(host.toLowerCase().replace(/\.$/, ''), callerNamespace);
    if (!service) return undefined;
    const servicePort = service.ports.find((p) => p.port === (port ?? 80));
    return servicePort ? { service, port: servicePort } : undefined;
  }

  #byHostName(host: string, callerNamespace: string): Service | undefined {
    const labels = host.split('.');
    if (labels.length === 1) return this.service(labels[0]!, callerNamespace);
    if (labels.length === 2) return this.service(labels[0]!, labels[1]!);
    const suffix = labels.slice(2).join('.');
    if (suffix === 'svc' || suffix === `svc.${CLUSTER_DOMAIN}`) return this.service(labels[0]!, labels[1]!);
    return undefined;
  }

  /** What an original destination ip:port is: a service by its ClusterIP, or a pod by its IP. */
  byAddress(ip: string, port: number): { target: ServiceTarget } | { pod: Pod } | undefined {
    const service = this.#byClusterIP.get(ip);
    if (service) {
      const servicePort = service.ports.find((p) => p.port === port);
      return servicePort ? { target: { service, port: servicePort } } : undefined;
    }
    const pod = this.#podsByIP.get(ip);
    return pod ? { pod } : undefined;
  }

  podByIP(ip: string): Pod | undefined {
    return this.#podsByIP.get(ip);
  }

  /** A service port's endpoints: the namespace's ready pods whose labels match the selector. */
  endpoints(target: ServiceTarget): readonly Endpoint[] {
    const key = `${target.service.namespace}/${target.service.name}:${target.port.port}`;
    let eps = this.#endpoints.get(key);
    if (!eps) {
      const { service, port } = target;
      const selector = Object.entries(service.selector);
      eps =
        selector.length === 0
          ? []
          : this.pods
              .filter((p) => p.ready && p.namespace === service.namespace && selector.every(([k, v]) => p.labels[k] === v))
              .map((pod) => ({ key: `${pod.ip}:${port.targetPort}`, ip: pod.ip, port: port.targetPort, pod }));
      this.#endpoints.set(key, eps);
    }
    return eps;
  }
}

export function splitAuthority(authority: string): { host: string; port: number | undefined } {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(authority) ?? /^([^:]*)(?::(\d+))?$/.exec(authority);
  if (!m) return { host: authority, port: undefined };
  return { host: m[1] ?? '', port: m[2] !== undefined ? Number(m[2]) : undefined };
}
