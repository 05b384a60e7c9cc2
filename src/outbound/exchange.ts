// One outbound HTTP request through the resilience stack, in linkerd2-proxy's order:
//   deadline   the whole-request `timeout` (504 timeout; the upstream request is cancelled)
//   retry      above balancing, so a retry goes to another endpoint where one exists; only
//              replayable requests, `retry-on` conditions, `retry-attempts`, backoff with
//              full jitter, the destination's retry budget
//   balance    power of two choices over EWMA latency, skipping open breakers and ejected
//              endpoints (all open: 503 circuit-open at once)
//   endpoint   circuit breaker -> per-try timeout -> connection pool -> forward
// The state of one request lives in this handler; the pipeline stays a list of stages.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { ProxyError } from '../errors/errors.ts';
import { sendProxyError } from '../errors/response.ts';
import { classify, retryCondition, type Classification } from '../classify/classify.ts';
import { prepareRequestHeaders, type Attempt, type Forwarder } from '../http/forward.ts';
import { IDEMPOTENT, readReplayable, replay, type Body } from '../retry/replay.ts';
import { backoffMs } from '../retry/backoff.ts';
import { breakerSettings, type HealthTable } from '../breaker/endpoint-health.ts';
import type { RetryBudget } from '../retry/budget.ts';
import type { P2CBalancer } from '../balance/p2c.ts';
import type { ConnectionPools } from '../upstream/pool.ts';
import { endpointDestination } from '../upstream/dial.ts';
import type { Endpoint } from '../registry/model.ts';
import type { Policy, RetryOn } from '../config/annotations.ts';

