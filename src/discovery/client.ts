// The sidecar's registry source in Kubernetes: the control plane's discovery stream
// (./protocol.ts). It holds the cluster's compact index (every service's key, ClusterIP, ports
// and endpoint IPs) and the details (endpoints, pods, policy annotations) of the services this
// sidecar uses only: a service is subscribed on first use (Registry.ensure*, or a lookup miss)
// and dropped after `idleMs` unused, so the sidecar's memory follows what it calls, not the
// size of the cluster (istio/istio#7912). The services that select this pod stay subscribed
// (the inbound side names them in metrics).
//
// The connection: a WebSocket over TLS to the control plane, the sidecar's mesh certificate as
// client certificate, the server verified against the mesh trust anchors and its name. It
// reconnects with exponential backoff and full jitter; while it is away the last good view stays
// in force (calls keep working). A new connection starts with a snapshot, so a sidecar catches
// up whatever it missed. The registry is loaded (the sidecar ready) after the first snapshot.
import type { LookupFunction } from 'node:net';
import { WebSocket } from 'ws';
import type { Registry, OnDemandSource } from '../registry/registry.ts';
import type { PodSpec, RegistryData, Service } from '../registry/model.ts';
import type { IdentityProvider } from '../identity/index.ts';
import type { Logger } from '../log/log.ts';
import { DISCOVERY_PATH, DISCOVERY_PROTOCOL, parseServiceDetail, serverMessageSchema, type CheckedServiceDetail, type ClientMessage, type IndexEntry } from './protocol.ts';
import { routeKey, type MeshRoute } from '../route/model.ts';

export const DISCOVERY_CLIENT_DEFAULTS = {
  backoffInitialMs: 250,
  backoffMaxMs: 15_000,
  /** A subscription unused this long is dropped (the next call subscribes again). */
  idleMs: 5 * 60_000,
  /** The server pings every 15 s; this long without a ping or a message means the link is dead. */
  heartbeatTimeoutMs: 45_000,
  handshakeTimeoutMs: 10_000,
} as const;

export interface DiscoveryClientOptions {
  /** The control plane's base URL (TSMESH_CONTROL_PLANE), https://. */
  readonly url: string;
  /** The sidecar's identity: its certificate is the client certificate, its anchors verify the server. */
  readonly identity: IdentityProvider;
  readonly registry: Registry;
  readonly pod: { readonly name: string; readonly namespace: string; readonly ip: string };
  readonly log: Logger;
  /** Name resolution for the control plane's host (tests map the Service name to loopback). */
  readonly lookup?: LookupFunction;
  readonly backoffInitialMs?: number;
  readonly backoffMaxMs?: number;
  readonly idleMs?: number;
  readonly heartbeatTimeoutMs?: number;
  readonly handshakeTimeoutMs?: number;
  /** 0 <= random() < 1, for jitter. */
  readonly random?: () => number;
}

export interface DiscoveryStatus {
  readonly connected: boolean;
  readonly stream: string | undefined;
  readonly version: number;
  readonly snapshots: number;
  readonly reconnects: number;
  readonly indexedServices: number;
  readonly subscriptions: number;
  readonly lastError: string | undefined;
}

export interface DiscoveryClient {
  status(): DiscoveryStatus;
  close(): void;
}

interface IndexRecord {
  readonly key: string;
  readonly clusterIP: string | null;
  readonly ports: readonly number[];
  readonly ips: readonly string[];
}

