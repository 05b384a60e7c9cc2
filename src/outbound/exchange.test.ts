// Unit tests of the outbound exchange (./exchange.ts), one stage at a time: the deadline, retries
// (retry-on, retry-attempts, the budget, replay, the per-try timeout), endpoint health (breaker,
// failure accrual), balancing, and the result. They drive the real exchange with the real
// balancer, health table and retry budget, and a fake Transport whose attempts the test answers,
// fails, or leaves hanging. Time is node:test's mock timers: the exchange's deadlines and backoff
// are setTimeout, and the balancer, accrual and budget are given the mocked Date.now as their
// clock, and performance.now (which times the tries whose latencies the balancer learns) follows it.
// The same behaviour end to end, through real sidecars: test/resilience.test.ts.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { codes, ProxyError, type ProxyErrorCode } from '../errors/errors.ts';
import { classify, type Classification } from '../classify/classify.ts';
import { defaultsOf, policyAnnotations, type Policy, type RetryOn } from '../config/annotations.ts';
import { P2CBalancer, type BalancerOptions } from '../balance/p2c.ts';
import { HealthTable } from '../breaker/endpoint-health.ts';
import { RetryBudget } from '../retry/budget.ts';
import type { Endpoint } from '../registry/model.ts';
import type { Attempt, AttemptHandlers, Transport } from '../upstream/transport.ts';
import { runExchange, type AttemptObserver, type Deadlines, type ExchangeDeps, type ExchangeResult } from './exchange.ts';

/** The fake upstream's response head. */
interface Head {
  readonly status: number;
}

/** One try as the transport started it: the test answers it, fails it, or leaves it hanging. */
class FakeAttempt implements Attempt {
  readonly n: number;
  readonly endpoint: Endpoint;
  readonly #handlers: AttemptHandlers<Head>;
  cancelled = 0;

  constructor(n: number, endpoint: Endpoint, handlers: AttemptHandlers<Head>) {
    this.n = n;
    this.endpoint = endpoint;
    this.#handlers = handlers;
  }

  cancel(): void {
    this.cancelled++;
  }

  answer(status: number): Head {
    const head = { status };
    this.#handlers.onResponse(head);
    return head;
  }

  fail(code: ProxyErrorCode): ProxyError {
    const err = new ProxyError(code, `fake ${code}`);
    this.#handlers.onError(err);
    return err;
  }
}

/** The client's request as the exchange drives it; records what the client was sent. */
class FakeTransport implements Transport<Head> {
  replayable = true;
  responded = false;
  bytesIn = 0;
  bytesOut = 0;
  /** Keeps the response body streaming until `endResponse` (else it ends at once, 2 bytes). */
  holdResponse = false;
  readonly attempts: FakeAttempt[] = [];
  readonly discarded: Head[] = [];
  /** The proxy errors handed to the client side (sent as a response, or cutting one). */
  readonly failed: ProxyError[] = [];
  sent: Head | undefined;
  #respondDone: ((r: { bytes: number; cut: boolean }) => void) | undefined;
  #gone: (() => void) | undefined;
  prepared: () => Promise<void> | void = () => undefined;

  prepare(): Promise<void> | void {
    return this.prepared();
  }

  /** Runs inside `attempt`, before it returns (what a transport may do while a try starts). */
  whileStarting: ((a: FakeAttempt) => void) | undefined;

  attempt(endpoint: Endpoint, n: number, handlers: AttemptHandlers<Head>): Attempt {
    const a = new FakeAttempt(n, endpoint, handlers);
    this.attempts.push(a);
    this.whileStarting?.(a);
    return a;
  }

  classify(response: Head): Classification {
    return classify(response.status, undefined);
  }

  status(response: Head): number {
    return response.status;
  }

  discard(response: Head): void {
    this.discarded.push(response);
  }

  respond(response: Head, done: (r: { bytes: number; cut: boolean }) => void): void {
    assert.equal(this.sent, undefined, 'one response goes to the client');
    this.sent = response;
    this.responded = true;
    this.#respondDone = done;
    if (!this.holdResponse) this.endResponse(2, false);
  }

