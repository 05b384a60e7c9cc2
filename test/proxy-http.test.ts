// The sidecar pair's HTTP/1.1 forwarding, end to end over real sockets: client -> pod-b's
// sidecar (outbound) -> pod-a's sidecar (inbound) -> pod-a's app.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { Agent } from 'node:http';
import { connect } from 'node:net';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { WebSocket, WebSocketServer } from 'ws';
import { sidecarPair, type Pair } from './harness/mesh.ts';
import { send } from './harness/client.ts';

const run = promisify(execFile);
const MB = 1024 * 1024;
let pair: Pair;
const seen: { sha: string; bytes: number }[] = [];

before(async () => {
  pair = await sidecarPair((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname === '/upload') {
      const hash = createHash('sha256');
      let bytes = 0;
      req.on('data', (c: Buffer) => {
        hash.update(c);
        bytes += c.length;
      });
      req.on('end', () => {
        const sha = hash.digest('hex');
        seen.push({ sha, bytes });
        res.end(JSON.stringify({ sha, bytes }));
      });
      return;
    }
    if (url.pathname === '/download') {
      const size = Number(url.searchParams.get('size'));
      const seed = url.searchParams.get('seed') ?? 'x';
      res.writeHead(200, { 'content-length': size });
      streamDeterministic(size, seed).pipe(res);
      return;
    }
    if (url.pathname === '/chunked') {
      res.writeHead(200, { 'content-type': 'text/plain' }); // no length: chunked
      let i = 0;
      const tick = setInterval(() => {
        res.write(`chunk-${i}\n`);
        if (++i === 5) {
          clearInterval(tick);
          res.end();
        }
      }, 5);
      return;
    }
    if (url.pathname === '/cut') {
      res.writeHead(200, { 'content-length': 100_000 });
      res.write(Buffer.alloc(10_000, 1));
      setTimeout(() => res.socket?.destroy(), 20);
      return;
    }
    if (url.pathname === '/hop') {
      res.writeHead(200, { connection: 'x-private, keep-alive', 'x-private': 'secret', 'keep-alive': 'timeout=5', 'x-end-to-end': 'yes' });
      res.end(JSON.stringify(req.headers));
      return;
    }
    res.end(JSON.stringify({ pod: 'pod-a', url: req.url, headers: req.headers, remote: req.socket.remoteAddress }));
  });
});
after(() => pair.close());

function streamDeterministic(size: number, seed: string): Readable {
  let sent = 0;
  let counter = 0;
  return new Readable({
    read() {
      if (sent >= size) return this.push(null);
      const block = createHash('sha512').update(`${seed}:${counter++}`).digest();
      const chunk = Buffer.concat(Array(1024).fill(block)).subarray(0, Math.min(64 * 1024, size - sent));
      sent += chunk.length;
      this.push(chunk);
    },
  });
}

async function sha(stream: Readable): Promise<string> {
  const h = createHash('sha256');
  for await (const c of stream) h.update(c as Buffer);
  return h.digest('hex');
}

test('GET through the pair reaches pod-a with the original Host, x-forwarded-* and the attempt header', async () => {
  const r = await send(pair.proxyURL, { path: '/hello?x=1' });
  assert.equal(r.status, 200);
  const body = JSON.parse(r.body.toString());
  assert.equal(body.pod, 'pod-a');
  assert.equal(body.url, '/hello?x=1');
  assert.equal(body.headers.host, 'pod-service');
  assert.equal(body.headers['x-tsmesh-attempt'], '1');
  assert.equal(body.headers['x-forwarded-proto'], 'http');
  assert.equal(body.headers['x-forwarded-for'], pair.pods.b.ip, 'the app sees the calling pod in x-forwarded-for');
  assert.equal(body.remote, pair.pods.a.ip, "the request arrives from pod-a's own sidecar, at the pod IP");
});

