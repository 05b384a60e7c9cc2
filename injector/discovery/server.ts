// The discovery stream's server side (protocol: src/discovery/protocol.ts). One WebSocket per
// sidecar, authenticated by its mesh certificate (TLS client certificate verified against the
// mesh trust anchors by the control plane's TLS server; its SPIFFE ID names the caller).
//
//   connect -> hello -> snapshot (once the informers have listed: never an empty registry from
//   a control plane still starting) -> updates, versioned -> the sidecar acks versions.
//
// Pushes are coalesced: changes mark services dirty; a push goes out `pushDelayMs` after the
// first change, and at most one every `minPushIntervalMs`, carrying everything since. Every
// sidecar gets the index changes; the details of a service go only to its subscribers. A
// sidecar that cannot keep up (its socket buffer over `maxBufferedBytes`) gets no more
// updates; when its buffer has drained it gets one snapshot instead (memory here stays bounded).
import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { WebSocketServer, type WebSocket } from 'ws';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { Logger } from '../../src/log/log.ts';
import { clientMessageSchema, DISCOVERY_PROTOCOL, type ClientMessage } from '../../src/discovery/protocol.ts';
import { parseSpiffeId } from '../../src/identity/spiffe.ts';
import type { ClusterState } from './cluster.ts';

export const DISCOVERY_SERVER_DEFAULTS = {
  pushDelayMs: 10,
  minPushIntervalMs: 100,
  pingIntervalMs: 15_000,
  helloTimeoutMs: 10_000,
  maxBufferedBytes: 16 * 1024 * 1024,
  maxSubscriptions: 10_000,
  /** Snapshots being written at once; the others wait (a reconnect storm costs bounded memory). */
  concurrentSnapshots: 16,
} as const;

export interface DiscoveryServerOptions {
  readonly cluster: ClusterState;
  /** Whether the informers have listed everything once. */
  readonly synced: () => boolean;
  readonly trustDomain: string;
  readonly log: Logger;
  readonly registry?: Registry;
  readonly pushDelayMs?: number;
  readonly minPushIntervalMs?: number;
  readonly pingIntervalMs?: number;
  readonly helloTimeoutMs?: number;
  readonly maxBufferedBytes?: number;
  readonly concurrentSnapshots?: number;
}

interface Session {
  readonly id: string;
  readonly ws: WebSocket;
  readonly spiffeId: string;
  readonly address: string | undefined;
  readonly connectedAt: number;
  pod: { name: string; namespace: string; ip: string } | undefined;
  readonly subscribed: Set<string>;
  /** The version of the last message sent (0: no snapshot yet). */
  sent: number;
  acked: number;
  ackedAt: number | undefined;
  /** When the oldest push not acknowledged yet went out. */
  unackedSince: number | undefined;
  /** Missed updates (slow reader): gets a snapshot once its buffer drains. */
  behind: boolean;
  alive: boolean;
  bytes: number;
  messages: number;
  expiry: NodeJS.Timeout | undefined;
  /** Set while a snapshot to it is being written: releases its slot (once). */
  snapshotDone: (() => void) | undefined;
}

export interface SidecarInfo {
  readonly stream: string;
  readonly spiffeId: string;
  readonly pod: { name: string; namespace: string; ip: string } | undefined;
  readonly address: string | undefined;
  readonly connectedAt: string;
  readonly version: number;
  readonly acked: number;
  readonly upToDate: boolean;
  readonly behind: boolean;
  readonly subscriptions: number;
  readonly bytesSent: number;
  readonly messagesSent: number;
}

export class DiscoveryServer {
  readonly #o: DiscoveryServerOptions;
  readonly #log: Logger;
  readonly #wss: WebSocketServer;
  readonly #sessions = new Set<Session>();
  #version = 0;
  /** What every sidecar's index holds now: key -> entry JSON. */
  readonly #indexed = new Map<string, string>();
  /** "[e1,e2,...]" encoded once per version and shared by every snapshot (no copy per sidecar). */
  #indexBuffer: Buffer | undefined;
  readonly #detailJson = new Map<string, string>();
  #pushTimer: NodeJS.Timeout | undefined;
  readonly #snapshotQueue = new Set<Session>();
  #snapshotsWriting = 0;
  #lastPush = 0;
  readonly #ping: NodeJS.Timeout;
  readonly #metrics;
  #closed = false;

