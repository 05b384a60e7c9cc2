// Per-sidecar limits, so one misbehaving caller cannot exhaust the proxy: requests in flight
// (503 overloaded), open connections, slow headers (slowloris), idle keep-alive connections,
// idle TCP connections, and the request body limit where one is set.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createServer as createNetServer, type Socket } from 'node:net';
import { sidecarPair, eventually } from './harness/mesh.ts';
import { send } from './harness/client.ts';

const closedWithin = (socket: Socket) =>
  new Promise<{ ms: number; data: string }>((resolve) => {
    const start = Date.now();
    let data = '';
    socket.on('data', (c) => (data += c.toString()));
    socket.on('error', () => undefined);
    socket.on('close', () => resolve({ ms: Date.now() - start, data }));
  });

test('requests in flight past TSMESH_MAX_REQUESTS get 503 overloaded; others go on', async (t) => {
  const held: (() => void)[] = [];
  const pair = await sidecarPair((req, res) => (req.url === '/1' || req.url === '/2' ? held.push(() => res.end('done')) : res.end('done')), { env: { TSMESH_MAX_REQUESTS: '2' } });
  t.after(() => pair.close());
  const first = [send(pair.proxyURL, { path: '/1' }), send(pair.proxyURL, { path: '/2' })];
  await eventually(() => held.length === 2, 5000, 'two requests at the app');
  const third = await send(pair.proxyURL, { path: '/3' });
  assert.equal(third.status, 503);
  assert.equal(third.headers['x-tsmesh-error'], 'overloaded');
  held.forEach((release) => release());
  for (const r of await Promise.all(first)) assert.equal(r.status, 200);
  assert.equal((await send(pair.proxyURL, { path: '/4' })).status, 200, 'room again once they finished');
});

test('connections past TSMESH_MAX_CONNECTIONS are closed at once', async (t) => {
  const pair = await sidecarPair((_req, res) => res.end('ok'), { env: { TSMESH_MAX_CONNECTIONS: '2' } });
  t.after(() => pair.close());
  const open = [connect(pair.client.sidecar.outbound.port, pair.pods.b.ip), connect(pair.client.sidecar.outbound.port, pair.pods.b.ip)];
  await Promise.all(open.map((s) => new Promise((r) => s.once('connect', r))));
  await new Promise((r) => setTimeout(r, 50));
  const third = connect(pair.client.sidecar.outbound.port, pair.pods.b.ip);
  const { data } = await closedWithin(third);
  assert.equal(data, '');
  await eventually(() => pair.client.logs.some((l) => l.code === 'TSMESH_TOO_MANY_CONNECTIONS'), 3000, 'the refusal logged');
  open.forEach((s) => s.destroy());
});

test('slow headers (slowloris) are cut off after TSMESH_HEADERS_TIMEOUT', async (t) => {
  const pair = await sidecarPair((_req, res) => res.end('ok'), { env: { TSMESH_HEADERS_TIMEOUT: '600ms' } });
  t.after(() => pair.close());
  const s = connect(pair.client.sidecar.outbound.port, pair.pods.b.ip);
  const closed = closedWithin(s);
  const bytes = 'GET / HTTP/1.1\r\nHost: pod-service\r\nX-Slow: ' + 'a'.repeat(100);
  let i = 0;
  const drip = setInterval(() => (s.writable && i < bytes.length ? s.write(bytes[i++]!) : clearInterval(drip)), 50);
  const { ms, data } = await closed;
  clearInterval(drip);
  assert.ok(ms < 5000, `closed after ${ms} ms`);
  assert.ok(i < bytes.length, 'before the client finished its headers');
  assert.match(data, /^(HTTP\/1\.1 408|)/);
  assert.equal(pair.app.requests.length, 0);
});

test('an idle keep-alive connection is closed after TSMESH_IDLE_TIMEOUT', async (t) => {
  const pair = await sidecarPair((_req, res) => res.end('ok'), { env: { TSMESH_IDLE_TIMEOUT: '300ms' } });
  t.after(() => pair.close());
  const s = connect(pair.client.sidecar.outbound.port, pair.pods.b.ip);
  const closed = closedWithin(s);
  s.write('GET / HTTP/1.1\r\nHost: pod-service\r\n\r\n');
  const { ms, data } = await closed;
  assert.match(data, /^HTTP\/1\.1 200/);
  assert.ok(ms >= 250 && ms < 5000, `closed after ${ms} ms`);
});

test('a request body over TSMESH_MAX_REQUEST_BODY gets 413 body-too-large; a smaller one passes', async (t) => {
  const pair = await sidecarPair((req, res) => {
    req.resume();
    req.on('end', () => res.end('got it'));
  }, { env: { TSMESH_MAX_REQUEST_BODY: '1Ki' } });
  t.after(() => pair.close());
  const big = await send(pair.proxyURL, { method: 'POST', body: Buffer.alloc(2048) });
  assert.equal(big.status, 413);
  assert.equal(big.headers['x-tsmesh-error'], 'body-too-large');
  assert.equal((await send(pair.proxyURL, { method: 'POST', body: Buffer.alloc(512) })).status, 200);
  assert.equal(pair.app.requests.length, 1, 'the large body never reached the app');
});

test('an idle opaque TCP connection is closed after TSMESH_TCP_IDLE_TIMEOUT', async (t) => {
  const pair = await sidecarPair((_req, res) => res.end('ok'), { env: { TSMESH_TCP_IDLE_TIMEOUT: '300ms' }, annotations: { a: { 'tsmesh.io/opaque-ports': '9000' } } });
  t.after(() => pair.close());
  const echo = createNetServer((s) => s.pipe(s));
  await new Promise<void>((r) => echo.listen(9000, pair.pods.a.ip, r));
  t.after(() => echo.close());
  const s = connect(15006, pair.pods.a.ip);
  const closed = closedWithin(s);
  s.write('TSMESH/1 9000 tcp\r\nping');
  const { ms, data } = await closed;
  assert.equal(data, 'ping');
  assert.ok(ms >= 250 && ms < 5000, `closed after ${ms} ms`);
});

test('limits are validated like every setting', async () => {
  const { settingsFromEnv } = await import('../src/config/settings.ts');
  assert.throws(() => settingsFromEnv({ TSMESH_MAX_REQUEST_BODY: 'lots' }), /TSMESH_MAX_REQUEST_BODY="lots": "lots" is not a size/);
  assert.throws(() => settingsFromEnv({ TSMESH_MAX_REQUESTS: '0' }), /TSMESH_MAX_REQUESTS/);
  assert.equal(settingsFromEnv({ TSMESH_MAX_REQUEST_BODY: '10Mi' }).limits.maxRequestBodyBytes, 10 * 1024 * 1024);
});
