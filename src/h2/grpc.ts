// gRPC over HTTP/2, as far as the proxy needs it (the gRPC "PROTOCOL-HTTP2" spec): which requests
// are gRPC calls, the status codes, the `grpc-timeout` deadline, `grpc-message`'s encoding. The
// gRPC status of each of the proxy's own errors is in the code registry (src/errors/errors.ts).
import type { IncomingHttpHeaders } from 'node:http2';

/** The canonical status codes, by number. */
export const GRPC_STATUS_NAMES = [
  'OK',
  'CANCELLED',
  'UNKNOWN',
  'INVALID_ARGUMENT',
  'DEADLINE_EXCEEDED',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED',
  'FAILED_PRECONDITION',
  'ABORTED',
  'OUT_OF_RANGE',
  'UNIMPLEMENTED',
  'INTERNAL',
  'UNAVAILABLE',
  'DATA_LOSS',
  'UNAUTHENTICATED',
] as const;

export const GrpcStatus = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  DEADLINE_EXCEEDED: 4,
  RESOURCE_EXHAUSTED: 8,
  PERMISSION_DENIED: 7,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
} as const;

/** A gRPC call: content-type application/grpc, application/grpc+proto, application/grpc-web is not (it is HTTP/1-framed). */
export function isGrpc(headers: IncomingHttpHeaders): boolean {
  const ct = headers['content-type'];
  return typeof ct === 'string' && /^application\/grpc(?:$|[+;])/i.test(ct);
}

/** The `grpc-status` of a header or trailer block, when it has a valid one. */
export function grpcStatusOf(headers: IncomingHttpHeaders | undefined): number | undefined {
  const raw = headers?.['grpc-status'];
  if (typeof raw !== 'string' || !/^\d{1,2}$/.test(raw)) return undefined;
  return Number(raw);
}

/** A bounded label for a status: its name, or "unknown" for a number outside the canonical set. */
export function grpcStatusLabel(code: number | undefined): string {
  if (code === undefined) return 'none';
  return GRPC_STATUS_NAMES[code] ?? 'unknown';
}

const UNITS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 1e-3, n: 1e-6 };

/**
 * `grpc-timeout` (1-8 digits and a unit: H M S m u n) in milliseconds; undefined when absent;
 * an Error naming the value when malformed (the call is refused with INTERNAL, as gRPC servers do).
 */
export function parseGrpcTimeout(value: string | string[] | undefined): number | undefined | Error {
  if (value === undefined) return undefined;
  const text = Array.isArray(value) ? value[0] ?? '' : value;
  const m = /^(\d{1,8})([HMSmun])$/.exec(text);
  if (!m) return new Error(`malformed grpc-timeout "${text}" (1-8 digits and one of H M S m u n)`);
  return Number(m[1]) * UNITS[m[2]!]!;
}

/** `ms` as a grpc-timeout value: whole milliseconds while they fit in 8 digits, else seconds. */
export function formatGrpcTimeout(ms: number): string {
  const whole = Math.max(1, Math.ceil(ms));
  if (whole < 1e8) return `${whole}m`;
  const s = Math.ceil(whole / 1000);
  return s < 1e8 ? `${s}S` : `${Math.min(99_999_999, Math.ceil(s / 3600))}H`;
}

/** grpc-message is percent-encoded (the spec's percent-encoding of bytes outside 0x20-0x7E and "%"). */
export function encodeGrpcMessage(text: string): string {
  let out = '';
  for (const byte of Buffer.from(text, 'utf8')) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}