  endResponse(bytes: number, cut: boolean): void {
    this.bytesOut = bytes;
    this.#respondDone!({ bytes, cut });
  }

  fail(err: ProxyError): number | undefined {
    this.failed.push(err);
    return this.responded ? undefined : err.status;
  }

  onClientGone(listener: () => void): void {
    this.#gone = listener;
  }

  clientGone(): void {
    this.#gone!();
  }

  /** The last try started. */
  get last(): FakeAttempt {
    const a = this.attempts.at(-1);
    assert.ok(a, 'a try was started');
    return a;
  }
}

/** One request: its transport, what its attempt spans saw, and the results reported. */
interface Call {
  readonly transport: FakeTransport;
  /** "n ip outcome" per ended attempt span */
  readonly spans: string[];
  readonly results: ExchangeResult[];
}

/** The one result (it is reported once). */
function resultOf(call: Call): ExchangeResult {
  assert.equal(call.results.length, 1, 'the result is reported once');
  return call.results[0]!;
}

const ep = (ip: string): Endpoint => ({ key: `${ip}:8080`, ip, port: 8080, pod: { name: `pod-${ip.split('.').at(-1)}`, namespace: 'default', ip, labels: {}, serviceAccount: 'default', meshed: true, ready: true } });
const A = ep('10.0.0.1');
const B = ep('10.0.0.2');
const C = ep('10.0.0.3');
const DEST = 'web.default';
/** Longer than any backoff (full jitter up to 250 ms). */
const BACKOFF_MAX = 250;
const flush = () => new Promise((resolve) => setImmediate(resolve));
/**
 * A balancer with no preference of its own: a failure weighs no more than the default estimate,
 * nothing decays, and (random 0) a tie goes to the first candidate. Where an endpoint is avoided
 * with it, the exchange or endpoint health avoided it, not the latency estimates.
 */
const NEUTRAL: BalancerOptions = { failurePenalty: 1, decayMs: Infinity };

interface Options {
  endpoints?: Endpoint[];
  policy?: Partial<Policy>;
  /** random defaults to 0: of two candidates the first, and a tie to the first (A before B) */
  balancer?: BalancerOptions;
  /** the budget's floor (the sidecar's default: 10 retries a second) */
  minRetriesPerSecond?: number;
}

/** One destination's resilience state, as the sidecar keeps it, on mocked timers from 0. */
function setup(t: TestContext, options: Options = {}) {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 });
  // the exchange times its tries with performance.now() and the balancer learns from those
  // latencies: on the mocked clock too, or a loaded machine's real milliseconds steer the picks
  t.mock.method(performance, 'now', () => Date.now());
  const now = () => Date.now();
  const balancer = new P2CBalancer({ now, random: () => 0, ...options.balancer });
  const health = new HealthTable({ now });
  t.after(() => health.close());
  /** The destination's budget (the sidecar keeps one per destination), and the ratio it was last asked with. */
  const budget = { ratio: NaN, budget: undefined as RetryBudget | undefined };
  const retries: (RetryOn | 'timeout')[] = [];
  // the exchange reads only these (the pools are its transports')
  const deps = {
    balancer,
    health,
    budget: (destination: string, ratio: number) => {
      assert.equal(destination, DEST);
      budget.ratio = ratio;
      return (budget.budget ??= new RetryBudget({ ratio, minPerSecond: options.minRetriesPerSecond ?? 10, now }));
    },
    onRetry: (destination: string, reason: RetryOn | 'timeout') => {
      assert.equal(destination, DEST);
      retries.push(reason);
    },
  } as Pick<ExchangeDeps, 'balancer' | 'health' | 'budget' | 'onRetry'> as ExchangeDeps;
  const policy: Policy = { ...defaultsOf(policyAnnotations), ...options.policy };
  const endpoints = options.endpoints ?? [A, B];

  function send(transport = new FakeTransport(), deadlines?: Deadlines): Call {
    const call: Call = { transport, spans: [], results: [] };
    const observer: AttemptObserver = {
      attempt: (n, endpoint) => ({ end: (r) => void call.spans.push(`${n} ${endpoint.ip} ${r.outcome}`) }),
    };
    runExchange(deps, transport, { name: DEST, endpoints: () => endpoints, policy }, observer, (r) => call.results.push(r), deadlines);
    return call;
  }

  /** Answers each try with `answer` and waits out the backoffs, until the result. */
  function complete(call: Call, answer: (a: FakeAttempt) => void): ExchangeResult {
    for (;;) {
      const tries = call.transport.attempts.length;
      answer(call.transport.last);
      if (call.results.length) return resultOf(call);
      t.mock.timers.tick(BACKOFF_MAX);
      assert.equal(call.transport.attempts.length, tries + 1, 'no result: another try');
    }
  }

  const stateOf = (e: Endpoint) => health.get(DEST, e.key, policy);
  return { send, complete, tick: (ms: number) => t.mock.timers.tick(ms), balancer, health, stateOf, retries, budget, policy };
}

