// Access log lines: one per HTTP request and one per TCP connection, as pino JSON with
// `type: "access"`. Field names are stable (dashboards and scripts parse them).
//
// The HTTP line is written once per request on each side, so it is serialized here for its
// fixed fields, in their fixed order, rather than by pino's generic path (a loop over the
// object's keys with per-key serializer and stringifier lookups: 3-4.5% of a busy sidecar's
// time, bench/NOTES.md). The line is the one pino would write: its level, time and bindings
// (read from the logger once), the fields with undefined ones left out, `msg`, to the same
// destination stream (batched writes, ./log.ts). A logger this cannot reproduce exactly (a
// mixin, hooks, a message prefix, a stream that wants metadata) keeps pino's path.
import { pino } from 'pino';
import type { Logger } from './log.ts';

/** What the access log and metrics say of a request (an HTTP/1.1 request or an HTTP/2 stream). */
export interface RequestLine {
  readonly method: string;
  readonly authority: string;
  readonly path: string;
  readonly protocol: string;
  readonly client: string | undefined;
}

/**
 * One HTTP access line. Every key is always present (one object shape on the hot path); an
 * undefined value is left out of the line, as pino does. The line's fields follow this order.
 */
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
  /** the caller's verified SPIFFE ID (inbound), null when unauthenticated; undefined outbound */
  peer: string | null | undefined;
  error: string | undefined;
  /** outbound */
  attempts: number | undefined;
  upstream_ms: number | undefined;
  /** gRPC calls: the status the call ended with */
  grpc_status: number | undefined;
  /** outbound, when a mesh route applied: the Service the app called ("name.namespace") and the route ("Kind/namespace/name", null: none matched) */
  route_parent: string | undefined;
  route: string | null | undefined;
  /** when the request was sampled */
  trace_id: string | undefined;
  span_id: string | undefined;
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

/** "HTTP/1.1" for "1.1": the line's protocol, without a new string per request. */
export const httpProtocol = (version: string | undefined): string => (version === '1.1' ? 'HTTP/1.1' : version === '1.0' ? 'HTTP/1.0' : `HTTP/${version}`);

// `type` and `kind` are bindings of a child logger made once per logger (pino serializes
// bindings once), so a line costs no copy of its fields.
const httpWriters = new WeakMap<Logger, HttpLineWriter>();
const tcpChildren = new WeakMap<Logger, Logger>();

export function logHttp(log: Logger, a: HttpAccess): void {
  if (!log.isLevelEnabled('info')) return;
  let w = httpWriters.get(log);
  if (!w) httpWriters.set(log, (w = new HttpLineWriter(log.child({ type: 'access', kind: 'http' }))));
  w.write(a);
}

export function logTcp(log: Logger, a: TcpAccess): void {
  if (!log.isLevelEnabled('info')) return;
  let child = tcpChildren.get(log);
  if (!child) tcpChildren.set(log, (child = log.child({ type: 'access', kind: 'tcp' })));
  child.info(a, `${a.direction} tcp ${a.client ?? '?'} -> ${a.upstream ?? '?'}`);
}

/** The HTTP line, as `message` would be in pino's `msg`. */
const messageOf = (a: HttpAccess): string => `${a.direction} ${a.method} ${a.authority}${a.path} ${a.status}`;

const { lsCacheSym, timeSym, chindingsSym, streamSym, endSym, messageKeySym, mixinSym, hooksSym, formattersSym, needsMetadataGsym } = pino.symbols;
// not in pino's types, but one of its symbols
const msgPrefixSym = (pino.symbols as unknown as Record<string, symbol | undefined>)['msgPrefixSym'];
const INFO = 30;

/** Writes HTTP access lines for one (child) logger, byte for byte as its `info(a, msg)` would. */
export class HttpLineWriter {
  readonly #log: Logger;
  /** `{"level":"info"`, the bindings, `}\n`: fixed for a logger. */
  readonly #level: string;
  readonly #bindings: string;
  readonly #end: string;
  readonly #stream: { write(s: string): unknown } | undefined;
  readonly #time: () => string;

