// One response classification, shared by retries, circuit breakers and metrics (as
// linkerd2-proxy's http/classify): what an attempt's outcome was, whether it counts as a
// failure of the endpoint, and which retry condition (the `retry-on` annotation) it meets.
// A gRPC call is classified by its `grpc-status` (in a trailers-only response, the status is in
// the response head), each status meeting the conditions of the HTTP status gRPC maps it to
// (UNAVAILABLE is a 503: gateway-error, so it is retried by default).
// A response made by the endpoint's own sidecar (a meshed pod's inbound side) names its cause in
// `x-tsmesh-error`: `connect-failure` there means the pod's app could not be reached and no app
// saw the request, so it is classified as a connection failure of this endpoint, exactly as if
// this sidecar had failed to connect (docs/resilience.md).
import type { ProxyError } from '../errors/errors.ts';
import { ERROR_HEADER } from '../errors/response.ts';
import type { RetryOn } from '../config/annotations.ts';

export interface Classification {
  /** The endpoint failed (counts against its breaker and as an error in metrics). */
  readonly failure: boolean;
  /**
   * The endpoint could not take the request at all: a connection failure, here or reported by
   * its sidecar. It is ejected at once, without waiting for consecutive failures.
   */
  readonly unreachable?: boolean;
  /** The retry conditions this outcome meets. */
  readonly conditions: readonly RetryOn[];
  /** A short label for logs, metrics and spans: a status class or an x-tsmesh-error reason. */
  readonly reason: string;
}

const SUCCESS: Classification = { failure: false, conditions: [], reason: 'success' };

/** A connection failure: the endpoint never saw the request. */
const UNREACHABLE: Omit<Classification, 'reason'> = { failure: true, unreachable: true, conditions: ['connect-failure', '5xx', 'gateway-error'] };

/** The errors a peer sidecar reports for its app, with the status it reports them with (HTTP, gRPC). */
const PEER_UNREACHABLE: Readonly<Record<string, { status: number; grpcStatus: number }>> = {
  'connect-failure': { status: 502, grpcStatus: 14 },
};

/**
 * `grpcStatus`: the gRPC status of a gRPC call's response head (trailers-only), when it has one;
 * it decides over the HTTP status (200 for a gRPC answer). `peerError`: the response's
 * `x-tsmesh-error`, when it has one (the endpoint's sidecar made the response).
 */
export function classify(status: number | undefined, error: ProxyError | undefined, grpcStatus?: number, peerError?: string): Classification {
  if (peerError !== undefined && !error) {
    const peer = PEER_UNREACHABLE[peerError];
    if (peer && (status === peer.status || (grpcStatus === peer.grpcStatus && (status === undefined || status === 200)))) return { ...UNREACHABLE, reason: `peer-${peerError}` };
  }
  if (error) {
    switch (error.code) {
      case 'CONNECT_FAILURE':
        return { ...UNREACHABLE, reason: error.reason };
      case 'UPSTREAM_RESET':
        return { failure: true, conditions: ['reset', '5xx'], reason: error.reason };
      case 'TIMEOUT':
        // a per-try timeout: the upstream did not answer in time (Envoy counts it as a 504)
        return { failure: true, conditions: ['5xx', 'gateway-error'], reason: error.reason };
      case 'BODY_TOO_LARGE':
        // the client's body went over the limit while it was sent: not the endpoint's failure
        return { failure: false, conditions: [], reason: error.reason };
      default:
        return { failure: true, conditions: [], reason: error.reason };
    }
  }
  if (grpcStatus !== undefined && (status === undefined || status === 200)) return classifyGrpc(grpcStatus);
  if (status === undefined) return SUCCESS;
  if (status >= 500) {
    const gateway = status === 502 || status === 503 || status === 504;
    return { failure: true, conditions: gateway ? ['5xx', 'gateway-error'] : ['5xx'], reason: `${status}` };
  }
  if (status === 409) return { failure: false, conditions: ['retriable-4xx'], reason: '409' };
  return SUCCESS;
}

/**
 * gRPC statuses as the endpoint's health and `retry-on` see them. Server-side failures count
 * against the endpoint; the caller's own errors (INVALID_ARGUMENT, NOT_FOUND, ...) do not.
 *   UNAVAILABLE                     failure  5xx, gateway-error   (as a 503)
 *   INTERNAL, UNKNOWN, DATA_LOSS    failure  5xx                  (as a 500)
 *   DEADLINE_EXCEEDED               failure  5xx                  (not gateway-error: the
 *                                   server gave up on its own deadline; retrying rarely helps)
 *   ABORTED                         -        retriable-4xx        (as a 409: a conflict)
 *   anything else                   -        -
 */
export function classifyGrpc(code: number): Classification {
  const reason = `grpc-${code}`;
  switch (code) {
    case 0:
      return SUCCESS;
    case 14:
      return { failure: true, conditions: ['5xx', 'gateway-error'], reason };
    case 2:
    case 4:
    case 13:
    case 15:
      return { failure: true, conditions: ['5xx'], reason };
    case 10:
      return { failure: false, conditions: ['retriable-4xx'], reason };
    default:
      return { failure: false, conditions: [], reason };
  }
}

/** The `x-tsmesh-error` of a response head, if it has one. */
export function peerErrorOf(headers: Readonly<Record<string, string | string[] | undefined>>): string | undefined {
  const v = headers[ERROR_HEADER];
  return typeof v === 'string' ? v : undefined;
}

/** The retry condition of `c` that `retryOn` enables, if any. */
export function retryCondition(c: Classification, retryOn: readonly RetryOn[]): RetryOn | undefined {
  return c.conditions.find((cond) => retryOn.includes(cond));
}
