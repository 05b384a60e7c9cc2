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
// The state of one request lives in one Exchange object and one Try per attempt (their methods
// are the steps, not closures made per request); the pipeline stays a list of stages. What
// differs between HTTP/1.1 and HTTP/2 (how a try is sent, how a response head classifies, how
// a response or an error reaches the client) is the Transport (src/upstream/transport.ts).
import { ProxyError } from '../errors/errors.ts';
import { classify, retryCondition, type Classification } from '../classify/classify.ts';
import { backoffMs } from '../retry/backoff.ts';
import type { HealthTable, Ticket } from '../breaker/endpoint-health.ts';
import type { RetryBudget } from '../retry/budget.ts';
import type { Lease, P2CBalancer } from '../balance/p2c.ts';
import type { ConnectionPools } from '../upstream/pool.ts';
import type { H2Pools } from '../upstream/h2-pool.ts';
import type { Forwarder } from '../http/forward.ts';
import type { Http1Pools } from '../http1/client.ts';
import type { Endpoint } from '../registry/model.ts';
import type { Policy, RetryOn } from '../config/annotations.ts';
import type { Attempt, AttemptHandlers, Transport } from '../upstream/transport.ts';

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
  new Exchange(deps, transport, dest, observer, done).run(deadlines);
}

// timer callbacks take their object as an argument: no closure per request
function totalDeadline(x: Exchange<unknown>): void {
  x.timedOut(new ProxyError('TIMEOUT', `no complete response within ${x.totalMs} ms`));
}
function headDeadline(x: Exchange<unknown>): void {
  x.timedOut(new ProxyError('TIMEOUT', `no response within ${x.headMs} ms`));
}
function perTryDeadline(t: Try<unknown>): void {
  t.perTryTimedOut();
}
function nextAttempt(x: Exchange<unknown>): void {
  x.next();
}

/** One request through the stack: its deadlines, its tries, its result. */
class Exchange<R> {
  readonly deps: ExchangeDeps;
  readonly transport: Transport<R>;
  readonly dest: Destination;
  readonly policy: Policy;
  readonly #observer: AttemptObserver | undefined;
  readonly #done: (r: ExchangeResult) => void;
  readonly start = performance.now();
  readonly result: ExchangeResult = { status: 0, error: undefined, endpoint: undefined, attempts: 0, bytesIn: 0, bytesOut: 0, upstreamMs: undefined };
  readonly #budget: RetryBudget;
  totalMs: number | null = null;
  headMs: number | null = null;
  #deadline: NodeJS.Timeout | undefined;
  #headDeadline: NodeJS.Timeout | undefined;
  perTry: NodeJS.Timeout | undefined;
  /** The upstream request in flight. */
  current: Attempt | undefined;
  /** The try whose outcome is not recorded yet (ended without a response at the deadline, or abandoned). */
  open: Try<R> | undefined;
  finished = false;
  /** Endpoints tried: the first one's key, then a set when there are more. */
  #tried: string | Set<string> | undefined;

  constructor(deps: ExchangeDeps, transport: Transport<R>, dest: Destination, observer: AttemptObserver | undefined, done: (r: ExchangeResult) => void) {
    this.deps = deps;
    this.transport = transport;
    this.dest = dest;
    this.policy = dest.policy;
    this.#observer = observer;
    this.#done = done;
    this.#budget = deps.budget(dest.name, this.policy['retry-budget']);
    this.#budget.request();
  }

  run(deadlines: Deadlines | undefined): void {
    this.totalMs = deadlines ? deadlines.totalMs : this.policy.timeout;
    this.headMs = deadlines ? deadlines.headMs : null;
    // The whole-request deadline: before the response head, 504; after it, the response is cut.
    if (this.totalMs !== null) this.#deadline = setTimeout(totalDeadline, this.totalMs, this);
    // The deadline of the response head (gRPC calls): cleared once the client has a response head.
    if (this.headMs !== null) this.#headDeadline = setTimeout(headDeadline, this.headMs, this);
    // The client went away: cancel the upstream request, stop retrying.
    this.transport.onClientGone(this.clientGone);
    let prepared: Promise<void> | void;
    try {
      prepared = this.transport.prepare();
    } catch (err) {
      return this.fail(err as ProxyError);
    }
    if (prepared) prepared.then(() => this.next(), (err: ProxyError) => this.fail(err));
    else this.next();
  }

  timedOut(err: ProxyError): void {
    this.open?.end(err);
    this.current?.cancel();
    this.fail(err);
  }

  /** A response under way is recorded with the bytes the client was sent (its own end may come later, or never). */
  readonly clientGone = (): void => {
    if (this.finished) return;
    this.open?.end(undefined); // not the endpoint's doing
    this.current?.cancel();
    if (!this.transport.responded) this.result.status = 499;
    this.result.bytesOut = this.transport.bytesOut;
    this.finish();
  };