test('deadline: a hanging try ends at the timeout with a 504, is cancelled, and nothing follows it', (t) => {
  const s = setup(t, { policy: { timeout: 1000 } });
  const call = s.send();
  const hung = call.transport.last;
  s.tick(999);
  assert.equal(call.results.length, 0);
  assert.equal(hung.cancelled, 0);
  s.tick(1);
  const r = resultOf(call);
  assert.equal(r.error?.code, 'TIMEOUT');
  assert.equal(r.status, 504);
  assert.equal(r.attempts, 1);
  assert.equal(r.endpoint, A);
  assert.equal(hung.cancelled, 1, 'the upstream request is cancelled');
  assert.deepEqual(call.transport.failed, [r.error], "the client is sent the proxy's timeout");
  assert.deepEqual(call.spans, ['1 10.0.0.1 failure']);
  assert.equal(s.stateOf(A).snapshot().consecutiveFailures, 1, 'a try cut by the deadline counts against its endpoint');
  assert.equal(s.balancer.snapshot()[A.key]!.pending, 0, "the balancer's lease is released");
  s.tick(60_000);
  assert.equal(call.transport.attempts.length, 1, 'the deadline is the whole request: no retry after it');
  assert.equal(call.results.length, 1);
});

test('deadline: it ends a retry waiting out its backoff, and no try starts after it', (t) => {
  const s = setup(t, { policy: { timeout: 10 } });
  t.mock.method(Math, 'random', () => 0.99); // the first retry's backoff: 24 of at most 25 ms
  const call = s.send();
  call.transport.last.answer(503);
  assert.deepEqual(s.retries, ['gateway-error']);
  s.tick(10);
  const r = resultOf(call);
  assert.equal(r.error?.code, 'TIMEOUT');
  assert.equal(r.status, 504);
  assert.equal(r.attempts, 1);
  s.tick(BACKOFF_MAX);
  assert.equal(call.transport.attempts.length, 1, 'the retry did not start');
  assert.equal(call.results.length, 1);
});

test('deadline: past the response head it cuts the response; the status stays the upstream one', (t) => {
  const s = setup(t, { policy: { timeout: 1000 } });
  const call = s.send();
  call.transport.holdResponse = true;
  s.tick(100);
  call.transport.last.answer(200);
  assert.equal(call.results.length, 0, 'the body is still streaming');
  s.tick(900);
  const r = resultOf(call);
  assert.equal(r.status, 200);
  assert.equal(r.error?.code, 'TIMEOUT');
  assert.equal(call.transport.last.cancelled, 1);
  assert.deepEqual(call.transport.failed, [r.error], 'the response is cut');
});

