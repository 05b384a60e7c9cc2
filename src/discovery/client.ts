// The sidecar's registry source in Kubernetes: the control plane's discovery stream
// (./protocol.ts). What it keeps (the cluster's compact index, the details of the services this
// sidecar uses, subscriptions on demand and dropped when unused) is ./state.ts; this file is the
// connection that feeds it.
//
// The connection: a WebSocket over TLS to the control plane, the sidecar's mesh certificate as
// client certificate, the server verified against the mesh trust anchors and its name. It
// reconnects with exponential backoff and full jitter; while it is away the last good view stays
// in force (calls keep working). A new connection starts with a snapshot, so a sidecar catches
// up whatever it missed. The registry is loaded (the sidecar ready) after the first snapshot.
import type { LookupFunction } from 'node:net';
import { WebSocket } from 'ws';
import type { Registry } from '../registry/registry.ts';
import type { IdentityProvider } from '../identity/index.ts';
import type { Logger } from '../log/log.ts';
import { DISCOVERY_PATH, DISCOVERY_PROTOCOL, parseServerMessage, type ClientMessage } from './protocol.ts';
import { DiscoveryState } from './state.ts';

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

export function startDiscoveryClient(o: DiscoveryClientOptions): DiscoveryClient {
  const log = o.log;
  const random = o.random ?? Math.random;
  const backoffInitialMs = o.backoffInitialMs ?? DISCOVERY_CLIENT_DEFAULTS.backoffInitialMs;
  const backoffMaxMs = o.backoffMaxMs ?? DISCOVERY_CLIENT_DEFAULTS.backoffMaxMs;
  const idleMs = o.idleMs ?? DISCOVERY_CLIENT_DEFAULTS.idleMs;
  const heartbeatTimeoutMs = o.heartbeatTimeoutMs ?? DISCOVERY_CLIENT_DEFAULTS.heartbeatTimeoutMs;
  const url = new URL(DISCOVERY_PATH, o.url.replace(/^http/, 'ws'));

  let ws: WebSocket | undefined;
  let streamId: string | undefined;
  let synced = false; // a snapshot arrived on this connection
  let snapshots = 0;
  let reconnects = 0;
  let failures = 0;
  let lastError: string | undefined;
  let closed = false;
  let reconnectTimer: NodeJS.Timeout | undefined;
  let heartbeat: NodeJS.Timeout | undefined;
  let ackScheduled = false;

  // What the stream maintains: the index, the subscribed services' details, the subscriptions.
  const state = new DiscoveryState({ registry: o.registry, podIP: o.pod.ip, log, idleMs, onOutgoing: () => scheduleAck() });
  o.registry.setOnDemandSource(state.source);
  // Drop what has not been used for idleMs.
  const sweep = setInterval(() => state.sweep(), Math.max(50, Math.min(60_000, idleMs / 4)));
  sweep.unref();

  const send = (m: ClientMessage): void => {
    if (ws?.readyState === WebSocket.OPEN) ws.send(JSON.stringify(m));
  };

  /** Once the connection is synced, what the state has to tell goes out in one ack per turn. */
  function scheduleAck(): void {
    if (ackScheduled || !synced) return;
    ackScheduled = true;
    setImmediate(() => {
      ackScheduled = false;
      if (!synced) return;
      send(state.ack());
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

  /** One message: checked (a bad one throws), then applied to the state, then acknowledged. */
  const receive = (raw: unknown): void => {
    const m = parseServerMessage(raw);
    if (m.type === 'snapshot') {
      streamId = m.stream;
      synced = true;
      failures = 0;
      snapshots++;
    }
    state.apply(m);
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
      socket.send(JSON.stringify({ type: 'hello', pod: o.pod, subscribe: state.hello() } satisfies ClientMessage));
    });
    socket.on('ping', () => armHeartbeat(socket));
    socket.on('message', (data, isBinary) => {
      armHeartbeat(socket);
      try {
        if (isBinary) throw new Error('a binary frame');
        receive(JSON.parse(data.toString()));
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
      version: state.version,
      snapshots,
      reconnects,
      indexedServices: state.indexedServices,
      subscriptions: state.subscriptions,
      lastError,
    }),
    close() {
      closed = true;
      clearTimeout(reconnectTimer);
      clearTimeout(heartbeat);
      clearInterval(sweep);
      state.settleAll();
      o.registry.setOnDemandSource(undefined);
      ws?.terminate();
    },
  };
}
