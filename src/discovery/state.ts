// What the sidecar keeps of the discovery stream, without the socket: the cluster's compact index
// (every service's key, ClusterIP, ports and endpoint IPs), the details (endpoints, pods, routes,
// policy annotations) of the services it is subscribed to, and the subscriptions themselves. A
// service is subscribed on first use (the registry's on-demand source: Registry.ensure*, or a
// lookup miss) and dropped after `idleMs` unused (`sweep`), so the sidecar's memory follows what
// it calls, not the size of the cluster (istio/istio#7912). The services that select this pod stay
// subscribed (the inbound side names them in metrics). Each message applied publishes the details
// to the registry. What is to be told to the control plane (subscribe, unsubscribe, the version
// applied) waits here until the connection asks for it (`hello`, `ack`); `onOutgoing` says there is some.
import type { Registry, OnDemandSource } from '../registry/registry.ts';
import type { PodSpec, RegistryData, Service } from '../registry/model.ts';
import type { Logger } from '../log/log.ts';
import { parseServiceDetail, type CheckedServiceDetail, type ClientMessage, type IndexEntry, type ParsedServerMessage } from './protocol.ts';
import { routeKey, type MeshRoute } from '../route/model.ts';

export interface DiscoveryStateOptions {
  readonly registry: Registry;
  /** This pod's IP: the services that select it stay subscribed. */
  readonly podIP: string;
  readonly log: Logger;
  /** A subscription unused this long is dropped by `sweep`. */
  readonly idleMs: number;
  /** There is something to tell the control plane (call `ack`). */
  readonly onOutgoing: () => void;
  readonly now?: () => number;
}

interface IndexRecord {
  readonly key: string;
  readonly clusterIP: string | null;
  readonly ports: readonly number[];
  readonly ips: readonly string[];
}

export class DiscoveryState {
  /** The last version applied. */
  version = 0;
  // The index: every service, compact. The address maps point at the shared records.
  readonly #index = new Map<string, IndexRecord>();
  readonly #byClusterIP = new Map<string, IndexRecord>();
  readonly #byPodIP = new Map<string, IndexRecord | IndexRecord[]>();
  // The details of subscribed services, and what is wanted.
  readonly #details = new Map<string, CheckedServiceDetail>();
  readonly #wanted = new Set<string>();
  readonly #pinned = new Set<string>(); // the services that select this pod
  readonly #lastUsed = new Map<string, number>();
  #usedSince = new Set<Service>();
  readonly #waiters = new Map<string, Set<() => void>>();
  // What the control plane is yet to be told.
  readonly #toSubscribe = new Set<string>();
  readonly #toUnsubscribe = new Set<string>();
  readonly #o: DiscoveryStateOptions;
  readonly #now: () => number;

  constructor(o: DiscoveryStateOptions) {
    this.#o = o;
    this.#now = o.now ?? Date.now;
  }

  get indexedServices(): number {
    return this.#index.size;
  }
  get subscriptions(): number {
    return this.#wanted.size;
  }