test('gRPC head deadline: a try with no response head by then gets a 504; a response head in time may stream past it', (t) => {
  const s = setup(t, { policy: { timeout: 1000 } });
  const deadlines = { totalMs: null, headMs: 500 };
  const hung = s.send(undefined, deadlines);
  s.tick(499);
  assert.equal(hung.results.length, 0);
  s.tick(1);
  assert.equal(resultOf(hung).error?.code, 'TIMEOUT');
  assert.equal(resultOf(hung).status, 504);
  assert.equal(hung.transport.last.cancelled, 1);

  const streaming = new FakeTransport();
  streaming.holdResponse = true;
  const call = s.send(streaming, deadlines);
  s.tick(100);
  call.transport.last.answer(200);
  s.tick(10_000); // past the head deadline and the policy timeout (not a deadline of gRPC calls)
  assert.equal(call.results.length, 0, 'the stream lives on');
  assert.equal(call.transport.last.cancelled, 0);
  streaming.endResponse(1234, false);
  const r = resultOf(call);
  assert.equal(r.status, 200);
  assert.equal(r.error, undefined);
  assert.equal(r.bytesOut, 1234);
});

test('per-try timeout: the hung try is cancelled and retried on another endpoint, which answers', (t) => {
  // with this balancer every try would go to A: only the exchange's own choice of an endpoint
  // not tried yet sends the retry to B
  const s = setup(t, { policy: { 'per-try-timeout': 100 }, balancer: NEUTRAL });
  const call = s.send();
  const first = call.transport.last;
  assert.equal(first.endpoint, A);
  s.tick(99);
  assert.equal(first.cancelled, 0);
  s.tick(1);
  assert.equal(first.cancelled, 1, 'the timed-out try is cancelled');
  assert.deepEqual(s.retries, ['timeout']);
  assert.equal(call.results.length, 0);
  // the retry starts after a jittered backoff: step to it, so the second try's own per-try
  // timer counts from when it started (ticking BACKOFF_MAX at once ran it past 99 ms of it)
  for (let ms = 0; call.transport.attempts.length < 2 && ms < BACKOFF_MAX; ms++) s.tick(1);
  const second = call.transport.last;
  assert.equal(second.n, 2);
  assert.equal(second.endpoint, B, 'the retry goes to the endpoint not tried yet');
  s.tick(99);
  second.answer(200);
  s.tick(1000); // the second try's per-try timer was cleared with its answer
  const r = resultOf(call);
  assert.deepEqual({ status: r.status, error: r.error, attempts: r.attempts, endpoint: r.endpoint }, { status: 200, error: undefined, attempts: 2, endpoint: B });
  assert.deepEqual(call.spans, ['1 10.0.0.1 retry', '2 10.0.0.2 success']);
  assert.equal(second.cancelled, 0);
});

test('per-try timeout: with every try timing out, the client gets a 504 after 1 + retry-attempts tries', (t) => {
  const s = setup(t, { policy: { 'per-try-timeout': 100, 'retry-attempts': 1 } });
  const call = s.send();
  s.tick(100);
  s.tick(BACKOFF_MAX);
  assert.equal(call.transport.attempts.length, 2);
  s.tick(100);
  const r = resultOf(call);
  assert.equal(r.error?.code, 'TIMEOUT');
  assert.equal(r.status, 504);
  assert.equal(r.attempts, 2);
  assert.ok(call.transport.attempts.every((a) => a.cancelled === 1));
});

// the default retry-on: connect-failure, reset, gateway-error
const RETRIED_BY_DEFAULT: Partial<Record<ProxyErrorCode, RetryOn | 'timeout'>> = { CONNECT_FAILURE: 'connect-failure', UPSTREAM_RESET: 'reset', TIMEOUT: 'timeout' };

test('retry-on, each ProxyError a try can fail with: connect failures, resets and timeouts are retried by default, the others go to the client', async (t) => {
  for (const code of Object.keys(codes) as ProxyErrorCode[]) {
    await t.test(code, (t) => {
      const s = setup(t);
      const call = s.send();
      const err = call.transport.last.fail(code);
      const reason = RETRIED_BY_DEFAULT[code];
      if (reason) {
        assert.deepEqual(s.retries, [reason]);
        s.tick(BACKOFF_MAX);
        assert.equal(call.transport.attempts.length, 2);
        call.transport.last.answer(200);
        const r = resultOf(call);
        assert.deepEqual({ status: r.status, error: r.error, attempts: r.attempts }, { status: 200, error: undefined, attempts: 2 });
        assert.deepEqual(call.transport.failed, []);
      } else {
        const r = resultOf(call);
        assert.deepEqual(s.retries, []);
        assert.equal(r.error, err, 'the error the try failed with');
        assert.equal(r.status, codes[code].status);
        assert.equal(r.attempts, 1);
        assert.deepEqual(call.transport.failed, [err]);
        s.tick(BACKOFF_MAX);
        assert.equal(call.transport.attempts.length, 1);
      }
    });
  }
});