  constructor(options: DiscoveryServerOptions) {
    this.#o = options;
    this.#log = options.log;
    this.#wss = new WebSocketServer({
      noServer: true,
      perMessageDeflate: false,
      maxPayload: 4 * 1024 * 1024,
      handleProtocols: (protocols) => (protocols.has(DISCOVERY_PROTOCOL) ? DISCOVERY_PROTOCOL : false),
    });
    const registers = options.registry ? [options.registry] : [];
    const sessions = this.#sessions;
    const version = (): number => this.#version;
    const serviceCount = (): number => this.#o.cluster.services.size;
    this.#metrics = {
      streams: new Gauge({
        name: 'tsmesh_discovery_streams',
        help: 'Sidecars connected to this control plane replica, by state: current (acknowledged the last version sent), pending (an update on the way), behind (too slow: a snapshot follows), waiting (no snapshot yet)',
        labelNames: ['state'] as const,
        registers,
        collect() {
          const counts = { current: 0, pending: 0, behind: 0, waiting: 0 };
          for (const s of sessions) counts[stateOf(s)]++;
          for (const [state, n] of Object.entries(counts)) this.set({ state }, n);
        },
      }),
      version: new Gauge({ name: 'tsmesh_discovery_version', help: 'The version of the discovery state this replica pushes (one more per coalesced push)', registers, collect() { this.set(version()); } }),
      services: new Gauge({ name: 'tsmesh_discovery_services', help: 'Services in the discovery index', registers, collect() { this.set(serviceCount()); } }),
      pushes: new Counter({ name: 'tsmesh_discovery_pushes_total', help: 'Coalesced pushes (each a new version)', registers }),
      messages: new Counter({ name: 'tsmesh_discovery_messages_total', help: 'Messages sent to sidecars, by type (snapshot, update)', labelNames: ['type'] as const, registers }),
      bytes: new Counter({ name: 'tsmesh_discovery_sent_bytes_total', help: 'Bytes of discovery messages sent to sidecars', registers }),
      resyncs: new Counter({ name: 'tsmesh_discovery_resyncs_total', help: 'Sidecars too slow to take updates, sent a snapshot instead', registers }),
      refused: new Counter({ name: 'tsmesh_discovery_refused_total', help: 'Discovery connections refused, by reason', labelNames: ['reason'] as const, registers }),
      ackSeconds: new Histogram({ name: 'tsmesh_discovery_ack_seconds', help: 'Time from a push to the sidecar acknowledging it (or a later version)', buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers }),
    };
    this.#ping = setInterval(() => this.#heartbeat(), options.pingIntervalMs ?? DISCOVERY_SERVER_DEFAULTS.pingIntervalMs);
    this.#ping.unref();
  }

  get version(): number {
    return this.#version;
  }

  /** The HTTP upgrade at /v1/discovery: checks the client certificate, then takes the socket. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const tls = req.socket as TLSSocket;
    const refuse = (status: number, reason: string, message: string): void => {
      this.#metrics.refused.inc({ reason });
      this.#log.info({ reason, address: tls.remoteAddress }, `discovery connection refused: ${message}`);
      const body = JSON.stringify({ error: { code: `DISCOVERY_${reason.toUpperCase().replace(/-/g, '_')}`, message } });
      socket.end(`HTTP/1.1 ${status} ${status === 401 ? 'Unauthorized' : status === 403 ? 'Forbidden' : 'Bad Request'}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
    };
    if (this.#closed) return refuse(503, 'closing', 'the control plane is shutting down');
    if (typeof tls.getPeerX509Certificate !== 'function') return refuse(401, 'no-tls', 'discovery needs TLS with a client certificate');
    const cert = tls.getPeerX509Certificate();
    if (!cert) return refuse(401, 'no-certificate', 'no client certificate: connect with the mesh certificate');
    if (!tls.authorized) return refuse(401, 'untrusted-certificate', `the client certificate is not accepted: ${String(tls.authorizationError ?? 'unknown')}`);
    const uris = (cert.subjectAltName ?? '').split(', ').filter((s) => s.startsWith('URI:')).map((s) => s.slice(4));
    const spiffe = uris.map((u) => ({ uri: u, id: parseSpiffeId(u) })).find((x) => x.id);
    if (!spiffe || spiffe.id!.trustDomain !== this.#o.trustDomain) return refuse(403, 'not-a-workload', `the client certificate carries no SPIFFE ID of trust domain ${this.#o.trustDomain}`);
    const notAfter = cert.validToDate.getTime();
    this.#wss.handleUpgrade(req, socket, head, (ws) => this.#accept(ws, spiffe.uri, tls.remoteAddress, notAfter));
  }

  #accept(ws: WebSocket, spiffeId: string, address: string | undefined, notAfter: number): void {
    const s: Session = {
      id: randomBytes(8).toString('hex'),
      ws,
      spiffeId,
      address,
      connectedAt: Date.now(),
      pod: undefined,
      subscribed: new Set(),
      sent: 0,
      acked: 0,
      ackedAt: undefined,
      unackedSince: undefined,
      behind: false,
      alive: true,
      bytes: 0,
      messages: 0,
      expiry: undefined,
      snapshotDone: undefined,
    };
    this.#sessions.add(s);
    // The stream lives no longer than the certificate that opened it: the sidecar comes back with its new one.
    s.expiry = setTimeout(() => ws.close(4001, 'client certificate expired'), Math.min(2 ** 31 - 1, Math.max(0, notAfter - Date.now())));
    const hello = setTimeout(() => ws.close(4000, 'no hello'), this.#o.helloTimeoutMs ?? DISCOVERY_SERVER_DEFAULTS.helloTimeoutMs);
    ws.on('pong', () => (s.alive = true));
    ws.on('message', (data, isBinary) => {
      let m: ClientMessage;
      try {
        if (isBinary) throw new Error('binary frames are not part of the protocol');
        const r = clientMessageSchema.safeParse(JSON.parse(data.toString()));
        if (!r.success) throw new Error(r.error.issues.map((i) => `${i.path.join('.') || '(message)'}: ${i.message}`).join('; '));
        m = r.data;
      } catch (err) {
        this.#log.warn({ stream: s.id, spiffeId, err: (err as Error).message }, 'bad discovery message; closing the stream');
        ws.close(4002, 'bad message');
        return;
      }
      if (m.type === 'hello') {
        if (s.pod) return;
        clearTimeout(hello);
        s.pod = m.pod;
        for (const k of m.subscribe.slice(0, DISCOVERY_SERVER_DEFAULTS.maxSubscriptions)) s.subscribed.add(k);
        this.#log.info({ stream: s.id, spiffeId, pod: `${m.pod.namespace}/${m.pod.name}`, address, subscriptions: s.subscribed.size }, 'sidecar connected to discovery');
        if (this.#o.synced()) this.#snapshot(s);
        return;
      }
      if (!s.pod) {
        ws.close(4002, 'ack before hello');
        return;
      }
      this.#ack(s, m);
    });
    ws.on('close', () => {
      clearTimeout(hello);
      clearTimeout(s.expiry);
      this.#sessions.delete(s);
      this.#snapshotQueue.delete(s);
      s.snapshotDone?.();
      this.#log.info({ stream: s.id, pod: s.pod && `${s.pod.namespace}/${s.pod.name}`, acked: s.acked }, 'sidecar disconnected from discovery');
    });
    ws.on('error', (err) => this.#log.debug({ stream: s.id, err: err.message }, 'discovery stream error'));
  }

  #ack(s: Session, m: Extract<ClientMessage, { type: 'ack' }>): void {
    if (m.version > s.acked && m.version <= s.sent) {
      s.acked = m.version;
      s.ackedAt = Date.now();
      if (s.acked >= s.sent && s.unackedSince !== undefined) {
        this.#metrics.ackSeconds.observe((Date.now() - s.unackedSince) / 1000);
        s.unackedSince = undefined;
      }
    }
    for (const k of m.unsubscribe ?? []) s.subscribed.delete(k);
    const added = (m.subscribe ?? []).filter((k) => !s.subscribed.has(k));
    if (added.length === 0 || s.sent === 0) {
      for (const k of added) s.subscribed.add(k);
      return;
    }
    const room = DISCOVERY_SERVER_DEFAULTS.maxSubscriptions - s.subscribed.size;
    for (const k of added.slice(0, Math.max(0, room))) s.subscribed.add(k);
    // The details at once, at the current version (they are current).
    const parts = added.filter((k) => s.subscribed.has(k)).map((k) => `${JSON.stringify(k)}:${this.#detail(k)}`);
    if (parts.length) this.#send(s, 'update', `{"type":"update","version":${this.#version},"services":{${parts.join(',')}}}`);
  }

  /** Called by the cluster state on every change: schedule a coalesced push. */
  changed(): void {
    if (this.#pushTimer || this.#closed || !this.#o.synced()) return;
    const minInterval = this.#o.minPushIntervalMs ?? DISCOVERY_SERVER_DEFAULTS.minPushIntervalMs;
    const delay = Math.max(this.#o.pushDelayMs ?? DISCOVERY_SERVER_DEFAULTS.pushDelayMs, this.#lastPush + minInterval - Date.now());
    this.#pushTimer = setTimeout(() => {
      this.#pushTimer = undefined;
      this.push();
    }, delay);
  }

  /** The informers have listed everything: the first version, and snapshots for who waited. */
  synced(): void {
    this.#o.cluster.takeDirty();
    this.#version++;
    this.#indexed.clear();
    for (const key of this.#o.cluster.serviceKeys) {
      const e = this.#o.cluster.indexEntry(key);
      if (e) this.#indexed.set(key, JSON.stringify(e));
    }
    this.#indexBuffer = undefined;
    this.#detailJson.clear();
    this.#log.info({ version: this.#version, services: this.#indexed.size }, 'discovery state built from the lists');
    for (const s of this.#sessions) if (s.pod && s.sent === 0) this.#snapshot(s);
  }

  /** Pushes what changed since the last push (the timer calls it; exported for tests and the benchmark). */
  push(): void {
    const dirty = this.#o.cluster.takeDirty();
    if (dirty.size === 0) return;
    this.#lastPush = Date.now();
    this.#version++;
    this.#metrics.pushes.inc();
    const set: string[] = [];
    const del: string[] = [];
    for (const key of dirty) {
      this.#detailJson.delete(key);
      const e = this.#o.cluster.indexEntry(key);
      const json = e && JSON.stringify(e);
      if (json === this.#indexed.get(key)) continue;
      if (json) {
        this.#indexed.set(key, json);
        set.push(json);
      } else if (this.#indexed.delete(key)) del.push(JSON.stringify(key));
    }
    if (set.length || del.length) this.#indexBuffer = undefined;
    const index = set.length || del.length ? `,"index":{"set":[${set.join(',')}],"delete":[${del.join(',')}]}` : '';
    for (const s of this.#sessions) {
      if (s.sent === 0) continue; // its snapshot is still to come, and will be current
      if (s.behind || s.ws.bufferedAmount > (this.#o.maxBufferedBytes ?? DISCOVERY_SERVER_DEFAULTS.maxBufferedBytes)) {
        if (!s.behind) {
          s.behind = true;
          this.#metrics.resyncs.inc();
          this.#log.warn({ stream: s.id, pod: s.pod && `${s.pod.namespace}/${s.pod.name}`, buffered: s.ws.bufferedAmount }, 'sidecar too slow for discovery updates; it gets a snapshot once it has read what is queued');
          this.#resyncWhenDrained(s);
        }
        continue;
      }
      const parts: string[] = [];
      for (const key of dirty) if (s.subscribed.has(key)) parts.push(`${JSON.stringify(key)}:${this.#detail(key)}`);
      if (!index && parts.length === 0) continue;
      const services = parts.length ? `,"services":{${parts.join(',')}}` : '';
      this.#send(s, 'update', `{"type":"update","version":${this.#version}${index}${services}}`);
    }
  }

  #resyncWhenDrained(s: Session): void {
    const check = setInterval(() => {
      if (s.ws.readyState !== s.ws.OPEN) return clearInterval(check);
      if (s.ws.bufferedAmount > 0) return;
      clearInterval(check);
      s.behind = false;
      this.#snapshot(s);
    }, 200);
  }

  /**
   * A snapshot for `s`, when fewer than `concurrentSnapshots` are being written; else it waits
   * its turn (then it is built from the state of that moment).
   */
  #snapshot(s: Session): void {
    if (this.#snapshotsWriting >= (this.#o.concurrentSnapshots ?? DISCOVERY_SERVER_DEFAULTS.concurrentSnapshots)) {
      this.#snapshotQueue.add(s);
      return;
    }
    this.#snapshotQueue.delete(s);
    if (s.ws.readyState !== s.ws.OPEN) return this.#nextSnapshot();
    this.#snapshotsWriting++;
    s.snapshotDone = () => {
      s.snapshotDone = undefined;
      this.#snapshotsWriting--;
      this.#nextSnapshot();
    };
    this.#indexBuffer ??= Buffer.from(`[${[...this.#indexed.values()].join(',')}]`);
    const services = [...s.subscribed].map((k) => `${JSON.stringify(k)}:${this.#detail(k)}`).join(',');
    // One message in three frames, the index's the shared buffer; its slot is free once written
    // to the socket (or the stream closed).
    this.#send(s, 'snapshot', `{"type":"snapshot","version":${this.#version},"stream":"${s.id}","index":`, this.#indexBuffer, `,"services":{${services}}}`, () => s.snapshotDone?.());
  }

  #nextSnapshot(): void {
    const next = this.#snapshotQueue.values().next();
    if (!next.done) this.#snapshot(next.value);
  }

  /** A service's details as JSON, cached until it changes ("null" for no such service, not cached: any key may be asked for). */
  #detail(key: string): string {
    let json = this.#detailJson.get(key);
    if (json === undefined) {
      const d = this.#o.cluster.detail(key);
      json = JSON.stringify(d);
      if (d) this.#detailJson.set(key, json);
    }
    return json;
  }

  #send(s: Session, type: 'snapshot' | 'update', text: string, shared?: Buffer, tail?: string, written?: () => void): void {
    if (s.ws.readyState !== s.ws.OPEN) return written?.();
    let bytes = Buffer.byteLength(text);
    if (shared && tail !== undefined) {
      s.ws.send(text, { fin: false });
      s.ws.send(shared, { fin: false, binary: false });
      s.ws.send(tail, { fin: true }, () => written?.());
      bytes += shared.length + Buffer.byteLength(tail);
    } else s.ws.send(text);
    s.sent = this.#version;
    s.unackedSince ??= Date.now();
    s.bytes += bytes;
    s.messages++;
    this.#metrics.messages.inc({ type });
    this.#metrics.bytes.inc(bytes);
  }

  #heartbeat(): void {
    for (const s of this.#sessions) {
      if (!s.alive) {
        this.#log.info({ stream: s.id }, 'sidecar did not answer the last ping; closing its stream');
        s.ws.terminate();
        continue;
      }
      s.alive = false;
      s.ws.ping();
    }
  }

  /** GET /debug/sidecars: who is connected, which version each has acknowledged. */
  sidecars(): { version: number; synced: boolean; sidecars: SidecarInfo[] } {
    return {
      version: this.#version,
      synced: this.#o.synced(),
      sidecars: [...this.#sessions].map((s) => ({
        stream: s.id,
        spiffeId: s.spiffeId,
        pod: s.pod,
        address: s.address,
        connectedAt: new Date(s.connectedAt).toISOString(),
        version: s.sent,
        acked: s.acked,
        upToDate: s.sent > 0 && s.acked >= s.sent,
        behind: s.behind,
        subscriptions: s.subscribed.size,
        bytesSent: s.bytes,
        messagesSent: s.messages,
      })),
    };
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#pushTimer);
    clearInterval(this.#ping);
    for (const s of this.#sessions) s.ws.close(1001, 'control plane shutting down');
    this.#wss.close();
  }
}

function stateOf(s: Session): 'current' | 'pending' | 'behind' | 'waiting' {
  if (s.sent === 0) return 'waiting';
  if (s.behind) return 'behind';
  return s.acked >= s.sent ? 'current' : 'pending';
}
