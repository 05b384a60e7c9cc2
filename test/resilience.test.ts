// Retries, budgets, timeouts, circuit breakers and load balancing, against real upstream
// servers with scripted behaviour, through a real sidecar.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Agent, type IncomingMessage, type ServerResponse } from 'node:http';
import { backends, eventually } from './harness/mesh.ts';
import { send } from './harness/client.ts';

const attemptOf = (req: IncomingMessage) => Number(req.headers['x-tsmesh-attempt']);
const status = (code: number) => (_req: IncomingMessage, res: ServerResponse) => {
  res.statusCode = code;
  res.end(String(code));
};
type EndpointState = { ewmaMs?: number; breakerOpen: boolean; ejected: boolean; services: Record<string, { breaker: string; accrual: string; consecutiveFailures: number }> };
const endpointsOf = async (adminURL: string) => ((await (await fetch(`${adminURL}/config`)).json()) as { endpoints: Record<string, EndpointState> }).endpoints;
const metricsOf = async (adminURL: string) => (await fetch(`${adminURL}/metrics`)).text();
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
  });
}

test('503, 503, then 200: the client gets the 200 and the upstream saw attempts 1, 2, 3', async (t) => {
  let n = 0;
  const mesh = await backends([(req, res) => (++n <= 2 ? status(503)(req, res) : res.end('third time'))]);
  t.after(() => mesh.close());
  const r = await send(mesh.client.outboundURL);
  assert.equal(r.status, 200);
  assert.equal(r.body.toString(), 'third time');
  assert.deepEqual(mesh.apps[0]!.requests.map(attemptOf), [1, 2, 3]);
  await eventually(() => mesh.client.logs.some((l) => l.type === 'access' && l.attempts === 3));
});

test('two endpoints, one always failing: every GET succeeds, retries go to the other', async (t) => {
  const mesh = await backends([status(503), (_req, res) => res.end('ok')]);
  t.after(() => mesh.close());
  const agent = new Agent({ keepAlive: true });
  for (let i = 0; i < 20; i++) assert.equal((await send(mesh.client.outboundURL, { agent })).status, 200);
  agent.destroy();
  const [bad, good] = mesh.apps;
  assert.ok(bad!.requests.length > 0, 'the failing endpoint was tried');
  assert.ok(bad!.requests.every((r) => attemptOf(r) === 1), 'a retry never went back to the failing endpoint');
  assert.equal(good!.requests.filter((r) => attemptOf(r) === 2).length, bad!.requests.length, 'each failure was retried on the good endpoint');
});

test('POST is not retried; a 100 KiB PUT is not; a 10 KiB PUT is, with the same bytes', async (t) => {
  const seen: { method: string; attempt: number; sha: string }[] = [];
  const mesh = await backends([
    async (req, res) => {
      const body = await readBody(req);
      seen.push({ method: req.method!, attempt: attemptOf(req), sha: createHash('sha256').update(body).digest('hex') });
      status(attemptOf(req) === 1 ? 503 : 200)(req, res);
    },
  ]);
  t.after(() => mesh.close());
  const post = await send(mesh.client.outboundURL, { method: 'POST', body: 'x' });
  assert.equal(post.status, 503);
  assert.deepEqual(seen.map((s) => s.attempt), [1]);

  seen.length = 0;
  const big = await send(mesh.client.outboundURL, { method: 'PUT', body: randomBytes(100 * 1024) });
  assert.equal(big.status, 503, 'a body over 64 KiB is streamed once and not retried');
  assert.deepEqual(seen.map((s) => s.attempt), [1]);

  seen.length = 0;
  const small = randomBytes(10 * 1024);
  const ok = await send(mesh.client.outboundURL, { method: 'PUT', body: small });
  assert.equal(ok.status, 200);
  const sha = createHash('sha256').update(small).digest('hex');
  assert.deepEqual(seen, [{ method: 'PUT', attempt: 1, sha }, { method: 'PUT', attempt: 2, sha }]);

  seen.length = 0;
  const forced = await send(mesh.client.outboundURL, { method: 'POST', body: 'again', headers: { 'x-tsmesh-retry': 'true' } });
  assert.equal(forced.status, 200, 'x-tsmesh-retry: true makes a POST retryable');
  assert.deepEqual(seen.map((s) => s.attempt), [1, 2]);
});