test('a 10 MB streamed POST arrives intact (checksums equal at both ends)', async () => {
  const size = 10 * MB;
  const expected = await sha(streamDeterministic(size, 'up'));
  const r = await send(pair.proxyURL, { method: 'POST', path: '/upload', body: streamDeterministic(size, 'up'), headers: { 'transfer-encoding': 'chunked' } });
  assert.equal(r.status, 200);
  assert.deepEqual(JSON.parse(r.body.toString()), { sha: expected, bytes: size });
});

test('a 10 MB streamed GET response arrives intact', async () => {
  const size = 10 * MB;
  const expected = await sha(streamDeterministic(size, 'down'));
  const r = await send(pair.proxyURL, { path: `/download?size=${size}&seed=down` });
  assert.equal(r.status, 200);
  assert.equal(r.body.length, size);
  assert.equal(createHash('sha256').update(r.body).digest('hex'), expected);
});

test('Expect: 100-continue with curl: the body is sent and arrives', async () => {
  const body = randomBytes(2 * MB);
  const file = `/tmp/tsmesh-expect-${process.pid}`;
  const { writeFile, rm } = await import('node:fs/promises');
  await writeFile(file, body);
  try {
    const { stdout } = await run('curl', ['-sS', '-x', pair.proxyURL, '-H', 'Expect: 100-continue', '--data-binary', `@${file}`, '-w', '\n%{http_code}', 'http://pod-service/upload']);
    const [json, code] = stdout.split('\n');
    assert.equal(code, '200');
    assert.deepEqual(JSON.parse(json!), { sha: createHash('sha256').update(body).digest('hex'), bytes: body.length });
  } finally {
    await rm(file, { force: true });
  }
});

test('keep-alive: the app sees fewer connections than requests', async () => {
  const before = pair.app.connections;
  const agent = new Agent({ keepAlive: true, maxSockets: 2 });
  for (let i = 0; i < 20; i++) assert.equal((await send(pair.proxyURL, { agent })).status, 200);
  agent.destroy();
  const used = pair.app.connections - before;
  assert.ok(used <= 2, `20 requests used ${used} app connections`);
});

test('chunked responses are streamed through', async () => {
  const r = await send(pair.proxyURL, { path: '/chunked' });
  assert.equal(r.status, 200);
  assert.equal(r.body.toString(), [0, 1, 2, 3, 4].map((i) => `chunk-${i}\n`).join(''));
  assert.equal(r.headers['transfer-encoding'], 'chunked');
});

test('an upstream that closes mid-response gives the client an error, not a hang', async () => {
  await assert.rejects(send(pair.proxyURL, { path: '/cut', timeoutMs: 5000 }), (err: Error) => err.message !== 'client timeout');
});

test('hop-by-hop headers are removed in both directions', async () => {
  const r = await send(pair.proxyURL, {
    path: '/hop',
    headers: { connection: 'x-client-private', 'x-client-private': 'secret', 'proxy-authorization': 'Basic Zm9v', te: 'trailers', 'x-end-to-end': 'yes' },
  });
  assert.equal(r.status, 200);
  const appSaw = JSON.parse(r.body.toString());
  assert.equal(appSaw['x-client-private'], undefined);
  assert.equal(appSaw['proxy-authorization'], undefined);
  assert.equal(appSaw.te, undefined);
  assert.equal(appSaw['x-end-to-end'], 'yes');
  assert.equal(r.headers['x-private'], undefined, 'a header the upstream listed in Connection is dropped');
  assert.notEqual(r.headers['keep-alive'], 'timeout=5', "the upstream's Keep-Alive is not forwarded (the sidecar states its own)");
  assert.equal(r.headers['x-end-to-end'], 'yes');
});

test('an unknown service gives 503 with x-tsmesh-error: no-healthy-endpoints', async () => {
  const r = await send(pair.proxyURL, { headers: { host: 'no-such-service' } });
  assert.equal(r.status, 503);
  assert.equal(r.headers['x-tsmesh-error'], 'no-healthy-endpoints');
});