export interface ExchangeDeps {
  readonly forwarder: Forwarder;
  readonly pools: ConnectionPools;
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

export function runExchange(deps: ExchangeDeps, req: IncomingMessage, res: ServerResponse, dest: Destination, observer: AttemptObserver | undefined, done: (r: ExchangeResult) => void): void {
  const start = performance.now();
  const { policy } = dest;
  const result: ExchangeResult = { status: 0, error: undefined, endpoint: undefined, attempts: 0, bytesIn: 0, bytesOut: 0, upstreamMs: undefined };
  const budget = deps.budget(dest.name, policy['retry-budget']);
  budget.request();

  let current: Attempt | undefined;
  let perTry: NodeJS.Timeout | undefined;
  let finished = false;
  const tried = new Set<string>();
  let body: Body;

  const finish = () => {
    if (finished) return;
    finished = true;
    clearTimeout(deadline);
    clearTimeout(perTry);
    done(result);
  };

  const fail = (err: ProxyError) => {
    if (finished) return;
    result.error = err;
    result.status = res.headersSent ? result.status : err.status;
    sendProxyError(res, err);
    finish();
  };

  // The whole-request deadline: before the response head, 504; after it, the response is cut.
  const deadline = setTimeout(() => {
    current?.cancel();
    fail(new ProxyError('TIMEOUT', `no complete response within ${policy.timeout} ms`));
  }, policy.timeout);

  // The client went away: cancel the upstream request, stop retrying.
  res.once('close', () => {
    if (res.writableFinished || finished) return;
    current?.cancel();
    if (!res.headersSent) result.status = 499;
    finish();
  });

  const wantsRetry = req.headers['x-tsmesh-retry'] === 'true';
  delete req.headers['x-tsmesh-retry'];
  prepareRequestHeaders(req);

  const next = (): void => {
    if (finished) return;
    const all = dest.endpoints();
    if (all.length === 0) return fail(new ProxyError('NO_HEALTHY_ENDPOINTS', `${dest.name} has no ready endpoints`));
    const settings = breakerSettings(policy);
    const healthy = all.filter((ep) => deps.health.get(ep.key, dest.name, settings).available);
    if (healthy.length === 0) return fail(new ProxyError('CIRCUIT_OPEN', `every endpoint of ${dest.name} has its circuit breaker open`));
    let pool = healthy.filter((ep) => !deps.health.peek(ep.key)!.ejected);
    if (pool.length === 0) pool = healthy; // all ejected: try them anyway rather than fail
    const untried = pool.filter((ep) => !tried.has(ep.key));
    const endpoint = deps.balancer.pick(untried.length ? untried : pool)!;
    tried.add(endpoint.key);
    result.endpoint = endpoint;
    const n = ++result.attempts;

    const health = deps.health.peek(endpoint.key)!;
    let settle!: (ok: boolean) => void;
    health.admit(new Promise<boolean>((resolve) => (settle = resolve)));
    const lease = deps.balancer.start(endpoint);
    const span = observer?.attempt(n, { ip: endpoint.ip, port: endpoint.port, pod: endpoint.pod.name });
    const t0 = performance.now();
    req.headers['x-tsmesh-attempt'] = String(n);

    let over = false;
    const outcome = (c: Classification, proxyRes: IncomingMessage | undefined, err: ProxyError | undefined) => {
      if (over) return;
      over = true;
      clearTimeout(perTry);
      settle(!c.failure);
      lease.done(proxyRes ? performance.now() - t0 : undefined);
      if (err?.code === 'CONNECT_FAILURE') health.connectFailed();
      const retried = decide(c, proxyRes, err);
      span?.end({ status: proxyRes?.statusCode ?? err?.status ?? 0, error: err, outcome: retried ? 'retry' : c.failure ? 'failure' : 'success' });
    };

    if (policy['per-try-timeout'] !== null) {
      perTry = setTimeout(() => {
        current?.cancel();
        const err = new ProxyError('TIMEOUT', `no response from ${endpoint.key} within the per-try timeout of ${policy['per-try-timeout']} ms`);
        outcome(classify(undefined, err), undefined, err);
      }, policy['per-try-timeout']);
    }

    const agent = deps.pools.agentFor(endpointDestination(endpoint));
    let stream: Readable;
    if (body.replayable) {
      stream = replay(body.bytes);
      result.bytesIn = body.bytes.length;
    } else {
      stream = body.stream;
      // counted from here: a 'data' listener added earlier would start the flow before the pipe
      result.bytesIn = body.bytes;
      stream.on('data', (chunk: Buffer) => (result.bytesIn += chunk.length));
    }
    current = deps.forwarder.attempt(req, res, targetUrl(endpoint), agent, stream, {
      onResponse: (proxyRes) => outcome(classify(proxyRes.statusCode, undefined), proxyRes, undefined),
      onError: (err) => outcome(classify(undefined, err), undefined, err),
    });
  };

  /** Retries (returns true), or sends this outcome to the client. */
  const decide = (c: Classification, proxyRes: IncomingMessage | undefined, err: ProxyError | undefined): boolean => {
    if (finished) {
      proxyRes?.destroy();
      return false;
    }
    const condition = retryCondition(c, policy['retry-on']);
    const mayRetry = condition !== undefined && body.replayable && result.attempts <= policy['retry-attempts'] && !res.headersSent;
    if (mayRetry && budget.tryRetry()) {
      deps.onRetry?.(dest.name, err?.code === 'TIMEOUT' ? 'timeout' : condition);
      proxyRes?.resume(); // discard this answer; the connection goes back to the pool
      setTimeout(next, backoffMs(result.attempts));
      return true;
    }
    if (!proxyRes) {
      fail(err ?? new ProxyError('UPSTREAM_RESET', 'no response'));
      return false;
    }
    result.status = proxyRes.statusCode ?? 0;
    result.upstreamMs = performance.now() - start;
    deps.forwarder.respond(res, proxyRes, ({ bytes, cut }) => {
      result.bytesOut = bytes;
      if (cut && !result.error && !finished) result.error = new ProxyError('UPSTREAM_RESET', 'the response was cut');
      finish();
    });
    return false;
  };

  const idempotent = IDEMPOTENT.has(req.method ?? '') || wantsRetry;
  if (!idempotent) {
    body = { replayable: false, stream: req, bytes: 0 };
    next();
    return;
  }
  readReplayable(req).then(
    (b) => {
      body = b;
      next();
    },
    () => fail(new ProxyError('BAD_REQUEST', 'the client closed the request body early')),
  );
}

export function targetUrl(ep: { ip: string; port: number }): string {
  return ep.ip.includes(':') ? `http://[${ep.ip}]:${ep.port}` : `http://${ep.ip}:${ep.port}`;
}