test('retry-on decides which failures are retried', async (t) => {
  const mesh = await backends([status(500)], { serviceAnnotations: { 'tsmesh.io/breaker-volume-threshold': '1000' } });
  t.after(() => mesh.close());
  assert.equal((await send(mesh.client.outboundURL)).status, 500);
  assert.equal(mesh.apps[0]!.requests.length, 1, '500 is not a gateway error: not retried by default');
  await mesh.setServiceAnnotations({ 'tsmesh.io/retry-on': '5xx', 'tsmesh.io/retry-attempts': '1', 'tsmesh.io/breaker-volume-threshold': '1000' });
  assert.equal((await send(mesh.client.outboundURL)).status, 500);
  assert.equal(mesh.apps[0]!.requests.length, 3, 'with retry-on 5xx and retry-attempts 1: two more tries');
});

test('all endpoints failing: the retry budget keeps upstream attempts near 1 + ratio, no retry storm', async (t) => {
  const mesh = await backends([status(503), status(503)], { serviceAnnotations: { 'tsmesh.io/breaker-volume-threshold': '1000000', 'tsmesh.io/retry-attempts': '3' } });
  t.after(() => mesh.close());
  const agent = new Agent({ keepAlive: true, maxSockets: 8 });
  const started = Date.now();
  const requests = 400;
  let done = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (done < requests) {
        done++;
        assert.equal((await send(mesh.client.outboundURL, { agent })).status, 503);
      }
    }),
  );
  agent.destroy();
  const seconds = Math.ceil((Date.now() - started) / 1000);
  const attempts = mesh.apps.reduce((n, a) => n + a.requests.length, 0);
  const allowed = requests * 1.2 + 10 * Math.min(10, seconds);
  assert.ok(attempts <= allowed, `${attempts} upstream attempts for ${requests} requests in ${seconds}s (budget allows ${allowed})`);
  assert.ok(attempts > requests, 'some retries were made while the budget lasted');
  assert.ok(attempts < requests * 4, 'far fewer than retry-attempts 3 would make without a budget');
});

test('breaker: an endpoint failing over the threshold is skipped; all open gives 503 circuit-open without touching the network; a probe closes it', async (t) => {
  let healthy = false;
  const mesh = await backends([(req, res) => (healthy ? res.end('recovered') : status(500)(req, res))], {
    serviceAnnotations: { 'tsmesh.io/breaker-volume-threshold': '5', 'tsmesh.io/breaker-error-threshold': '50', 'tsmesh.io/breaker-reset-timeout': '400ms', 'tsmesh.io/retry-attempts': '0' },
  });
  t.after(() => mesh.close());
  for (let i = 0; i < 5; i++) assert.equal((await send(mesh.client.outboundURL)).status, 500); // the volume threshold
  const seen = mesh.apps[0]!.requests.length;
  const open = await send(mesh.client.outboundURL);
  assert.equal(open.status, 503);
  assert.equal(open.headers['x-tsmesh-error'], 'circuit-open');
  assert.equal(mesh.apps[0]!.requests.length, seen, 'the upstream saw nothing');
  const config = (await (await fetch(`${mesh.client.adminURL}/config`)).json()) as { endpoints: Record<string, { breakerOpen: boolean }> };
  assert.equal(config.endpoints[`${mesh.apps[0]!.ip}:8080`]!.breakerOpen, true, '/config shows the open breaker');

  healthy = true;
  await new Promise((r) => setTimeout(r, 500)); // past the reset timeout: half-open
  const probe = await send(mesh.client.outboundURL);
  assert.equal(probe.status, 200, 'the half-open probe went through');
  assert.equal(probe.body.toString(), 'recovered');
  for (let i = 0; i < 3; i++) assert.equal((await send(mesh.client.outboundURL)).status, 200, 'closed again');
});

