// One response classification, shared by retries, circuit breakers and metrics (as
// linkerd2-proxy's http/classify): what an attempt's outcome was, whether it counts as a
// failure of the endpoint, and which retry condition (the `retry-on` annotation) it meets.
import type { ProxyError } from '../errors/errors.ts';
import type { RetryOn } from '../config/annotations.ts';

export interface Classification {
  /** The endpoint failed (counts against its breaker and as an error in metrics). */
  readonly failure: boolean;
  /** The retry conditions this outcome meets. */
  readonly conditions: readonly RetryOn[];
  /** A short label for logs, metrics and spans: a status class or an x-tsmesh-error reason. */
  readonly reason: string;
}

const SUCCESS: Classification = { failure: false, conditions: [], reason: 'success' };

export function classify(status: number | undefined, error: ProxyError | undefined): Classification {
  if (error) {
    switch (error.code) {
      case 'CONNECT_FAILURE':
        return { failure: true, conditions: ['connect-failure', '5xx', 'gateway-error'], reason: error.reason };
      case 'UPSTREAM_RESET':
        return { failure: true, conditions: ['reset', '5xx'], reason: error.reason };
      case 'TIMEOUT':
        // a per-try timeout: the upstream did not answer in time (Envoy counts it as a 504)
        return { failure: true, conditions: ['5xx', 'gateway-error'], reason: error.reason };
      default:
        return { failure: true, conditions: [], reason: error.reason };
    }
  }
  if (status === undefined) return SUCCESS;
  if (status >= 500) {
    const gateway = status === 502 || status === 503 || status === 504;
    return { failure: true, conditions: gateway ? ['5xx', 'gateway-error'] : ['5xx'], reason: `${status}` };
  }
  if (status === 409) return { failure: false, conditions: ['retriable-4xx'], reason: '409' };
  return SUCCESS;
}

/** The retry condition of `c` that `retryOn` enables, if any. */
export function retryCondition(c: Classification, retryOn: readonly RetryOn[]): RetryOn | undefined {
  return c.conditions.find((cond) => retryOn.includes(cond));
}