test('retry-on, response statuses: which are retried under which conditions; a retried response is discarded', async (t) => {
  const cases: { status: number; retryOn?: RetryOn[]; retried: RetryOn | undefined }[] = [
    { status: 502, retried: 'gateway-error' },
    { status: 503, retried: 'gateway-error' },
    { status: 504, retried: 'gateway-error' },
    { status: 500, retried: undefined },
    { status: 500, retryOn: ['5xx'], retried: '5xx' },
    { status: 503, retryOn: ['connect-failure'], retried: undefined },
    { status: 409, retried: undefined },
    { status: 409, retryOn: ['retriable-4xx'], retried: 'retriable-4xx' },
    { status: 404, retryOn: ['5xx', 'retriable-4xx', 'gateway-error'], retried: undefined },
    { status: 200, retryOn: ['5xx', 'retriable-4xx', 'gateway-error', 'reset', 'connect-failure'], retried: undefined },
  ];
  for (const c of cases) {
    await t.test(`${c.status}, retry-on ${c.retryOn?.join(',') ?? 'default'}`, (t) => {
      const s = setup(t, { policy: c.retryOn ? { 'retry-on': c.retryOn } : {} });
      const call = s.send();
      const first = call.transport.last.answer(c.status);
      if (c.retried) {
        assert.deepEqual(s.retries, [c.retried]);
        assert.deepEqual(call.transport.discarded, [first]);
        s.tick(BACKOFF_MAX);
        call.transport.last.answer(200);
        assert.equal(resultOf(call).attempts, 2);
        assert.equal(call.transport.sent?.status, 200);
      } else {
        const r = resultOf(call);
        assert.deepEqual(s.retries, []);
        assert.deepEqual({ status: r.status, error: r.error, attempts: r.attempts }, { status: c.status, error: undefined, attempts: 1 });
        assert.equal(call.transport.sent, first, 'the response goes to the client');
        assert.deepEqual(call.transport.discarded, []);
      }
    });
  }
});

test('retry-attempts: a failure every time makes 1 + retry-attempts tries, and the last response goes to the client', async (t) => {
  for (const retries of [0, 1, 3]) {
    await t.test(`retry-attempts ${retries}`, (t) => {
      const s = setup(t, { endpoints: [A, B, C], policy: { 'retry-attempts': retries } });
      const call = s.send();
      const r = s.complete(call, (a) => a.answer(503));
      assert.equal(r.attempts, 1 + retries);
      assert.equal(r.status, 503);
      assert.equal(r.error, undefined);
      assert.equal(call.transport.discarded.length, retries);
      assert.equal(call.transport.sent?.status, 503);
      assert.deepEqual(
        call.spans,
        call.transport.attempts.map((a, i) => `${a.n} ${a.endpoint.ip} ${i < retries ? 'retry' : 'failure'}`),
      );
    });
  }
});

test('retry budget: once spent, failures go to the client unretried; it is the policy ratio of requests', (t) => {
  const s = setup(t, { policy: { 'retry-attempts': 3, 'retry-budget': 0.5, 'consecutive-failures': 0, 'breaker-volume-threshold': 1000 }, minRetriesPerSecond: 0 });
  const attempts: number[] = [];
  for (let i = 0; i < 6; i++) {
    const call = s.send();
    attempts.push(s.complete(call, (a) => a.answer(503)).attempts);
    assert.equal(resultOf(call).status, 503);
  }
  // retries may be up to half the requests: 1 of 1, then none of 2 (1 >= 1), 1 more of 3, ...
  assert.deepEqual(attempts, [2, 1, 2, 1, 2, 1]);
  assert.equal(s.retries.length, 3);
  assert.equal(s.budget.ratio, 0.5, "the budget is the destination's, with the policy's ratio");
  s.tick(11_000); // a whole window later the budget is back
  assert.equal(s.complete(s.send(), (a) => a.answer(503)).attempts, 2);
});

