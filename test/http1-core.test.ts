// The raw-socket HTTP/1.1 core (src/http1/) through a sidecar pair, on what it provides by
// construction: pipelined requests forwarded one at a time and answered in order, bounded
// read-ahead (a client pipelining megabytes is not read further while its first request is in
// flight), backpressure from a client that does not read its response to the app, and the
// keep-alive pool reusing one connection to the app for sequential requests.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import type { ServerResponse } from 'node:http';
import { sidecarPair, eventually, type Pair } from './harness/mesh.ts';
import { send } from './harness/client.ts';

let pair: Pair;
const held: ServerResponse[] = [];
let bigWrites: { res: ServerResponse; blocked: boolean } | undefined;

before(async () => {
  pair = await sidecarPair((req, res) => {
    if (req.url === '/hold') {
      held.push(res);
      return;
    }
    if (req.url === '/big') {
      // 64 MiB in 64 KiB writes, as fast as the sidecar takes them
      const block = Buffer.alloc(64 * 1024, 7);
      let left = 1024;
      res.writeHead(200, { 'content-length': String(64 * 1024 * 1024) });
      const state = { res, blocked: false };
      bigWrites = state;
      const pump = () => {
        while (left > 0) {
          left--;
          if (!res.write(block)) {
            state.blocked = true;
            res.once('drain', () => {
              state.blocked = false;
              pump();
            });
            return;
          }
        }
        res.end();
      };
      pump();
      return;
    }
    req.resume();
    req.on('end', () => res.end(req.url));
  });
});
after(() => pair.close());

function open(): Socket {
  return connect(pair.client.sidecar.outbound.port, pair.pods.b.ip);
}

/** Reads responses off `s` and returns their bodies (each a short path) in arrival order. */
function bodies(s: Socket): { list: string[]; raw: () => string } {
  let data = '';
  const list: string[] = [];
  s.on('data', (c: Buffer) => {
    data += c.toString('latin1');
    for (;;) {
      const m = /^HTTP\/1\.1 (\d+)[^\r]*\r\n([\s\S]*?)\r\n\r\n/.exec(data);
      if (!m) return;
      const length = Number(/content-length: (\d+)/i.exec(m[2]!)?.[1] ?? 0);
      const start = m[0].length;
      if (data.length < start + length) return;
      list.push(`${m[1]} ${data.slice(start, start + length)}`);
      data = data.slice(start + length);
    }
  });
  return { list, raw: () => data };
}

test('pipelined requests are forwarded one at a time and answered in order', async () => {
  const seenBefore = pair.app.requests.length;
  const s = open();
  const got = bodies(s);
  s.write('GET /hold HTTP/1.1\r\nHost: pod-service\r\n\r\nGET /p2 HTTP/1.1\r\nHost: pod-service\r\n\r\nGET /p3 HTTP/1.1\r\nHost: pod-service\r\n\r\n');
  await eventually(() => held.length === 1, 5000, 'the first request at the app');
  // the app answers anything else at once: had the sidecar forwarded /p2 and /p3, they would be there
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(pair.app.requests.length - seenBefore, 1, 'only the first request was forwarded while it is in flight');
  held.shift()!.end('/hold');
  await eventually(() => got.list.length === 3, 5000, 'three responses');
  assert.deepEqual(got.list, ['200 /hold', '200 /p2', '200 /p3']);
  assert.deepEqual(pair.app.requests.slice(seenBefore).map((r) => r.url), ['/hold', '/p2', '/p3']);
  s.destroy();
});

