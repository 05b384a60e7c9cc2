// Regression (issue 14, item 6): every limit on every protocol path, with real clients.
//   TSMESH_MAX_REQUEST_BODY  chunked HTTP/1.1 bodies (curl) and HTTP/2 streams (node:http2),
//                            at the outbound and at the inbound sidecar
//   TSMESH_MAX_REQUESTS      WebSocket upgrades (ws) count while they are open, outbound and inbound
// The limit is set on one sidecar at a time, so each test shows that sidecar's own check.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { connect as netConnect } from 'node:net';
import { connect as h2Connect, constants, createServer as createH2Server, type Http2Server, type IncomingHttpHeaders } from 'node:http2';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { WebSocket, WebSocketServer } from 'ws';
import { sidecarPair, eventually, type Pair } from './harness/mesh.ts';

const LIMIT = { TSMESH_MAX_REQUEST_BODY: '1Ki' };

/** The app: counts the bodies it read to the end, answers with their length. */
function bodyApp() {
  const complete: number[] = [];
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    let n = 0;
    req.on('data', (c: Buffer) => (n += c.length));
    req.on('end', () => {
      complete.push(n);
      res.end(`got ${n}`);
    });
    req.on('error', () => undefined);
  };
  return { complete, handler };
}

/** The same app over h2c on pod-a's port 8081 (service web-h2, port 81). */
async function h2App(pair: Pair): Promise<{ complete: number[]; streams: number; server: Http2Server }> {
  const app = { complete: [] as number[], streams: 0, server: createH2Server() };
  app.server.on('stream', (stream) => {
    app.streams++;
    let n = 0;
    stream.on('data', (c: Buffer) => (n += c.length));
    stream.on('end', () => {
      if (stream.closed) return;
      stream.respond({ ':status': 200 });
      stream.end(`got ${n}`);
    });
    // a body the app read whole: its stream ended normally (a cancelled one ends too, with a code)
    stream.on('close', () => stream.rstCode === constants.NGHTTP2_NO_ERROR && stream.readableEnded && app.complete.push(n));
    stream.on('error', () => undefined);
  });
  await new Promise<void>((r) => app.server.listen(8081, pair.pods.a.ip, r));
  return app;
}
const H2_SERVICE = { name: 'web-h2', ports: [{ port: 81, targetPort: 8081 }], selector: { app: 'web-app' } };

/** curl through pod-b's sidecar (as an HTTP proxy), the body from stdin, chunked. */
function curlChunked(pair: Pair, method: string, body: Buffer): Promise<{ status: number; error: string | undefined; stdout: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('curl', ['-sS', '-x', pair.proxyURL, '-X', method, '-H', 'Transfer-Encoding: chunked', '--data-binary', '@-', '-D', '-', '-o', '/dev/null', 'http://pod-service/upload']);
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.on('error', reject);
    child.on('close', () => {
      const status = Number(/^HTTP\/1\.1 (\d+)/m.exec(stdout)?.[1] ?? 0);
      resolve({ status, error: /^x-tsmesh-error: (\S+)/im.exec(stdout)?.[1], stdout });
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(body);
  });
}

/** An HTTP/2 request to pod-b's outbound (explicit mode, h2c prior knowledge). */
function h2Post(pair: Pair, body: Buffer, headers: Record<string, string | number> = {}): Promise<{ status: number; error: string | undefined; rst: number }> {
  return new Promise((resolve, reject) => {
    const session = h2Connect(`http://${new URL(pair.proxyURL).host}`);
    session.on('error', () => undefined);
    const req = session.request({ ':method': 'POST', ':path': '/upload', ':authority': 'web-h2:81', ...headers });
    let head: IncomingHttpHeaders = {};
    req.on('response', (h) => (head = h));
    req.on('error', () => undefined);
    req.on('data', () => undefined);
    req.on('close', () => {
      session.close();
      resolve({ status: Number(head[':status'] ?? 0), error: head['x-tsmesh-error'] as string | undefined, rst: req.rstCode ?? 0 });
    });
    req.on('aborted', () => undefined);
    session.on('error', reject);
    // in pieces, as a stream would send it
    const piece = 1024;
    let at = 0;
    const write = () => {
      while (at < body.length) {
        const chunk = body.subarray(at, at + piece);
        at += piece;
        if (!req.write(chunk)) return void req.once('drain', write);
      }
      req.end();
    };
    write();
  });
}