export function startDiscoveryClient(o: DiscoveryClientOptions): DiscoveryClient {
  const log = o.log;
  const random = o.random ?? Math.random;
  const backoffInitialMs = o.backoffInitialMs ?? DISCOVERY_CLIENT_DEFAULTS.backoffInitialMs;
  const backoffMaxMs = o.backoffMaxMs ?? DISCOVERY_CLIENT_DEFAULTS.backoffMaxMs;
  const idleMs = o.idleMs ?? DISCOVERY_CLIENT_DEFAULTS.idleMs;
  const heartbeatTimeoutMs = o.heartbeatTimeoutMs ?? DISCOVERY_CLIENT_DEFAULTS.heartbeatTimeoutMs;
  const url = new URL(DISCOVERY_PATH, o.url.replace(/^http/, 'ws'));

  // The index: every service, compact. The address maps point at the shared records.
  const index = new Map<string, IndexRecord>();
  const byClusterIP = new Map<string, IndexRecord>();
  const byPodIP = new Map<string, IndexRecord | IndexRecord[]>();
  // The details of subscribed services, and what is wanted.
  const details = new Map<string, CheckedServiceDetail>();
  const wanted = new Set<string>();
  const pinned = new Set<string>(); // the services that select this pod
  const lastUsed = new Map<string, number>();
  let usedSince = new Set<Service>();
  const waiters = new Map<string, Set<() => void>>();

  let ws: WebSocket | undefined;
  let streamId: string | undefined;
  let version = 0;
  let synced = false; // a snapshot arrived on this connection
  let snapshots = 0;
  let reconnects = 0;
  let failures = 0;
  let lastError: string | undefined;
  let closed = false;
  let reconnectTimer: NodeJS.Timeout | undefined;
  let heartbeat: NodeJS.Timeout | undefined;
  let ackScheduled = false;
  const toSubscribe = new Set<string>();
  const toUnsubscribe = new Set<string>();

  // ---- the index ----------------------------------------------------------------------
  const addToIndex = (e: IndexEntry): void => {
    removeFromIndex(e[0]);
    const r: IndexRecord = { key: e[0], clusterIP: e[1], ports: e[2], ips: e[3] };
    index.set(r.key, r);
    if (r.clusterIP) byClusterIP.set(r.clusterIP, r);
    for (const ip of r.ips) {
      const prev = byPodIP.get(ip);
      byPodIP.set(ip, prev === undefined ? r : Array.isArray(prev) ? [...prev, r] : [prev, r]);
    }
  };
  const removeFromIndex = (key: string): void => {
    const r = index.get(key);
    if (!r) return;
    index.delete(key);
    if (r.clusterIP && byClusterIP.get(r.clusterIP) === r) byClusterIP.delete(r.clusterIP);
    for (const ip of r.ips) {
      const prev = byPodIP.get(ip);
      if (prev === r) byPodIP.delete(ip);
      else if (Array.isArray(prev)) {
        const rest = prev.filter((x) => x !== r);
        byPodIP.set(ip, rest.length === 1 ? rest[0]! : rest);
      }
    }
  };
  const podServices = (ip: string): IndexRecord[] => {
    const r = byPodIP.get(ip);
    return r === undefined ? [] : Array.isArray(r) ? r : [r];
  };
  /** The services that select this pod: always subscribed (inbound metrics name them). */
  const pinOwnServices = (): void => {
    const own = new Set(podServices(o.pod.ip).map((r) => r.key));
    for (const k of pinned) if (!own.has(k)) pinned.delete(k);
    for (const k of own) {
      pinned.add(k);
      if (!wanted.has(k)) subscribe(k);
    }
  };

  // ---- the registry view ----------------------------------------------------------------
  const publish = (): void => {
    const services: CheckedServiceDetail['service'][] = [];
    const pods = new Map<string, PodSpec>();
    const routes = new Map<string, MeshRoute>(); // a route with two parents comes with both
    for (const d of details.values()) {
      services.push(d.service);
      for (const p of d.pods) pods.set(`${p.namespace}/${p.name}/${p.ip}`, p); // a dual-stack pod: one record per address
      for (const r of d.routes) routes.set(routeKey(r), r);
    }
    const data: RegistryData = { services, pods: [...pods.values()], routes: [...routes.values()] };
    o.registry.replace(data);
  };

  /** The backends of a subscribed service's routes are subscribed too: its first routed request finds them loaded. */
  const subscribeBackends = (d: CheckedServiceDetail): void => {
    for (const r of d.routes) {
      for (const rule of r.rules) {
        for (const b of [...rule.backends, ...rule.mirrors.map((m) => m.backend)]) {
          const key = `${b.namespace}/${b.name}`;
          if (index.has(key) && !wanted.has(key)) subscribe(key);
        }
      }
    }
  };

  const settle = (key: string): void => {
    const ws = waiters.get(key);
    if (!ws) return;
    waiters.delete(key);
    for (const w of ws) w();
  };

  // ---- subscriptions --------------------------------------------------------------------
  const subscribe = (key: string): void => {
    wanted.add(key);
    lastUsed.set(key, Date.now());
    toUnsubscribe.delete(key);
    toSubscribe.add(key);
    scheduleAck();
  };

  const source: OnDemandSource = {
    servicesAt(ip, port) {
      const svc = byClusterIP.get(ip);
      if (svc) return svc.ports.includes(port) ? [svc.key] : [];
      return podServices(ip).map((r) => r.key);
    },
    has(namespace, name) {
      return index.has(`${namespace}/${name}`);
    },
    load(keys, timeoutMs) {
      const pending: Promise<void>[] = [];
      for (const key of keys) {
        if (!index.has(key)) continue;
        if (!wanted.has(key)) subscribe(key);
        if (details.has(key)) continue;
        pending.push(
          new Promise<void>((resolve) => {
            let set = waiters.get(key);
            if (!set) waiters.set(key, (set = new Set()));
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
    used(service) {
      usedSince.add(service);
    },
  };
  o.registry.setOnDemandSource(source);

  // Drop what has not been used for idleMs.
  const sweep = setInterval(() => {
    const now = Date.now();
    for (const s of usedSince) lastUsed.set(`${s.namespace}/${s.name}`, now);
    usedSince = new Set();
    let dropped = 0;
    for (const key of wanted) {
      if (pinned.has(key) || waiters.has(key)) continue;
      if (now - (lastUsed.get(key) ?? 0) < idleMs) continue;
      wanted.delete(key);
      lastUsed.delete(key);
      toSubscribe.delete(key);
      toUnsubscribe.add(key);
      if (details.delete(key)) dropped++;
    }
    if (toUnsubscribe.size) {
      log.debug({ dropped: [...toUnsubscribe] }, 'discovery: dropping subscriptions unused for a while');
      if (dropped) publish();
      scheduleAck();
    }
  }, Math.max(50, Math.min(60_000, idleMs / 4)));
  sweep.unref();

  // ---- the connection -------------------------------------------------------------------
  const send = (m: ClientMessage): void => {
    if (ws?.readyState === WebSocket.OPEN) ws.send(JSON.stringify(m));
  };

  function scheduleAck(): void {
    if (ackScheduled || !synced) return;
    ackScheduled = true;
    setImmediate(() => {
      ackScheduled = false;
      if (!synced) return;
      const m: ClientMessage = { type: 'ack', version };
      if (toSubscribe.size) m.subscribe = [...toSubscribe];
      if (toUnsubscribe.size) m.unsubscribe = [...toUnsubscribe];
      toSubscribe.clear();
      toUnsubscribe.clear();
      send(m);
    });
  }

  const armHeartbeat = (socket: WebSocket): void => {
    clearTimeout(heartbeat);
    heartbeat = setTimeout(() => {
      log.warn({ code: 'TSMESH_DISCOVERY_SILENT', silentMs: heartbeatTimeoutMs }, 'discovery: nothing from the control plane for too long; reconnecting');
      socket.terminate();
    }, heartbeatTimeoutMs);
  };

  const scheduleReconnect = (): void => {
    if (closed || reconnectTimer) return;
    failures++;
    // Full jitter: sidecars that lost the same control plane do not come back in step.
    const ceiling = Math.min(backoffMaxMs, backoffInitialMs * 2 ** Math.min(failures - 1, 20));
    const wait = Math.round(random() * ceiling);
    log.debug({ inMs: wait, failures }, 'discovery: reconnecting');
    reconnectTimer = setTimeout(() => {
      reconnectTimer = undefined;
      reconnects++;
      connect();
    }, wait);
  };

  const apply = (raw: unknown): void => {
    const parsed = serverMessageSchema.safeParse(raw);
    if (!parsed.success) throw new Error(`not a discovery message: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
    const m = parsed.data;
    const changed = new Set<string>();
    const take = (services: Record<string, unknown>): void => {
      for (const [key, d] of Object.entries(services)) {
        if (!wanted.has(key)) continue;
        changed.add(key);
        if (d === null) {
          details.delete(key);
          continue;
        }
        try {
          const detail = parseServiceDetail(d, key);
          for (const problem of detail.routeProblems) log.error({ code: 'TSMESH_DISCOVERY_INVALID', service: key, err: problem }, 'discovery: an invalid route is left out');
          details.set(key, detail);
          subscribeBackends(detail);
        } catch (err) {
          log.error({ code: 'TSMESH_DISCOVERY_INVALID', service: key, err: (err as Error).message }, 'discovery: invalid service details; keeping the previous ones');
        }
      }
    };
    if (m.type === 'snapshot') {
      index.clear();
      byClusterIP.clear();
      byPodIP.clear();
      for (const e of m.index) addToIndex(e);
      for (const key of [...details.keys()]) if (!(key in m.services)) details.delete(key);
      take(m.services);
      streamId = m.stream;
      synced = true;
      failures = 0;
      snapshots++;
      // Asked for while connecting, or gone from the index: ask again / stop waiting.
      for (const key of wanted) if (!(key in m.services) && index.has(key)) toSubscribe.add(key);
      log.info({ stream: m.stream, version: m.version, services: m.index.length, subscribed: details.size }, 'discovery: snapshot applied');
    } else {
      for (const key of m.index?.delete ?? []) removeFromIndex(key);
      for (const e of m.index?.set ?? []) addToIndex(e);
      take(m.services ?? {});
    }
    version = m.version;
    pinOwnServices();
    publish();
    for (const key of changed) settle(key);
    // Waiting for a service the index no longer has: nothing will come.
    for (const key of [...waiters.keys()]) if (!index.has(key)) settle(key);
    scheduleAck();
  };

  function connect(): void {
    if (closed) return;
    let id;
    try {
      id = o.identity.current();
    } catch {
      void o.identity.ready.then(connect, () => undefined);
      return;
    }
    synced = false;
    const socket = new WebSocket(url, DISCOVERY_PROTOCOL, {
      ca: id.trustAnchorsPem,
      cert: id.certChainPem,
      key: id.keyPem,
      handshakeTimeout: o.handshakeTimeoutMs ?? DISCOVERY_CLIENT_DEFAULTS.handshakeTimeoutMs,
      perMessageDeflate: false,
      maxPayload: 512 * 1024 * 1024,
      ...(o.lookup ? { lookup: o.lookup } : {}),
    });
    ws = socket;
    socket.on('open', () => {
      armHeartbeat(socket);
      log.info({ url: url.origin }, 'discovery: connected to the control plane');
      socket.send(JSON.stringify({ type: 'hello', pod: o.pod, subscribe: [...wanted] } satisfies ClientMessage));
      toSubscribe.clear();
    });
    socket.on('ping', () => armHeartbeat(socket));
    socket.on('message', (data, isBinary) => {
      armHeartbeat(socket);
      try {
        if (isBinary) throw new Error('a binary frame');
        apply(JSON.parse(data.toString()));
      } catch (err) {
        lastError = (err as Error).message;
        log.error({ code: 'TSMESH_DISCOVERY_INVALID', err: lastError }, 'discovery: bad message from the control plane; reconnecting (the last good view stays)');
        socket.terminate();
      }
    });
    socket.on('unexpected-response', (_req, res) => {
      lastError = `the control plane answered ${res.statusCode} to the discovery upgrade`;
      log.warn({ code: 'TSMESH_DISCOVERY_REFUSED', status: res.statusCode }, `discovery: ${lastError}`);
      res.resume();
      socket.terminate();
    });
    socket.on('error', (err: Error & { code?: string }) => {
      lastError = err.message;
      log.warn({ code: 'TSMESH_DISCOVERY_UNREACHABLE', err: err.message, errCode: err.code }, 'discovery: cannot reach the control plane; keeping the last good view');
    });
    socket.on('close', (code, reason) => {
      clearTimeout(heartbeat);
      if (ws === socket) {
        ws = undefined;
        synced = false;
      }
      if (closed) return;
      log.info({ code, reason: reason.toString() || undefined, stream: streamId }, 'discovery: stream closed; keeping the last good view');
      scheduleReconnect();
    });
  }

  connect();

  return {
    status: () => ({
      connected: synced,
      stream: streamId,
      version,
      snapshots,
      reconnects,
      indexedServices: index.size,
      subscriptions: wanted.size,
      lastError,
    }),
    close() {
      closed = true;
      clearTimeout(reconnectTimer);
      clearTimeout(heartbeat);
      clearInterval(sweep);
      for (const key of [...waiters.keys()]) settle(key);
      o.registry.setOnDemandSource(undefined);
      ws?.terminate();
    },
  };
}
