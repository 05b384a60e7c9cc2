// One outbound request (an HTTP/1.1 request or an HTTP/2 stream: a gRPC call) through the
// resilience stack, in linkerd2-proxy's order:
//   deadline   the whole-request deadline (504 timeout; the upstream request is cancelled), and
//              for gRPC calls a deadline to the response head (see Deadlines)
//   retry      above balancing, so a retry goes to another endpoint where one exists; only
//              replayable requests, `retry-on` conditions, `retry-attempts`, backoff with
//              full jitter, the destination's retry budget
//   health     per (Service, endpoint): skips open breakers and endpoints ejected by failure
//              accrual (all open: 503 circuit-open at once); each attempt's classification
//              goes back to both (src/breaker/)
//   balance    power of two choices over a decaying peak-EWMA of latency (src/balance/)
//   endpoint   per-try timeout -> the transport's attempt (pool -> forward)
// The state of one request lives in this handler; the pipeline stays a list of stages. What
// differs between HTTP/1.1 and HTTP/2 (how a try is sent, how a response head classifies, how
// a response or an error reaches the client) is the Transport (src/upstream/transport.ts).
import { ProxyError } from '../errors/errors.ts';
import { classify, retryCondition, type Classification } from '../classify/classify.ts';
import { backoffMs } from '../retry/backoff.ts';
import type { HealthTable } from '../breaker/endpoint-health.ts';
import type { RetryBudget } from '../retry/budget.ts';
import type { P2CBalancer } from '../balance/p2c.ts';
import type { ConnectionPools } from '../upstream/pool.ts';
import type { H2Pools } from '../upstream/h2-pool.ts';
import type { Forwarder } from '../http/forward.ts';
import type { Http1Pools } from '../http1/client.ts';
import type { Endpoint } from '../registry/model.ts';
import type { Policy, RetryOn } from '../config/annotations.ts';
import type { Attempt, Transport } from '../upstream/transport.ts';

export interface ExchangeDeps {
  readonly forwarder: Forwarder;
  /** node:http agents: WebSocket upgrades (http-proxy). */
  readonly pools: ConnectionPools;
  /** HTTP/1.1 keep-alive pools of the raw-socket path. */
  readonly http1: Http1Pools;
  /** HTTP/2 sessions to endpoints (gRPC and other HTTP/2 streams). */
  readonly h2: H2Pools;
  readonly balancer: P2CBalancer;
  readonly health: HealthTable;
  readonly budget: (destination: string, ratio: number) => RetryBudget;
  readonly onRetry?: (destination: string, reason: RetryOn | 'timeout') => void;
}

export interface Destination {
  /** "name.namespace" of the service, or the pod's IP for a call to a pod. */
  readonly name: string;
  /** The endpoints to choose from, read at each attempt (the registry may change). */
  readonly endpoints: () => readonly Endpoint[];
  readonly policy: Policy;
}

/** Sees each attempt (tracing: a child span per try); a ClientSpan is one. */
export interface AttemptObserver {
  attempt(n: number, endpoint: { readonly ip: string; readonly port: number; readonly pod?: string | undefined }): {
    end(result: { status: number; error?: ProxyError | undefined; outcome: 'success' | 'retry' | 'failure' }): void;
  };
}

/**
 * The exchange's deadlines. HTTP requests: `totalMs` is the `timeout` policy, to the end of the
 * response. gRPC calls: `headMs` is the `timeout` policy, to the response head only (a stream
 * lives as long as the app keeps it open), and `totalMs` the call's own `grpc-timeout`.
 */
export interface Deadlines {
  readonly totalMs: number | null;
  readonly headMs: number | null;
}

export interface ExchangeResult {
  status: number;
  error: ProxyError | undefined;
  endpoint: Endpoint | undefined;
  attempts: number;
  bytesIn: number;
  bytesOut: number;
  /** ms from the start to the response head that was sent to the client */
  upstreamMs: number | undefined;
}