test('the authority may name the service in every Kubernetes DNS form', async () => {
  for (const host of ['pod-service', 'pod-service:80', 'pod-service.default', 'pod-service.default.svc', 'pod-service.default.svc.cluster.local']) {
    const r = await send(pair.proxyURL, { headers: { host } });
    assert.equal(r.status, 200, host);
    assert.equal(JSON.parse(r.body.toString()).pod, 'pod-a', host);
  }
  assert.equal((await send(pair.proxyURL, { headers: { host: 'pod-service.other' } })).status, 503, 'wrong namespace');
  assert.equal((await send(pair.proxyURL, { headers: { host: 'pod-service:81' } })).status, 503, 'port the service does not have');
});

test('absolute-form requests (HTTP_PROXY clients) are routed by their URL', async () => {
  const { stdout } = await run('curl', ['-sS', '-x', pair.proxyURL, 'http://pod-service.default.svc.cluster.local/via-proxy']);
  const body = JSON.parse(stdout);
  assert.equal(body.url, '/via-proxy');
  assert.equal(body.headers.host, 'pod-service.default.svc.cluster.local');
});

test("large headers up to Node's limit pass; beyond it the sidecar answers 431", async () => {
  const ok = await send(pair.proxyURL, { headers: { 'x-big': 'a'.repeat(12 * 1024) } });
  assert.equal(ok.status, 200);
  assert.equal(JSON.parse(ok.body.toString()).headers['x-big'].length, 12 * 1024);
  const big = await send(pair.proxyURL, { headers: { 'x-big': 'a'.repeat(20 * 1024) } });
  assert.equal(big.status, 431);
  assert.equal(big.headers['x-tsmesh-error'], 'headers-too-large');
});

test('a malformed request gets 400 and the sidecar keeps serving', async () => {
  const raw = await new Promise<string>((resolve, reject) => {
    const s = connect(pair.client.sidecar.outbound.port, pair.pods.b.ip);
    let data = '';
    s.on('data', (c) => (data += c.toString()));
    s.on('end', () => resolve(data));
    s.on('error', reject);
    s.write('GET / HTTP/1.1\r\nHost: pod-service\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n');
  });
  assert.match(raw, /^HTTP\/1\.1 400 /);
  assert.match(raw, /x-tsmesh-error: bad-request/);
  assert.equal((await send(pair.proxyURL)).status, 200);
});

test('a WebSocket echo works through the pair', async () => {
  const wss = new WebSocketServer({ noServer: true });
  pair.app.server.on('upgrade', (req, socket, head) => {
    wss.handleUpgrade(req, socket, head, (ws) => ws.on('message', (m, binary) => ws.send(m, { binary })));
  });
  const ws = new WebSocket('ws://pod-service/echo', { createConnection: () => connect(pair.client.sidecar.outbound.port, pair.pods.b.ip) });
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  const replies: string[] = [];
  const got = new Promise<void>((resolve) =>
    ws.on('message', (m) => {
      replies.push(m.toString());
      if (replies.length === 3) resolve();
    }),
  );
  ws.send('one');
  ws.send('two');
  ws.send(Buffer.alloc(100_000, 'z'));
  await got;
  assert.deepEqual(replies.slice(0, 2), ['one', 'two']);
  assert.equal(replies[2]!.length, 100_000);
  ws.close();
  wss.close();
});

test('both sidecars write an access log line for the request', async () => {
  const r = await send(pair.proxyURL, { path: '/logged' });
  assert.equal(r.status, 200);
  const out = pair.client.logs.find((l) => l.type === 'access' && l.path === '/logged');
  const inn = pair.server.logs.find((l) => l.type === 'access' && l.path === '/logged');
  assert.ok(out && inn, 'an access line on each side');
  assert.equal(out.direction, 'outbound');
  assert.equal(out.status, 200);
  assert.equal(out.upstream_pod, 'pod-a');
  assert.equal(out.upstream_service, 'pod-service.default');
  assert.equal(inn.direction, 'inbound');
  assert.equal(inn.upstream, `${pair.pods.a.ip}:8080`);
  assert.ok(typeof out.duration_ms === 'number' && typeof out.bytes_out === 'number' && (out.bytes_out as number) > 0);
});