test('breaker with two endpoints: the failing one is skipped after the threshold', async (t) => {
  const mesh = await backends([status(500), (_req, res) => res.end('ok')], {
    serviceAnnotations: { 'tsmesh.io/breaker-volume-threshold': '4', 'tsmesh.io/breaker-reset-timeout': '1m', 'tsmesh.io/retry-attempts': '0' },
  });
  t.after(() => mesh.close());
  // the balancer sends a failing endpoint little traffic: call until it has had its 4 (bounded
  // by time, not calls: on an idle machine 3000 fast calls can end before its fourth try)
  const deadline = Date.now() + 30_000;
  for (let i = 0; mesh.apps[0]!.requests.length < 4; i++) {
    assert.ok(Date.now() < deadline, `the failing endpoint was tried ${mesh.apps[0]!.requests.length} times in ${i} calls (30 s)`);
    await send(mesh.client.outboundURL);
  }
  const badSeen = mesh.apps[0]!.requests.length;
  assert.equal((await endpointsOf(mesh.client.adminURL))[`${mesh.apps[0]!.ip}:8080`]!.services['pod-service.default']!.breaker, 'open');
  for (let i = 0; i < 20; i++) assert.equal((await send(mesh.client.outboundURL)).status, 200);
  assert.equal(mesh.apps[0]!.requests.length, badSeen, 'no more traffic to the open endpoint');
});

test('timeout: an upstream that hangs gives 504 at the deadline and its request is cancelled', async (t) => {
  let closed = 0;
  const mesh = await backends([(req) => req.socket.once('close', () => closed++)], { serviceAnnotations: { 'tsmesh.io/timeout': '300ms' } });
  t.after(() => mesh.close());
  const r = await send(mesh.client.outboundURL, { timeoutMs: 10_000 });
  assert.equal(r.status, 504);
  assert.equal(r.headers['x-tsmesh-error'], 'timeout');
  await eventually(() => closed === 1, 2000, "the upstream's socket to close");
  assert.equal(mesh.apps[0]!.requests.length, 1, 'the deadline is the whole request: no retry after it');
});

test('per-try timeout: a hung first try is retried and the second answers', async (t) => {
  let n = 0;
  const mesh = await backends([(_req, res) => (++n === 1 ? undefined : res.end('second'))], { serviceAnnotations: { 'tsmesh.io/per-try-timeout': '200ms' } });
  t.after(() => mesh.close());
  const r = await send(mesh.client.outboundURL);
  assert.equal(r.status, 200);
  assert.equal(r.body.toString(), 'second');
  assert.deepEqual(mesh.apps[0]!.requests.map(attemptOf), [1, 2]);
});

test('a client that goes away cancels the upstream request', async (t) => {
  let closed = false;
  const mesh = await backends([(req) => req.socket.once('close', () => (closed = true))]);
  t.after(() => mesh.close());
  await assert.rejects(send(mesh.client.outboundURL, { timeoutMs: 200 }), /client timeout/);
  await eventually(() => closed, 3000, "the upstream's socket to close");
});

test('balancing: an endpoint 10x slower than two others gets a small share', async (t) => {
  const delayed = (ms: number) => (_req: IncomingMessage, res: ServerResponse) => void setTimeout(() => res.end('ok'), ms);
  const mesh = await backends([delayed(20), delayed(20), delayed(200)]);
  t.after(() => mesh.close());
  const agent = new Agent({ keepAlive: true, maxSockets: 6 });
  let left = 300;
  await Promise.all(
    Array.from({ length: 6 }, async () => {
      while (left-- > 0) assert.equal((await send(mesh.client.outboundURL, { agent })).status, 200);
    }),
  );
  agent.destroy();
  const counts = mesh.apps.map((a) => a.requests.length);
  const share = counts[2]! / counts.reduce((a, b) => a + b, 0);
  t.diagnostic(`requests per endpoint (fast, fast, slow): ${counts.join(', ')}; slow share ${(share * 100).toFixed(1)}%`);
  assert.ok(share < 0.1, `the slow endpoint got ${(share * 100).toFixed(1)}% of the requests`);
});