test('a request whose body cannot be replayed is not retried, whatever the failure', async (t) => {
  const failures: Record<string, (a: FakeAttempt) => void> = {
    '503': (a) => void a.answer(503),
    'connect failure': (a) => void a.fail('CONNECT_FAILURE'),
    reset: (a) => void a.fail('UPSTREAM_RESET'),
  };
  for (const [name, fail] of Object.entries(failures)) {
    await t.test(name, (t) => {
      const s = setup(t);
      const transport = new FakeTransport();
      transport.replayable = false;
      const call = s.send(transport);
      fail(transport.last);
      const r = resultOf(call);
      assert.equal(r.attempts, 1);
      assert.deepEqual(s.retries, []);
      assert.ok(r.status === 503 || r.status === 502);
      s.tick(BACKOFF_MAX);
      assert.equal(transport.attempts.length, 1);
    });
  }
});

test('prepare failing (e.g. a body over the limit) sends its error with no try', (t) => {
  const s = setup(t);
  const transport = new FakeTransport();
  const err = new ProxyError('BODY_TOO_LARGE', 'too large');
  transport.prepared = () => Promise.reject(err);
  const call = s.send(transport);
  return flush().then(() => {
    const r = resultOf(call);
    assert.deepEqual({ status: r.status, error: r.error, attempts: r.attempts }, { status: 413, error: err, attempts: 0 });
    assert.deepEqual(transport.attempts, []);
  });
});

test('deadline while the body is read for replay: 504 with no try, and none after the body is in', async (t) => {
  const s = setup(t, { policy: { timeout: 1000 } });
  const transport = new FakeTransport();
  let bodyIn: (() => void) | undefined;
  transport.prepared = () => new Promise<void>((resolve) => (bodyIn = resolve));
  const call = s.send(transport);
  s.tick(1000);
  const r = resultOf(call);
  assert.deepEqual({ status: r.status, code: r.error?.code, attempts: r.attempts }, { status: 504, code: 'TIMEOUT', attempts: 0 });
  bodyIn!();
  await flush();
  assert.deepEqual(transport.attempts, []);
  assert.equal(call.results.length, 1);
});

test('balancing: after an endpoint fails, the balancer sends the next requests to the other one', (t) => {
  const s = setup(t, { policy: { 'retry-attempts': 0 } });
  const first = s.send();
  assert.equal(first.transport.last.endpoint, A, 'of two equal endpoints, the tie goes to A (the random source)');
  first.transport.last.answer(500);
  assert.equal(resultOf(first).status, 500);
  assert.equal(s.stateOf(A).available, true, 'A is neither ejected nor open: only the balancer keeps it out');
  for (let i = 0; i < 5; i++) {
    const call = s.send();
    assert.equal(call.transport.last.endpoint, B, `request ${i + 2}`);
    call.transport.last.answer(200);
  }
  assert.ok(s.balancer.cost(A.key) > s.balancer.cost(B.key) * 5, 'the failure weighs on A');
});

test('balancing: of three endpoints, a retry goes to one not tried yet', (t) => {
  // with this balancer every try would go to A (503s do not eject it): only the exchange's own
  // choice of endpoints not tried yet spreads the retries
  const s = setup(t, { endpoints: [A, B, C], policy: { 'retry-attempts': 3 }, balancer: NEUTRAL });
  const call = s.send();
  const r = s.complete(call, (a) => a.answer(503));
  assert.deepEqual(call.transport.attempts.map((a) => a.endpoint), [A, B, C, A], 'once each has been tried, any may be');
  assert.equal(s.stateOf(A).available, true);
  assert.equal(r.status, 503);
  assert.equal(r.endpoint, A, 'the result names the last endpoint tried');
});

