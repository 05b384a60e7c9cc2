// Issue 14, item 4, in the shape of the report (connections each pipelining 4 requests for
// 256 KiB and reading slowly), scaled down: pipelined requests reach the app one at a time per
// client connection, in order; a client that does not read holds the app's writes back (the
// bytes the app manages to write are bounded, not the whole response); afterwards every
// response arrives whole and in order. Memory under the full load is measured in bench/soak
// (`--slow-readers`), not asserted here.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { sidecarPair, eventually, type Pair } from './harness/mesh.ts';

const SIZE = 256 * 1024;
let pair: Pair;
// per client connection (the X-Conn header): requests at the app right now, the most at once, the order seen
const perConn = new Map<string, { now: number; most: number; order: string[] }>();
// the endless response: bytes the app's socket took so far
const endless = { written: 0, blocked: false };

before(async () => {
  pair = await sidecarPair((req, res) => {
    const conn = String(req.headers['x-conn'] ?? '');
    const c = perConn.get(conn) ?? { now: 0, most: 0, order: [] };
    perConn.set(conn, c);
    c.most = Math.max(c.most, ++c.now);
    c.order.push(req.url!);
    res.once('close', () => c.now--);
    req.resume();
    if (req.url === '/endless') {
      const block = Buffer.alloc(64 * 1024, 1);
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      const pump = () => {
        while (endless.written < 1024 * 1024 * 1024) {
          endless.written += block.length;
          if (!res.write(block)) {
            endless.blocked = true;
            return void res.once('drain', () => ((endless.blocked = false), pump()));
          }
        }
        res.end();
      };
      return pump();
    }
    res.end(Buffer.alloc(SIZE, Number(req.url!.slice(-1))));
  });
});
after(() => pair.close());

const open = (): Socket => connect(pair.client.sidecar.outbound.port, pair.pods.b.ip);

/** Reads `n` responses of SIZE off a socket, in order; resolves with the fill byte of each. */
function responses(s: Socket, n: number): Promise<number[]> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const fills: number[] = [];
    s.on('error', reject);
    s.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end === -1) return;
        const length = Number(/content-length: (\d+)/i.exec(buf.subarray(0, end).toString('latin1'))?.[1] ?? -1);
        if (length !== SIZE) return reject(new Error(`unexpected head: ${buf.subarray(0, end).toString('latin1')}`));
        if (buf.length < end + 4 + length) return;
        const body = buf.subarray(end + 4, end + 4 + length);
        if (!body.every((b) => b === body[0])) return reject(new Error('a body mixed with another'));
        fills.push(body[0]!);
        buf = buf.subarray(end + 4 + length);
        if (fills.length === n) return resolve(fills);
      }
    });
  });
}

test('20 connections pipelining 4 requests of 256 KiB, read slowly: the app sees one request at a time per connection, in order; all answered whole', async () => {
  const sockets = Array.from({ length: 20 }, () => open());
  sockets.forEach((s, i) => {
    s.pause(); // a slow reader: nothing read for a while
    s.write([1, 2, 3, 4].map((r) => `GET /r${r} HTTP/1.1\r\nHost: pod-service\r\nX-Conn: ${i}\r\n\r\n`).join(''));
  });
  await eventually(() => perConn.size === 20, 10_000, 'a request of each connection at the app');
  await new Promise((r) => setTimeout(r, 300));
  const all = sockets.map((s) => {
    const got = responses(s, 4);
    s.resume();
    return got;
  });
  for (const fills of await Promise.all(all)) assert.deepEqual(fills, [1, 2, 3, 4], 'each connection answered in order, bodies whole');
  for (const [conn, c] of perConn) {
    assert.equal(c.most, 1, `connection ${conn}: at most one of its requests at the app at once`);
    assert.deepEqual(c.order, ['/r1', '/r2', '/r3', '/r4'], `connection ${conn}: forwarded in order`);
  }
  for (const s of sockets) s.destroy();
});

test("a client that does not read: the app's writes stop after a bounded amount, not the whole response", async () => {
  const s = open();
  s.pause();
  s.write('GET /endless HTTP/1.1\r\nHost: pod-service\r\n\r\n');
  await eventually(() => endless.blocked, 10_000, "the app's writes to back up");
  // it stays backed up: give the sidecars time to read on if they would
  const at = endless.written;
  await new Promise((r) => setTimeout(r, 500));
  assert.ok(endless.blocked, 'still held back');
  // what can be in flight: the socket buffers of three connections (app -> pod-a's sidecar ->
  // pod-b's sidecar -> client) and each sidecar's bounded buffers; far less than 1 GiB
  assert.ok(endless.written < 64 * 1024 * 1024, `the app wrote ${(endless.written / 1024 / 1024).toFixed(1)} MiB (at first block: ${(at / 1024 / 1024).toFixed(1)} MiB)`);
  s.destroy();
});