test('a client pipelining megabytes while its first request is in flight is not read further (bounded read-ahead); all are answered afterwards', async () => {
  const seenBefore = pair.app.requests.length;
  const s = open();
  const got = bodies(s);
  const pad = 'x'.repeat(8 * 1024);
  let bytes = Buffer.byteLength('GET /hold HTTP/1.1\r\nHost: pod-service\r\n\r\n');
  s.write('GET /hold HTTP/1.1\r\nHost: pod-service\r\n\r\n');
  const n = 2000; // 2000 requests of 8 KiB: 16 MiB, more than the kernel's socket buffers take
  for (let i = 0; i < n; i++) {
    const r = `GET /q${i} HTTP/1.1\r\nHost: pod-service\r\nX-Pad: ${pad}\r\n\r\n`;
    bytes += r.length;
    s.write(r);
  }
  await eventually(() => held.length === 1, 5000, 'the first request at the app');
  // the sidecar stops reading: most of what the client wrote stays in the client's own buffer
  await eventually(() => s.writableLength > 4 * 1024 * 1024, 10_000, `the client's writes to back up (${s.writableLength} of ${bytes} bytes unsent)`);
  assert.equal(pair.app.requests.length - seenBefore, 1, 'nothing after the first request was forwarded');
  held.shift()!.end('/hold');
  await eventually(() => got.list.length === n + 1, 60_000, `all ${n + 1} responses (${got.list.length} so far)`);
  assert.deepEqual(got.list.slice(0, 3), ['200 /hold', '200 /q0', '200 /q1']);
  assert.equal(got.list[n], `200 /q${n - 1}`);
  assert.ok(got.list.every((l, i) => l === (i === 0 ? '200 /hold' : `200 /q${i - 1}`)), 'in order');
  s.destroy();
});

test("a client that does not read its response holds the app's writes back; then it gets every byte", async () => {
  const s = open();
  s.pause();
  s.write('GET /big HTTP/1.1\r\nHost: pod-service\r\n\r\n');
  await eventually(() => bigWrites?.blocked === true && bigWrites.res.writableLength > 0, 10_000, "the app's writes to back up");
  // it stays so: the sidecars buffer a bounded amount, not the 64 MiB
  const hash = createHash('sha256');
  let head = '';
  let body = 0;
  let inBody = false;
  const done = new Promise<void>((resolve) => {
    s.on('data', (c: Buffer) => {
      if (!inBody) {
        head += c.toString('latin1');
        const end = head.indexOf('\r\n\r\n');
        if (end === -1) return;
        inBody = true;
        const rest = Buffer.from(head.slice(end + 4), 'latin1');
        head = head.slice(0, end);
        c = rest;
      }
      hash.update(c);
      body += c.length;
      if (body >= 64 * 1024 * 1024) resolve();
    });
  });
  s.resume();
  await done;
  assert.match(head, /^HTTP\/1\.1 200 /);
  assert.equal(body, 64 * 1024 * 1024);
  assert.equal(hash.digest('hex'), createHash('sha256').update(Buffer.alloc(64 * 1024 * 1024, 7)).digest('hex'));
  s.destroy();
});

test('a pooled connection paused for a slow client at the end of its response is read again by the next request', async () => {
  // each response ends while the client is behind (its last bytes wait in the sidecar's socket
  // buffer), so the upstream connection goes back to the pool paused; the next request reuses it
  for (let round = 0; round < 3; round++) {
    const s = open();
    s.pause();
    s.write('GET /big HTTP/1.1\r\nHost: pod-service\r\n\r\n');
    await eventually(() => bigWrites?.blocked === true, 10_000, "the app's writes to back up");
    let got = 0;
    const all = new Promise<void>((resolve) => s.on('data', (c: Buffer) => (got += c.length) >= 64 * 1024 * 1024 && resolve()));
    s.resume();
    await all;
    s.destroy();
    for (let i = 0; i < 3; i++) assert.equal((await send(pair.proxyURL, { path: `/after-big-${round}-${i}` })).status, 200);
  }
});

test('sequential requests reuse one keep-alive connection to the app (the pool hands back the connection)', async () => {
  const before = pair.app.connections;
  for (let i = 0; i < 20; i++) assert.equal((await send(pair.proxyURL, { path: `/seq${i}` })).status, 200);
  assert.ok(pair.app.connections - before <= 1, `${pair.app.connections - before} new connections to the app for 20 requests`);
});