  finish(): void {
    if (this.finished) return;
    this.finished = true;
    clearTimeout(this.#deadline);
    clearTimeout(this.#headDeadline);
    clearTimeout(this.perTry);
    this.result.bytesIn = this.transport.bytesIn;
    this.#done(this.result);
  }

  fail(err: ProxyError): void {
    if (this.finished) return;
    this.result.error = err;
    this.result.status = this.transport.fail(err) ?? this.result.status;
    this.finish();
  }

  next(): void {
    if (this.finished) return;
    const { deps, dest, policy, result } = this;
    const all = dest.endpoints();
    if (all.length === 0) return this.fail(new ProxyError('NO_HEALTHY_ENDPOINTS', `${dest.name} has no ready endpoints`));
    const usable = deps.health.usable(dest.name, policy, all);
    if (usable.length === 0) return this.fail(new ProxyError('CIRCUIT_OPEN', `every endpoint of ${dest.name} has its circuit breaker open`));
    const endpoint = deps.balancer.pick(this.#untried(usable))!;
    this.#addTried(endpoint.key);
    result.endpoint = endpoint;
    const n = ++result.attempts;
    const t = new Try<R>(this, endpoint, deps.health.admit(dest.name, endpoint), deps.balancer.start(endpoint), this.#observer?.attempt(n, { ip: endpoint.ip, port: endpoint.port, pod: endpoint.pod.name }));
    this.open = t;
    if (policy['per-try-timeout'] !== null) this.perTry = setTimeout(perTryDeadline, policy['per-try-timeout'], t);
    const current = this.transport.attempt(endpoint, n, t);
    this.current = current;
    // starting the attempt may have read (and refused) the client's body, and the client be gone
    // already: its attempt was not `current` yet when that was handled
    if (this.finished) current.cancel();
  }

  /** The endpoints not tried yet (all of them when every one was). */
  #untried(usable: readonly Endpoint[]): readonly Endpoint[] {
    const tried = this.#tried;
    if (tried === undefined) return usable;
    const untried = usable.filter(typeof tried === 'string' ? (ep) => ep.key !== tried : (ep) => !tried.has(ep.key));
    return untried.length ? untried : usable;
  }

  #addTried(key: string): void {
    const tried = this.#tried;
    if (tried === undefined) this.#tried = key;
    else if (typeof tried === 'string') this.#tried = new Set([tried, key]);
    else tried.add(key);
  }

  /** Retries (returns true), or sends this outcome to the client. */
  decide(c: Classification, response: R | undefined, err: ProxyError | undefined): boolean {
    const { transport, policy, result } = this;
    if (this.finished) {
      if (response !== undefined) transport.discard(response);
      return false;
    }
    const condition = retryCondition(c, policy['retry-on']);
    const mayRetry = condition !== undefined && transport.replayable && result.attempts <= policy['retry-attempts'] && !transport.responded;
    if (mayRetry && this.#budget.tryRetry()) {
      this.deps.onRetry?.(this.dest.name, err?.code === 'TIMEOUT' ? 'timeout' : condition);
      if (response !== undefined) transport.discard(response); // the connection goes back to the pool
      setTimeout(nextAttempt, backoffMs(result.attempts), this);
      return true;
    }
    if (response === undefined) {
      this.fail(err ?? new ProxyError('UPSTREAM_RESET', 'no response'));
      return false;
    }
    result.status = transport.status(response);
    result.upstreamMs = performance.now() - this.start;
    clearTimeout(this.#headDeadline);
    this.#headDeadline = undefined;
    transport.respond(response, this.responded);
    return false;
  }

  readonly responded = ({ bytes, cut }: { bytes: number; cut: boolean }): void => {
    this.result.bytesOut = bytes;
    if (cut && !this.result.error && !this.finished) this.result.error = new ProxyError('UPSTREAM_RESET', 'the response was cut');
    this.finish();
  };
}

/** One attempt: its endpoint's health ticket, balancer lease and span; the transport's handlers. */
class Try<R> implements AttemptHandlers<R> {
  readonly #x: Exchange<R>;
  readonly #endpoint: Endpoint;
  readonly #ticket: Ticket;
  readonly #lease: Lease;
  readonly #span: ReturnType<AttemptObserver['attempt']> | undefined;
  readonly #t0 = performance.now();
  #over = false;

  constructor(x: Exchange<R>, endpoint: Endpoint, ticket: Ticket, lease: Lease, span: ReturnType<AttemptObserver['attempt']> | undefined) {
    this.#x = x;
    this.#endpoint = endpoint;
    this.#ticket = ticket;
    this.#lease = lease;
    this.#span = span;
  }

  /** Records the attempt's result in health and balancer, once; false when it was over already. */
  #record(c: Classification | undefined, answered: boolean): boolean {
    if (this.#over) return false;
    this.#over = true;
    const x = this.#x;
    if (x.open === this) x.open = undefined;
    clearTimeout(x.perTry);
    this.#ticket.settle(c);
    this.#lease.done(c && (answered || c.failure) ? performance.now() - this.#t0 : undefined, c?.failure);
    return true;
  }

  /** The exchange ended around this attempt: the deadline passed (err), or the client went away (undefined). */
  end(err: ProxyError | undefined): void {
    if (this.#record(err && classify(undefined, err), false)) this.#span?.end({ status: 0, error: err, outcome: 'failure' });
  }

  #outcome(c: Classification, response: R | undefined, err: ProxyError | undefined): void {
    const x = this.#x;
    if (!this.#record(c, response !== undefined)) {
      if (response !== undefined) x.transport.discard(response);
      return;
    }
    const retried = x.decide(c, response, err);
    this.#span?.end({ status: response !== undefined ? x.transport.status(response) : (err?.status ?? 0), error: err, outcome: retried ? 'retry' : c.failure ? 'failure' : 'success' });
  }

  perTryTimedOut(): void {
    const x = this.#x;
    x.current?.cancel();
    const err = new ProxyError('TIMEOUT', `no response from ${this.#endpoint.key} within the per-try timeout of ${x.policy['per-try-timeout']} ms`);
    this.#outcome(classify(undefined, err), undefined, err);
  }

  onResponse(response: R): void {
    this.#outcome(this.#x.transport.classify(response), response, undefined);
  }

  onError(err: ProxyError): void {
    this.#outcome(classify(undefined, err), undefined, err);
  }
}