test('a bad policy annotation keeps the previous policy and is reported', async (t) => {
  const mesh = await backends([(_req, res) => res.end('ok')], { serviceAnnotations: { 'tsmesh.io/retry-attempts': '4' } });
  t.after(() => mesh.close());
  const policy = async () => ((await (await fetch(`${mesh.client.adminURL}/config`)).json()) as { destinations: Record<string, { 'retry-attempts': number; timeout: number }> }).destinations['pod-service.default']!;
  assert.equal((await policy())['retry-attempts'], 4);
  await send(mesh.client.outboundURL); // the policy is resolved when used
  await mesh.setServiceAnnotations({ 'tsmesh.io/retry-attempts': 'lots', 'tsmesh.io/timeout': '3s' });
  const p = await policy();
  assert.equal(p['retry-attempts'], 4, 'previous value kept');
  assert.equal(p.timeout, 3000, 'the valid change applied');
  await eventually(() => mesh.client.logs.some((l) => l.code === 'TSMESH_ANNOTATION_INVALID' && l.key === 'tsmesh.io/retry-attempts' && l.service === 'default/pod-service'), 3000, 'the warning');
});

test('policy layering: the calling pod sets a default for every destination, the Service wins', async (t) => {
  const mesh = await backends([(_req, res) => res.end('ok')], { annotations: { 'tsmesh.io/timeout': '7s', 'tsmesh.io/retry-attempts': '1' }, serviceAnnotations: { 'tsmesh.io/retry-attempts': '3' } });
  t.after(() => mesh.close());
  const config = (await (await fetch(`${mesh.client.adminURL}/config`)).json()) as { destinations: Record<string, { 'retry-attempts': number; timeout: number }> };
  assert.equal(config.destinations['pod-service.default']!.timeout, 7000, "the pod's default");
  assert.equal(config.destinations['pod-service.default']!['retry-attempts'], 3, 'the Service wins');
});

// ---- issue 15: failure accrual, a balancer that forgets, breakers per (Service, endpoint) ----


test('consecutive failures eject an endpoint after a history of successes (regression: the windowed breaker never opened)', async (t) => {
  let failing = false;
  const mesh = await backends([(req, res) => (failing ? status(500)(req, res) : res.end('a')), (_req, res) => res.end('b')], { serviceAnnotations: { 'tsmesh.io/retry-attempts': '0' } });
  t.after(() => mesh.close());
  const agent = new Agent({ keepAlive: true });
  t.after(() => agent.destroy());
  const [a] = mesh.apps;
  const endpoint = `${a!.ip}:8080`;
  // a history of successes: at least 10 from the endpoint that will fail
  for (let i = 0; a!.requests.length < 10; i++) {
    assert.ok(i < 3000, `the endpoint got ${a!.requests.length} of ${i} calls`);
    assert.equal((await send(mesh.client.outboundURL, { agent })).status, 200);
  }
  failing = true;
  const before = a!.requests.length;
  const accrual = async () => (await endpointsOf(mesh.client.adminURL))[endpoint]!.services['pod-service.default']!.accrual;
  let calls = 0;
  let errors = 0;
  // the balancer sends a failing endpoint little traffic (a failure weighs 10x its estimate,
  // which then decays with time): call until it has seen its 5 in a row. Bounded by time, not
  // by calls: on an idle machine 3000 fast calls sometimes ended before the fifth try reached it
  const deadline = Date.now() + 30_000;
  while ((await accrual()) === 'closed') {
    calls++;
    assert.ok(Date.now() < deadline, `still not ejected after ${calls} calls in 30 s (${a!.requests.length - before} went to it)`);
    if ((await send(mesh.client.outboundURL, { agent })).status !== 200) errors++;
  }
  const toA = a!.requests.length - before;
  t.diagnostic(`ejected after ${calls} calls, ${toA} of them to the failing endpoint, ${errors} answered 500`);
  assert.equal(toA, 5, 'five failures in a row ejected it, though its window held many successes');
  assert.equal(errors, 5, 'every other call was answered by the healthy endpoint');
  assert.match(await metricsOf(mesh.client.adminURL), new RegExp(`tsmesh_circuit_breaker_open\\{destination_service="pod-service.default",endpoint="${endpoint.replaceAll('.', '\\.')}"\\} 1`));
  const during = a!.requests.length;
  for (let i = 0; i < 20; i++) assert.equal((await send(mesh.client.outboundURL, { agent })).status, 200, 'ejected: the other endpoint answers');
  assert.ok(a!.requests.length - during <= 1, 'at most one probe reached it');
});