  /** The registry's on-demand source: lookups by address, loading services on first use. */
  readonly source: OnDemandSource = {
    servicesAt: (ip, port) => {
      const svc = this.#byClusterIP.get(ip);
      if (svc) return svc.ports.includes(port) ? [svc.key] : [];
      return this.#podServices(ip).map((r) => r.key);
    },
    has: (namespace, name) => this.#index.has(`${namespace}/${name}`),
    load: (keys, timeoutMs) => {
      const pending: Promise<void>[] = [];
      for (const key of keys) {
        if (!this.#index.has(key)) continue;
        if (!this.#wanted.has(key)) this.#subscribe(key);
        if (this.#details.has(key)) continue;
        pending.push(
          new Promise<void>((resolve) => {
            let set = this.#waiters.get(key);
            if (!set) this.#waiters.set(key, (set = new Set()));
            set.add(resolve);
          }),
        );
      }
      if (pending.length === 0) return Promise.resolve();
      return new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, timeoutMs);
        void Promise.all(pending).then(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    },
    used: (service) => {
      this.#usedSince.add(service);
    },
  };

  /** A new connection's hello: every service wanted (the pending subscriptions go with it). */
  hello(): string[] {
    this.#toSubscribe.clear();
    return [...this.#wanted];
  }

  /** The ack of the version applied, with the subscriptions and drops not told yet. */
  ack(): ClientMessage {
    const m: ClientMessage = { type: 'ack', version: this.version };
    if (this.#toSubscribe.size) m.subscribe = [...this.#toSubscribe];
    if (this.#toUnsubscribe.size) m.unsubscribe = [...this.#toUnsubscribe];
    this.#toSubscribe.clear();
    this.#toUnsubscribe.clear();
    return m;
  }

  /** Applies one checked message from the control plane and publishes the result to the registry. */
  apply(m: ParsedServerMessage): void {
    const changed = new Set<string>();
    const take = (services: Record<string, unknown>): void => {
      for (const [key, d] of Object.entries(services)) {
        if (!this.#wanted.has(key)) continue;
        changed.add(key);
        if (d === null) {
          this.#details.delete(key);
          continue;
        }
        try {
          const detail = parseServiceDetail(d, key);
          for (const problem of detail.routeProblems) this.#o.log.error({ code: 'TSMESH_DISCOVERY_INVALID', service: key, err: problem }, 'discovery: an invalid route is left out');
          this.#details.set(key, detail);
          this.#subscribeBackends(detail);
        } catch (err) {
          this.#o.log.error({ code: 'TSMESH_DISCOVERY_INVALID', service: key, err: (err as Error).message }, 'discovery: invalid service details; keeping the previous ones');
        }
      }
    };
    if (m.type === 'snapshot') {
      this.#index.clear();
      this.#byClusterIP.clear();
      this.#byPodIP.clear();
      for (const e of m.index) this.#addToIndex(e);
      for (const key of [...this.#details.keys()]) if (!(key in m.services)) this.#details.delete(key);
      take(m.services);
      // Asked for while connecting, or gone from the index: ask again / stop waiting.
      for (const key of this.#wanted) if (!(key in m.services) && this.#index.has(key)) this.#toSubscribe.add(key);
      this.#o.log.info({ stream: m.stream, version: m.version, services: m.index.length, subscribed: this.#details.size }, 'discovery: snapshot applied');
    } else {
      for (const key of m.index?.delete ?? []) this.#removeFromIndex(key);
      for (const e of m.index?.set ?? []) this.#addToIndex(e);
      take(m.services ?? {});
    }
    this.version = m.version;
    this.#pinOwnServices();
    this.#publish();
    for (const key of changed) this.#settle(key);
    // Waiting for a service the index no longer has: nothing will come.
    for (const key of [...this.#waiters.keys()]) if (!this.#index.has(key)) this.#settle(key);
  }

  /** Drops the subscriptions unused for idleMs (not this pod's own, not one being waited for). */
  sweep(): void {
    const now = this.#now();
    for (const s of this.#usedSince) this.#lastUsed.set(`${s.namespace}/${s.name}`, now);
    this.#usedSince = new Set();
    let dropped = 0;
    for (const key of this.#wanted) {
      if (this.#pinned.has(key) || this.#waiters.has(key)) continue;
      if (now - (this.#lastUsed.get(key) ?? 0) < this.#o.idleMs) continue;
      this.#wanted.delete(key);
      this.#lastUsed.delete(key);
      this.#toSubscribe.delete(key);
      this.#toUnsubscribe.add(key);
      if (this.#details.delete(key)) dropped++;
    }
    if (this.#toUnsubscribe.size) {
      this.#o.log.debug({ dropped: [...this.#toUnsubscribe] }, 'discovery: dropping subscriptions unused for a while');
      if (dropped) this.#publish();
      this.#o.onOutgoing();
    }
  }

  /** Stops every wait for details (closing: nothing more will come). */
  settleAll(): void {
    for (const key of [...this.#waiters.keys()]) this.#settle(key);
  }

  // ---- the index ----------------------------------------------------------------------
  #addToIndex(e: IndexEntry): void {
    this.#removeFromIndex(e[0]);
    const r: IndexRecord = { key: e[0], clusterIP: e[1], ports: e[2], ips: e[3] };
    this.#index.set(r.key, r);
    if (r.clusterIP) this.#byClusterIP.set(r.clusterIP, r);
    for (const ip of r.ips) {
      const prev = this.#byPodIP.get(ip);
      this.#byPodIP.set(ip, prev === undefined ? r : Array.isArray(prev) ? [...prev, r] : [prev, r]);
    }
  }

  #removeFromIndex(key: string): void {
    const r = this.#index.get(key);
    if (!r) return;
    this.#index.delete(key);
    if (r.clusterIP && this.#byClusterIP.get(r.clusterIP) === r) this.#byClusterIP.delete(r.clusterIP);
    for (const ip of r.ips) {
      const prev = this.#byPodIP.get(ip);
      if (prev === r) this.#byPodIP.delete(ip);
      else if (Array.isArray(prev)) {
        const rest = prev.filter((x) => x !== r);
        this.#byPodIP.set(ip, rest.length === 1 ? rest[0]! : rest);
      }
    }
  }

  #podServices(ip: string): IndexRecord[] {
    const r = this.#byPodIP.get(ip);
    return r === undefined ? [] : Array.isArray(r) ? r : [r];
  }

  /** The services that select this pod: always subscribed (inbound metrics name them). */
  #pinOwnServices(): void {
    const own = new Set(this.#podServices(this.#o.podIP).map((r) => r.key));
    for (const k of this.#pinned) if (!own.has(k)) this.#pinned.delete(k);
    for (const k of own) {
      this.#pinned.add(k);
      if (!this.#wanted.has(k)) this.#subscribe(k);
    }
  }

  // ---- subscriptions --------------------------------------------------------------------
  #subscribe(key: string): void {
    this.#wanted.add(key);
    this.#lastUsed.set(key, this.#now());
    this.#toUnsubscribe.delete(key);
    this.#toSubscribe.add(key);
    this.#o.onOutgoing();
  }

  /** The backends of a subscribed service's routes are subscribed too: its first routed request finds them loaded. */
  #subscribeBackends(d: CheckedServiceDetail): void {
    for (const r of d.routes) {
      for (const rule of r.rules) {
        for (const b of [...rule.backends, ...rule.mirrors.map((m) => m.backend)]) {
          const key = `${b.namespace}/${b.name}`;
          if (this.#index.has(key) && !this.#wanted.has(key)) this.#subscribe(key);
        }
      }
    }
  }

  #settle(key: string): void {
    const ws = this.#waiters.get(key);
    if (!ws) return;
    this.#waiters.delete(key);
    for (const w of ws) w();
  }

  // ---- the registry view ----------------------------------------------------------------
  #publish(): void {
    const services: CheckedServiceDetail['service'][] = [];
    const pods = new Map<string, PodSpec>();
    const routes = new Map<string, MeshRoute>(); // a route with two parents comes with both
    for (const d of this.#details.values()) {
      services.push(d.service);
      for (const p of d.pods) pods.set(`${p.namespace}/${p.name}/${p.ip}`, p); // a dual-stack pod: one record per address
      for (const r of d.routes) routes.set(routeKey(r), r);
    }
    const data: RegistryData = { services, pods: [...pods.values()], routes: [...routes.values()] };
    this.#o.registry.replace(data);
  }
}