export function runExchange<R>(deps: ExchangeDeps, transport: Transport<R>, dest: Destination, observer: AttemptObserver | undefined, done: (r: ExchangeResult) => void, deadlines?: Deadlines): void {
  const start = performance.now();
  const { policy } = dest;
  const { totalMs, headMs } = deadlines ?? { totalMs: policy.timeout, headMs: null };
  const result: ExchangeResult = { status: 0, error: undefined, endpoint: undefined, attempts: 0, bytesIn: 0, bytesOut: 0, upstreamMs: undefined };
  const budget = deps.budget(dest.name, policy['retry-budget']);
  budget.request();

  let current: Attempt | undefined;
  /** Ends the attempt in flight, if any, without a response: at the deadline (a timeout of the endpoint), or abandoned (undefined). */
  let endCurrent: ((err: ProxyError | undefined) => void) | undefined;
  let perTry: NodeJS.Timeout | undefined;
  let finished = false;
  const tried = new Set<string>();

  const finish = () => {
    if (finished) return;
    finished = true;
    clearTimeout(deadline);
    clearTimeout(headDeadline);
    clearTimeout(perTry);
    result.bytesIn = transport.bytesIn;
    done(result);
  };

  const fail = (err: ProxyError) => {
    if (finished) return;
    result.error = err;
    result.status = transport.fail(err) ?? result.status;
    finish();
  };

  // The whole-request deadline: before the response head, 504; after it, the response is cut.
  const deadline =
    totalMs === null
      ? undefined
      : setTimeout(() => {
          const err = new ProxyError('TIMEOUT', `no complete response within ${totalMs} ms`);
          endCurrent?.(err);
          current?.cancel();
          fail(err);
        }, totalMs);
  // The deadline of the response head (gRPC calls): cleared once the client has a response head.
  let headDeadline =
    headMs === null
      ? undefined
      : setTimeout(() => {
          const err = new ProxyError('TIMEOUT', `no response within ${headMs} ms`);
          endCurrent?.(err);
          current?.cancel();
          fail(err);
        }, headMs);

  // The client went away: cancel the upstream request, stop retrying. A response under way is
  // recorded with the bytes the client was sent (its own end may come later, or never).
  transport.onClientGone(() => {
    if (finished) return;
    endCurrent?.(undefined); // not the endpoint's doing
    current?.cancel();
    if (!transport.responded) result.status = 499;
    result.bytesOut = transport.bytesOut;
    finish();
  });

  const next = (): void => {
    if (finished) return;
    const all = dest.endpoints();
    if (all.length === 0) return fail(new ProxyError('NO_HEALTHY_ENDPOINTS', `${dest.name} has no ready endpoints`));
    const usable = deps.health.usable(dest.name, policy, all);
    if (usable.length === 0) return fail(new ProxyError('CIRCUIT_OPEN', `every endpoint of ${dest.name} has its circuit breaker open`));
    const untried = usable.filter((ep) => !tried.has(ep.key));
    const endpoint = deps.balancer.pick(untried.length ? untried : usable)!;
    tried.add(endpoint.key);
    result.endpoint = endpoint;
    const n = ++result.attempts;

    const ticket = deps.health.admit(dest.name, endpoint);
    const lease = deps.balancer.start(endpoint);
    const span = observer?.attempt(n, { ip: endpoint.ip, port: endpoint.port, pod: endpoint.pod.name });
    const t0 = performance.now();

    let over = false;
    /** Records the attempt's result in health and balancer, once; false when it was over already. */
    const record = (c: Classification | undefined, answered: boolean): boolean => {
      if (over) return false;
      over = true;
      endCurrent = undefined;
      clearTimeout(perTry);
      ticket.settle(c);
      lease.done(c && (answered || c.failure) ? performance.now() - t0 : undefined, c?.failure);
      return true;
    };
    // the exchange ended around this attempt: the deadline passed, or the client went away
    endCurrent = (err) => {
      if (record(err && classify(undefined, err), false)) span?.end({ status: 0, error: err, outcome: 'failure' });
    };
    const outcome = (c: Classification, response: R | undefined, err: ProxyError | undefined) => {
      if (!record(c, response !== undefined)) {
        if (response !== undefined) transport.discard(response);
        return;
      }
      const retried = decide(c, response, err);
      span?.end({ status: response !== undefined ? transport.status(response) : (err?.status ?? 0), error: err, outcome: retried ? 'retry' : c.failure ? 'failure' : 'success' });
    };

    if (policy['per-try-timeout'] !== null) {
      perTry = setTimeout(() => {
        current?.cancel();
        const err = new ProxyError('TIMEOUT', `no response from ${endpoint.key} within the per-try timeout of ${policy['per-try-timeout']} ms`);
        outcome(classify(undefined, err), undefined, err);
      }, policy['per-try-timeout']);
    }

    current = transport.attempt(endpoint, n, {
      onResponse: (response) => outcome(transport.classify(response), response, undefined),
      onError: (err) => outcome(classify(undefined, err), undefined, err),
    });
    // starting the attempt may have read (and refused) the client's body, and the client be gone
    // already: its attempt was not `current` yet when that was handled
    if (finished) current.cancel();
  };

  /** Retries (returns true), or sends this outcome to the client. */
  const decide = (c: Classification, response: R | undefined, err: ProxyError | undefined): boolean => {
    if (finished) {
      if (response !== undefined) transport.discard(response);
      return false;
    }
    const condition = retryCondition(c, policy['retry-on']);
    const mayRetry = condition !== undefined && transport.replayable && result.attempts <= policy['retry-attempts'] && !transport.responded;
    if (mayRetry && budget.tryRetry()) {
      deps.onRetry?.(dest.name, err?.code === 'TIMEOUT' ? 'timeout' : condition);
      if (response !== undefined) transport.discard(response); // the connection goes back to the pool
      setTimeout(next, backoffMs(result.attempts));
      return true;
    }
    if (response === undefined) {
      fail(err ?? new ProxyError('UPSTREAM_RESET', 'no response'));
      return false;
    }
    result.status = transport.status(response);
    result.upstreamMs = performance.now() - start;
    clearTimeout(headDeadline);
    headDeadline = undefined;
    transport.respond(response, ({ bytes, cut }) => {
      result.bytesOut = bytes;
      if (cut && !result.error && !finished) result.error = new ProxyError('UPSTREAM_RESET', 'the response was cut');
      finish();
    });
    return false;
  };

  let prepared: Promise<void> | void;
  try {
    prepared = transport.prepare();
  } catch (err) {
    return fail(err as ProxyError);
  }
  if (prepared) prepared.then(next, (err: ProxyError) => fail(err));
  else next();
}