test('consecutive-failures 0 turns accrual off; the windowed breaker still applies', async (t) => {
  const mesh = await backends([status(500)], { serviceAnnotations: { 'tsmesh.io/retry-attempts': '0', 'tsmesh.io/consecutive-failures': '0', 'tsmesh.io/breaker-volume-threshold': '1000' } });
  t.after(() => mesh.close());
  for (let i = 0; i < 12; i++) assert.equal((await send(mesh.client.outboundURL)).status, 500);
  const state = (await endpointsOf(mesh.client.adminURL))[`${mesh.apps[0]!.ip}:8080`]!.services['pod-service.default']!;
  assert.equal(state.accrual, 'closed');
  assert.equal(state.consecutiveFailures, 12, 'counted, never ejected');
});

test('a new endpoint added by a registry change gets its share of sequential calls (regression: it starved, or took everything)', async (t) => {
  const ok = (_req: IncomingMessage, res: ServerResponse) => res.end('ok');
  const mesh = await backends([ok, ok], { ready: [true, false] });
  t.after(() => mesh.close());
  const agent = new Agent({ keepAlive: true });
  t.after(() => agent.destroy());
  for (let i = 0; i < 50; i++) assert.equal((await send(mesh.client.outboundURL, { agent })).status, 200);
  assert.equal(mesh.apps[1]!.requests.length, 0, 'not an endpoint yet');
  await mesh.setReady(1, true);
  const [a, b] = mesh.apps;
  const [a0, b0] = [a!.requests.length, b!.requests.length];
  // one call at a time, a few ms apart (2-3 s of calls on an idle machine, longer on a busy
  // one: a latency spike sends the next calls to the other endpoint for a while, so shares
  // over fewer calls vary more)
  for (let i = 0; i < 400; i++) {
    assert.equal((await send(mesh.client.outboundURL, { agent })).status, 200);
    await pause(5);
  }
  const [da, db] = [a!.requests.length - a0, b!.requests.length - b0];
  t.diagnostic(`after the new endpoint came: old ${da}, new ${db}`);
  // The regression was all-or-nothing (the new endpoint starved, or took every call); the
  // 30 % goal is asserted for sequential calls by the balancer's unit test on a simulated
  // clock (src/balance/p2c.test.ts). Here, on a shared CI
  // machine whose latency spikes steer a latency-aware balancer, each side must get at least
  // 10 % (seen: 27-73 % under a load average of 20, 38-62 % idle).
  assert.ok(db >= 0.1 * 400 && da >= 0.1 * 400, `old ${da}, new ${db} of 400`);
});