  constructor(log: Logger) {
    this.#log = log;
    const l = log as unknown as Record<symbol, unknown>;
    const stream = l[streamSym] as Record<symbol, unknown> & { write(s: string): unknown };
    const hooks = l[hooksSym] as { streamWrite?: unknown; logMethod?: unknown } | undefined;
    const formatters = l[formattersSym] as { log?: unknown } | undefined;
    const exact =
      l[messageKeySym] === 'msg' &&
      !l[mixinSym] &&
      !hooks?.streamWrite &&
      !hooks?.logMethod &&
      !formatters?.log &&
      (msgPrefixSym === undefined || l[msgPrefixSym] === undefined) &&
      stream?.[needsMetadataGsym] !== true &&
      typeof (l[lsCacheSym] as Record<number, string> | undefined)?.[INFO] === 'string';
    this.#stream = exact ? stream : undefined;
    this.#level = exact ? (l[lsCacheSym] as Record<number, string>)[INFO]! : '';
    this.#bindings = exact ? (l[chindingsSym] as string) : '';
    this.#end = exact ? (l[endSym] as string) : '';
    const time = l[timeSym] as () => string;
    this.#time = time === pino.stdTimeFunctions.isoTime ? isoTime : time;
  }

  write(a: HttpAccess): void {
    if (!this.#stream) return this.#log.info(a, messageOf(a));
    if (!this.#log.isLevelEnabled('info')) return;
    this.#stream.write(this.line(a));
  }

  /** The line for `a` (the time is now). */
  line(a: HttpAccess): string {
    let s = this.#level + this.#time() + this.#bindings;
    s += ',"direction":' + (a.direction === 'outbound' ? '"outbound"' : '"inbound"');
    s += ',"method":' + JSON.stringify(a.method);
    s += ',"authority":' + JSON.stringify(a.authority);
    s += ',"path":' + JSON.stringify(a.path);
    s += ',"protocol":' + JSON.stringify(a.protocol);
    s += ',"status":' + num(a.status);
    s += ',"duration_ms":' + num(a.duration_ms);
    if (a.upstream !== undefined) s += ',"upstream":' + JSON.stringify(a.upstream);
    if (a.upstream_service !== undefined) s += ',"upstream_service":' + JSON.stringify(a.upstream_service);
    if (a.upstream_pod !== undefined) s += ',"upstream_pod":' + JSON.stringify(a.upstream_pod);
    s += ',"bytes_in":' + num(a.bytes_in);
    s += ',"bytes_out":' + num(a.bytes_out);
    if (a.client !== undefined) s += ',"client":' + JSON.stringify(a.client);
    if (a.peer !== undefined) s += ',"peer":' + JSON.stringify(a.peer);
    if (a.error !== undefined) s += ',"error":' + JSON.stringify(a.error);
    if (a.attempts !== undefined) s += ',"attempts":' + num(a.attempts);
    if (a.upstream_ms !== undefined) s += ',"upstream_ms":' + num(a.upstream_ms);
    if (a.grpc_status !== undefined) s += ',"grpc_status":' + num(a.grpc_status);
    if (a.route_parent !== undefined) s += ',"route_parent":' + JSON.stringify(a.route_parent);
    if (a.route !== undefined) s += ',"route":' + JSON.stringify(a.route);
    if (a.trace_id !== undefined) s += ',"trace_id":' + JSON.stringify(a.trace_id);
    if (a.span_id !== undefined) s += ',"span_id":' + JSON.stringify(a.span_id);
    return s + ',"msg":' + JSON.stringify(messageOf(a)) + this.#end;
  }
}

/**
 * A number as pino writes it (JSON.stringify: String(n), non-finite ones as null). The line's
 * numbers are integers or milliseconds rounded to 3 decimals, and V8's shortest-digits
 * conversion of a double was ~1 us per line: such a value (exactly m / 1000, below 1e9) is
 * written from its integer m instead, which gives the same text (see access.test.ts).
 */
export function num(n: number): string {
  if (n >= 0 && n < 1e9) {
    const m = Math.round(n * 1000);
    if (m / 1000 === n) {
      const whole = Math.floor(m / 1000);
      const frac = m - whole * 1000;
      if (frac === 0) return String(whole);
      return whole + FRACTIONS[frac]!;
    }
  }
  return Number.isFinite(n) ? String(n) : 'null';
}
// thousandths as text, 3 decimals with trailing zeros dropped: 500 ".5", 50 ".05", 5 ".005", 123 ".123"
const FRACTIONS = Array.from({ length: 1000 }, (_, i) => `.${String(i).padStart(3, '0')}`.replace(/0+$/, ''));

// pino's isoTime (`,"time":"2026-12-07T06:53:12.345Z"`) without a Date and its formatting per
// line: the text up to the seconds is made once per second.
let secondOf = -1;
let secondText = '';
function isoTime(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== secondOf) {
    secondOf = second;
    secondText = ',"time":"' + new Date(second * 1000).toISOString().slice(0, 20); // "...T06:53:12."
  }
  const ms = now - second * 1000;
  return secondText + (ms < 10 ? '00' : ms < 100 ? '0' : '') + ms + 'Z"';
}