const pairs: Pair[] = [];
after(async () => {
  await Promise.all(pairs.map((p) => p.close()));
});
async function pairWith(handler: (req: IncomingMessage, res: ServerResponse) => void, options: Parameters<typeof sidecarPair>[1]): Promise<Pair> {
  const pair = await sidecarPair(handler, options);
  pairs.push(pair);
  return pair;
}

for (const side of ['outbound', 'inbound'] as const) {
  const podEnv = side === 'outbound' ? { b: LIMIT } : { a: LIMIT };

  test(`a chunked HTTP/1.1 body over TSMESH_MAX_REQUEST_BODY gets 413 at the ${side} sidecar; a smaller one passes`, async () => {
    const app = bodyApp();
    const pair = await pairWith(app.handler, { podEnv });
    const small = await curlChunked(pair, 'POST', Buffer.alloc(512, 1));
    assert.equal(small.status, 200, small.stdout);
    assert.deepEqual(app.complete, [512]);
    // POST: streamed, so the limit is met on the way
    const big = await curlChunked(pair, 'POST', Buffer.alloc(64 * 1024, 2));
    assert.equal(big.status, 413, big.stdout);
    assert.equal(big.error, 'body-too-large');
    // PUT (idempotent): read for replay first, so nothing at all reaches the app
    const requestsBefore = pair.app.requests.length;
    const put = await curlChunked(pair, 'PUT', Buffer.alloc(8 * 1024, 3));
    assert.equal(put.status, 413, put.stdout);
    if (side === 'outbound') assert.equal(pair.app.requests.length, requestsBefore, 'nothing of the PUT was sent upstream');
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(app.complete, [512], 'no body over the limit reached the app whole');
    assert.equal((await curlChunked(pair, 'POST', Buffer.alloc(100, 4))).status, 200, 'the sidecar goes on serving');
  });

  test(`an HTTP/2 stream over TSMESH_MAX_REQUEST_BODY gets 413 at the ${side} sidecar, declared or counted`, async () => {
    const pair = await pairWith((_req, res) => res.end(), { podEnv, services: [H2_SERVICE] });
    const app = await h2App(pair);
    try {
      const small = await h2Post(pair, Buffer.alloc(512, 1));
      assert.equal(small.status, 200);
      assert.deepEqual(app.complete, [512]);
      const declared = await h2Post(pair, Buffer.alloc(4096, 2), { 'content-length': 4096 });
      assert.equal(declared.status, 413);
      assert.equal(declared.error, 'body-too-large');
      const counted = await h2Post(pair, Buffer.alloc(64 * 1024, 3));
      assert.equal(counted.status, 413);
      assert.equal(counted.error, 'body-too-large');
      await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual(app.complete, [512], 'no body over the limit reached the app whole');
      assert.equal((await h2Post(pair, Buffer.alloc(100, 4))).status, 200, 'the sidecar goes on serving');
    } finally {
      app.server.close();
    }
  });

  test(`WebSockets count against TSMESH_MAX_REQUESTS at the ${side} sidecar while they are open`, async () => {
    const pair = await pairWith((_req, res) => res.end('ok'), { podEnv: side === 'outbound' ? { b: { TSMESH_MAX_REQUESTS: '2' } } : { a: { TSMESH_MAX_REQUESTS: '2' } } });
    const wss = new WebSocketServer({ noServer: true });
    pair.app.server.on('upgrade', (req, socket, head) => wss.handleUpgrade(req, socket, head, (ws) => ws.on('message', (m) => ws.send(m))));
    const open = () =>
      new Promise<{ ws: WebSocket | undefined; status: number; error: string | undefined }>((resolve) => {
        const ws = new WebSocket('ws://pod-service/echo', { createConnection: () => netConnect(pair.client.sidecar.outbound.port, pair.pods.b.ip) });
        ws.once('open', () => resolve({ ws, status: 101, error: undefined }));
        ws.once('unexpected-response', (_req, res) => resolve({ ws: undefined, status: res.statusCode ?? 0, error: res.headers['x-tsmesh-error'] as string | undefined }));
        ws.once('error', () => resolve({ ws: undefined, status: 0, error: 'client error' }));
      });
    const first = await open();
    const second = await open();
    assert.equal(first.status, 101);
    assert.equal(second.status, 101);
    const third = await open();
    assert.equal(third.status, 503, 'a third WebSocket while two are open');
    assert.equal(third.error, 'overloaded');
    first.ws!.close();
    await eventually(async () => {
      const next = await open();
      next.ws?.close();
      return next.status === 101;
    }, 5000, 'room again once one closed');
    second.ws!.close();
    for (const ws of wss.clients) ws.terminate();
    wss.close();
  });
}