test('failure accrual: N failures in a row eject an endpoint; the next requests go elsewhere; after the backoff one probe may close it', (t) => {
  const s = setup(t, { policy: { 'consecutive-failures': 3, 'retry-attempts': 0, 'breaker-volume-threshold': 1000 }, balancer: NEUTRAL });
  for (let i = 1; i <= 3; i++) {
    const call = s.send();
    assert.equal(call.transport.last.endpoint, A, `failure ${i} at A`);
    call.transport.last.answer(500);
    assert.equal(s.stateOf(A).accrual, i < 3 ? 'closed' : 'ejected');
  }
  for (let i = 0; i < 3; i++) {
    const call = s.send();
    assert.equal(call.transport.last.endpoint, B, 'A is ejected');
    call.transport.last.answer(200);
  }
  s.tick(1000); // the first ejection's backoff
  assert.equal(s.stateOf(A).accrual, 'probing');
  const probe = s.send();
  assert.equal(probe.transport.last.endpoint, A, 'the probe');
  probe.transport.last.answer(200);
  assert.equal(s.stateOf(A).accrual, 'closed');
});

test('failure accrual: a connection failure ejects at once, and the retry goes to another endpoint', (t) => {
  const s = setup(t, { policy: { 'consecutive-failures': 5 } });
  const call = s.send();
  call.transport.last.fail('CONNECT_FAILURE');
  assert.equal(s.stateOf(A).accrual, 'ejected');
  s.tick(BACKOFF_MAX);
  assert.equal(call.transport.last.endpoint, B);
  call.transport.last.answer(200);
  assert.equal(resultOf(call).status, 200);
  assert.equal(s.send().transport.last.endpoint, B, 'the next request too');
});

test('breaker: every endpoint open gives 503 circuit-open without a try', async (t) => {
  const s = setup(t, { endpoints: [A], policy: { 'breaker-volume-threshold': 1, 'breaker-error-threshold': 50, 'consecutive-failures': 0, 'retry-attempts': 0 } });
  s.send().transport.last.answer(500);
  await flush(); // the breaker counts the attempt asynchronously
  assert.equal(s.stateOf(A).breaker, 'open');
  const call = s.send();
  const r = resultOf(call);
  assert.deepEqual({ status: r.status, code: r.error?.code, attempts: r.attempts }, { status: 503, code: 'CIRCUIT_OPEN', attempts: 0 });
  assert.deepEqual(call.transport.attempts, []);
});

test('no endpoints gives 503 no-healthy-endpoints without a try', (t) => {
  const s = setup(t, { endpoints: [] });
  const call = s.send();
  const r = resultOf(call);
  assert.deepEqual({ status: r.status, code: r.error?.code, attempts: r.attempts }, { status: 503, code: 'NO_HEALTHY_ENDPOINTS', attempts: 0 });
  assert.deepEqual(call.transport.attempts, []);
});

test('the client going away cancels the try and counts nothing against the endpoint', async (t) => {
  // one failure would eject A: the abandoned try must not count as one
  const s = setup(t, { policy: { 'consecutive-failures': 1, 'per-try-timeout': 500 } });
  const call = s.send();
  const hung = call.transport.last;
  s.tick(100);
  call.transport.clientGone();
  const r = resultOf(call);
  assert.equal(hung.cancelled, 1);
  assert.deepEqual({ status: r.status, error: r.error, attempts: r.attempts }, { status: 499, error: undefined, attempts: 1 });
  assert.deepEqual(call.transport.failed, [], 'nothing is sent to a client that is gone');
  hung.fail('UPSTREAM_RESET'); // the cancelled try's socket closing
  s.tick(60_000); // past the per-try timeout, backoffs and the deadline
  assert.equal(call.transport.attempts.length, 1, 'no retry');
  assert.equal(call.results.length, 1);
  await flush(); // what the breaker counts, it counts asynchronously
  assert.deepEqual(s.stateOf(A).snapshot(), { breaker: 'closed', accrual: 'closed', consecutiveFailures: 0, ejectedForMs: 0 });
  // B was read at A's pick and has not been used since: both decayed alike
  assert.deepEqual(s.balancer.snapshot()[A.key], { ...s.balancer.snapshot()[B.key], pending: 0 }, 'no latency sample, no failure penalty, the lease released');
});

