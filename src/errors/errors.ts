// Every error tsmesh makes has a stable code, registered here once (as fastify does).
// The proxy's own HTTP errors map to a status, an `x-tsmesh-error` reason and the gRPC status a
// gRPC client sees, in this one table; ./response.ts turns them into the client's answer.

// gRPC status codes (the canonical numbers; src/h2/grpc.ts names them all)
const UNAVAILABLE = 14, DEADLINE_EXCEEDED = 4, PERMISSION_DENIED = 7, INTERNAL = 13, RESOURCE_EXHAUSTED = 8, UNIMPLEMENTED = 12;

export const codes = {
  // proxy errors sent to clients (DESIGN.md: x-tsmesh-error reasons)
  CIRCUIT_OPEN: { reason: 'circuit-open', status: 503, grpc: UNAVAILABLE },
  NO_HEALTHY_ENDPOINTS: { reason: 'no-healthy-endpoints', status: 503, grpc: UNAVAILABLE },
  TIMEOUT: { reason: 'timeout', status: 504, grpc: DEADLINE_EXCEEDED },
  CONNECT_FAILURE: { reason: 'connect-failure', status: 502, grpc: UNAVAILABLE },
  FORBIDDEN: { reason: 'forbidden', status: 403, grpc: PERMISSION_DENIED },
  UPSTREAM_RESET: { reason: 'upstream-reset', status: 502, grpc: UNAVAILABLE },
  BAD_REQUEST: { reason: 'bad-request', status: 400, grpc: INTERNAL },
  OVERLOADED: { reason: 'overloaded', status: 503, grpc: RESOURCE_EXHAUSTED },
  BODY_TOO_LARGE: { reason: 'body-too-large', status: 413, grpc: RESOURCE_EXHAUSTED },
  HEADERS_TOO_LARGE: { reason: 'headers-too-large', status: 431, grpc: INTERNAL },
  // an HTTP/1.1 request head that did not arrive within TSMESH_HEADERS_TIMEOUT (slowloris)
  HEADERS_TIMEOUT: { reason: 'timeout', status: 408, grpc: DEADLINE_EXCEEDED },
  // mesh routes (src/route): the Gateway API's answers when routes apply
  NO_ROUTE: { reason: 'no-route', status: 404, grpc: UNIMPLEMENTED },
  INVALID_BACKEND: { reason: 'invalid-backend', status: 500, grpc: INTERNAL },
} as const;

export type ProxyErrorCode = keyof typeof codes;

/**
 * The base of every error tsmesh makes: a stable `code` that logs, metrics, tests and callers
 * rely on. Each concern declares its codes beside it (a `*_ERROR_CODES` table) and one subclass.
 */
export class CodedError<C extends string = string> extends Error {
  readonly code: C;
  constructor(code: C, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/** An error the proxy turns into a synthetic response. */
export class ProxyError extends CodedError<ProxyErrorCode> {
  override readonly name = 'ProxyError';
  get reason(): string {
    return codes[this.code].reason;
  }
  get status(): number {
    return codes[this.code].status;
  }
  /** The gRPC status a gRPC client sees for it (`x-tsmesh-error` stays as metadata). */
  get grpcStatus(): number {
    return codes[this.code].grpc;
  }
}

/** Bad configuration, registry or annotation input: names the field and the reason. */
export class ConfigError extends CodedError<'TSMESH_CONFIG_INVALID'> {
  override readonly name = 'ConfigError';
  readonly source: string;
  readonly issues: readonly string[];
  constructor(source: string, issues: readonly string[]) {
    super('TSMESH_CONFIG_INVALID', `${source}: ${issues.join('; ')}`);
    this.source = source;
    this.issues = issues;
  }
}

/** A command-line usage error (exit code 2). */
export class UsageError extends CodedError<'TSMESH_USAGE'> {
  override readonly name = 'UsageError';
  constructor(message: string) {
    super('TSMESH_USAGE', message);
  }
}

/** A feature that a later release fills in. */
export class NotAvailableError extends CodedError<'TSMESH_NOT_AVAILABLE'> {
  override readonly name = 'NotAvailableError';
  constructor(message: string) {
    super('TSMESH_NOT_AVAILABLE', message);
  }
}

/** Maps a socket-level failure of an upstream call to the proxy error the client sees. */
export function classifyUpstreamError(err: unknown): ProxyError {
  if (err instanceof ProxyError) return err;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case 'ERR_TSMESH_PEER_IDENTITY':
      return new ProxyError('CONNECT_FAILURE', (err as Error).message, { cause: err });
    case 'ECONNREFUSED':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'ENOTFOUND':
    case 'EADDRNOTAVAIL':
    case 'ETIMEDOUT':
      return new ProxyError('CONNECT_FAILURE', `cannot connect to upstream: ${(err as Error).message || code}`, { cause: err });
    default:
      return new ProxyError('UPSTREAM_RESET', `upstream connection failed: ${code ?? (err as Error)?.message ?? 'unknown'}`, { cause: err });
  }
}
