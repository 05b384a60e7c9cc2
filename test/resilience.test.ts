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
  for (let i = 0; i < 30; i++) await send(mesh.client.outboundURL);
  const badSeen = mesh.apps[0]!.requests.length;
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
  const mesh = await backends([delayed(3), delayed(3), delayed(30)]);
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
  assert.ok(share < 0.25, `the slow endpoint got ${(share * 100).toFixed(1)}% of the requests`);
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