test('the client going away while a try starts: that try is cancelled once it is returned', (t) => {
  const s = setup(t);
  const transport = new FakeTransport();
  transport.whileStarting = () => transport.clientGone();
  const call = s.send(transport);
  assert.equal(resultOf(call).status, 499);
  assert.equal(transport.last.cancelled, 1);
});

test("a try that fails while it starts (the client's body refused as it is sent): its error goes to the client, the try is cancelled, the endpoint not blamed", (t) => {
  const s = setup(t, { policy: { 'consecutive-failures': 1 } });
  const transport = new FakeTransport();
  transport.whileStarting = (a) => void a.fail('BODY_TOO_LARGE');
  const call = s.send(transport);
  const r = resultOf(call);
  assert.deepEqual({ status: r.status, code: r.error?.code, attempts: r.attempts }, { status: 413, code: 'BODY_TOO_LARGE', attempts: 1 });
  assert.equal(transport.last.cancelled, 1);
  assert.equal(s.stateOf(A).accrual, 'closed');
  assert.equal(s.stateOf(A).snapshot().consecutiveFailures, 0);
});

test('the client going away during a backoff: no retry starts', (t) => {
  const s = setup(t);
  const call = s.send();
  call.transport.last.answer(503);
  assert.deepEqual(s.retries, ['gateway-error']);
  call.transport.clientGone();
  assert.equal(resultOf(call).status, 499);
  s.tick(BACKOFF_MAX);
  assert.equal(call.transport.attempts.length, 1);
  assert.equal(call.results.length, 1);
});

test('the client going away while the response streams: the upstream status and the bytes it was sent', (t) => {
  const s = setup(t);
  const transport = new FakeTransport();
  transport.holdResponse = true;
  const call = s.send(transport);
  transport.last.answer(200);
  transport.bytesOut = 100;
  transport.clientGone();
  const r = resultOf(call);
  assert.deepEqual({ status: r.status, error: r.error, bytesOut: r.bytesOut }, { status: 200, error: undefined, bytesOut: 100 });
  assert.equal(transport.last.cancelled, 1);
  transport.endResponse(100, true); // the transport's own end after the cancel
  assert.equal(call.results.length, 1);
});

test('the result is reported once, with the attempts, the endpoint that answered and no error; late events change nothing', (t) => {
  const s = setup(t, { policy: { timeout: 1000 } });
  const call = s.send();
  call.transport.bytesIn = 10;
  const first = call.transport.last;
  first.answer(503);
  s.tick(BACKOFF_MAX);
  call.transport.last.answer(200);
  const r = resultOf(call);
  assert.deepEqual(
    { status: r.status, error: r.error, attempts: r.attempts, endpoint: r.endpoint, bytesIn: r.bytesIn, bytesOut: r.bytesOut },
    { status: 200, error: undefined, attempts: 2, endpoint: B, bytesIn: 10, bytesOut: 2 },
  );
  assert.equal(typeof r.upstreamMs, 'number');
  assert.deepEqual(call.spans, ['1 10.0.0.1 retry', '2 10.0.0.2 success']);
  const late = first.answer(200); // a second answer of a try that is over
  assert.ok(call.transport.discarded.includes(late), 'a late response is discarded');
  s.tick(60_000); // the deadline was cleared
  assert.equal(call.results.length, 1);
  assert.deepEqual(call.transport.failed, []);
  assert.equal(call.spans.length, 2);
});

test('a cut response is reported with the upstream status and an upstream-reset error', (t) => {
  const s = setup(t);
  const transport = new FakeTransport();
  transport.holdResponse = true;
  const call = s.send(transport);
  transport.last.answer(200);
  transport.endResponse(50, true);
  const r = resultOf(call);
  assert.deepEqual({ status: r.status, code: r.error?.code, bytesOut: r.bytesOut }, { status: 200, code: 'UPSTREAM_RESET', bytesOut: 50 });
});