test('a new endpoint gets its share under concurrent load', async (t) => {
  const ok = (_req: IncomingMessage, res: ServerResponse) => void setTimeout(() => res.end('ok'), 2);
  const mesh = await backends([ok, ok], { ready: [true, false] });
  t.after(() => mesh.close());
  const agent = new Agent({ keepAlive: true, maxSockets: 8 });
  t.after(() => agent.destroy());
  const load = async (n: number) => {
    let left = n;
    await Promise.all(Array.from({ length: 8 }, async () => {
      while (left-- > 0) assert.equal((await send(mesh.client.outboundURL, { agent })).status, 200);
    }));
  };
  await load(100);
  await mesh.setReady(1, true);
  const [a, b] = mesh.apps;
  const [a0, b0] = [a!.requests.length, b!.requests.length];
  await load(400);
  const [da, db] = [a!.requests.length - a0, b!.requests.length - b0];
  t.diagnostic(`after the new endpoint came: old ${da}, new ${db}`);
  // The regression was all-or-nothing (the new endpoint starved, or took every call); the
  // 30 % goal is asserted for sequential calls by the balancer's unit test on a simulated
  // clock (src/balance/p2c.test.ts). Here, on a shared CI
  // machine whose latency spikes steer a latency-aware balancer, each side must get at least
  // 10 % (seen: 27-73 % under a load average of 20, 38-62 % idle).
  assert.ok(db >= 0.1 * 400 && da >= 0.1 * 400, `old ${da}, new ${db} of 400`);
});

test('two Services reaching the same pod keep separate breakers, each with its own settings (regression: one shared breaker, replaced at each call)', async (t) => {
  const mesh = await backends([status(500)], {
    serviceAnnotations: { 'tsmesh.io/retry-attempts': '0', 'tsmesh.io/breaker-volume-threshold': '4', 'tsmesh.io/breaker-reset-timeout': '1m', 'tsmesh.io/consecutive-failures': '0' },
    services: [{ name: 'flaky-service', ports: [{ port: 80, targetPort: 8080 }], selector: { app: 'web-app' }, annotations: { 'tsmesh.io/retry-attempts': '0', 'tsmesh.io/breaker-volume-threshold': '1000', 'tsmesh.io/consecutive-failures': '0' } }],
  });
  t.after(() => mesh.close());
  const viaPod = () => send(mesh.client.outboundURL);
  const viaFlaky = () => send(mesh.client.outboundURL, { headers: { host: 'flaky-service' } });
  for (let i = 0; i < 4; i++) {
    assert.equal((await viaPod()).status, 500);
    assert.equal((await viaFlaky()).status, 500);
  }
  const open = await viaPod();
  assert.equal(open.status, 503, "pod-service's breaker opened after its 4 calls");
  assert.equal(open.headers['x-tsmesh-error'], 'circuit-open');
  assert.equal((await viaFlaky()).status, 500, "flaky-service's breaker (volume 1000) stays closed: the app still answers");
  const endpoint = `${mesh.apps[0]!.ip}:8080`;
  const services = (await endpointsOf(mesh.client.adminURL))[endpoint]!.services;
  assert.equal(services['pod-service.default']!.breaker, 'open');
  assert.equal(services['flaky-service.default']!.breaker, 'closed');
  const metrics = await metricsOf(mesh.client.adminURL);
  const gauge = (svc: string) => metrics.match(new RegExp(`tsmesh_circuit_breaker_open\\{destination_service="${svc}",endpoint="${endpoint.replaceAll('.', '\\.')}"\\} (\\d)`))?.[1];
  assert.equal(gauge('pod-service.default'), '1');
  assert.notEqual(gauge('flaky-service.default'), '1');

  // a policy change keeps the state it can: the open breaker stays open
  await mesh.setServiceAnnotations({ 'tsmesh.io/retry-attempts': '0', 'tsmesh.io/breaker-volume-threshold': '5', 'tsmesh.io/breaker-reset-timeout': '2m', 'tsmesh.io/consecutive-failures': '0' });
  assert.equal((await viaPod()).headers['x-tsmesh-error'], 'circuit-open', 'still open after the policy change');
});
