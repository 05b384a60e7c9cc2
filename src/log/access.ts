// Access log lines: one per HTTP request and one per TCP connection, as pino JSON with
// `type: "access"`. Field names are stable (dashboards and scripts parse them).
import type { Logger } from './log.ts';

/** What the access log and metrics say of a request (an HTTP/1.1 request or an HTTP/2 stream). */
export interface RequestLine {
  readonly method: string;
  readonly authority: string;
  readonly path: string;
  readonly protocol: string;
  readonly client: string | undefined;
}

export interface HttpAccess {
  direction: 'inbound' | 'outbound';
  method: string;
  authority: string;
  path: string;
  protocol: string;
  status: number;
  duration_ms: number;
  upstream: string | undefined;
  upstream_service: string | undefined;
  upstream_pod: string | undefined;
  bytes_in: number;
  bytes_out: number;
  client: string | undefined;
  /** the caller's verified SPIFFE ID (inbound), null when unauthenticated */
  peer?: string | null;
  error: string | undefined;
  upstream_ms?: number | undefined;
  attempts?: number;
  /** outbound, when a mesh route applied: the Service the app called ("name.namespace") and the route ("Kind/namespace/name", null: none matched) */
  route_parent?: string;
  route?: string | null;
  trace_id?: string;
  span_id?: string;
}

export interface TcpAccess {
  direction: 'inbound' | 'outbound';
  client: string | undefined;
  peer?: string | null;
  upstream: string | undefined;
  upstream_service?: string | undefined;
  bytes_in: number;
  bytes_out: number;
  duration_ms: number;
  error: string | undefined;
}

// `type` and `kind` are bindings of a child logger made once per logger (pino serializes
// bindings once), so a line costs no copy of its fields.
const httpChildren = new WeakMap<Logger, Logger>();
const tcpChildren = new WeakMap<Logger, Logger>();

function childOf(cache: WeakMap<Logger, Logger>, log: Logger, kind: 'http' | 'tcp'): Logger {
  let child = cache.get(log);
  if (!child) cache.set(log, (child = log.child({ type: 'access', kind })));
  return child;
}

export function logHttp(log: Logger, a: HttpAccess): void {
  if (!log.isLevelEnabled('info')) return;
  childOf(httpChildren, log, 'http').info(a, `${a.direction} ${a.method} ${a.authority}${a.path} ${a.status}`);
}

export function logTcp(log: Logger, a: TcpAccess): void {
  if (!log.isLevelEnabled('info')) return;
  childOf(tcpChildren, log, 'tcp').info(a, `${a.direction} tcp ${a.client ?? '?'} -> ${a.upstream ?? '?'}`);
}
