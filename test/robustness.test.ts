// Bad input at the sidecar's HTTP front: request smuggling attempts and malformed headers are
// refused with 400 (x-tsmesh-error: bad-request) and never forwarded, and the sidecar keeps
// serving. Real sockets, raw bytes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { sidecarPair, type Pair } from './harness/mesh.ts';
import { send } from './harness/client.ts';

let pair: Pair;
before(async () => {
  pair = await sidecarPair((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => res.end(JSON.stringify({ url: req.url, te: req.headers['transfer-encoding'] ?? null, body })));
  });
});
after(() => pair.close());

/** Raw bytes to pod-b's outbound listener; the first status line back ('' if none). */
function raw(bytes: string | Buffer): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(pair.client.sidecar.outbound.port, pair.pods.b.ip);
    let data = '';
    s.on('data', (c) => (data += c.toString('latin1')));
    s.on('close', () => resolve(data));
    s.on('error', () => resolve(data));
    s.write(bytes);
    setTimeout(() => s.end(), 300);
  });
}

const cases: [name: string, bytes: string][] = [
  ['Content-Length with Transfer-Encoding', 'POST /smuggle-1 HTTP/1.1\r\nHost: pod-service\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: pod-service\r\n\r\n'],
  ['two different Content-Lengths', 'POST /smuggle-2 HTTP/1.1\r\nHost: pod-service\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd'],
  ['obs-fold (a folded header line)', 'GET /smuggle-3 HTTP/1.1\r\nHost: pod-service\r\nX-A: a\r\n b\r\n\r\n'],
  ['bare LF line endings', 'GET /smuggle-4 HTTP/1.1\nHost: pod-service\n\n'],
  ['a control character in a header value', 'GET /smuggle-5 HTTP/1.1\r\nHost: pod-service\r\nX-A: a\x01b\r\n\r\n'],
  ['chunked not last in Transfer-Encoding', 'POST /smuggle-6 HTTP/1.1\r\nHost: pod-service\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n'],
  ['a space before the colon', 'GET /smuggle-7 HTTP/1.1\r\nHost: pod-service\r\nContent-Length : 5\r\n\r\nhello'],
];

for (const [name, bytes] of cases) {
  test(`refused with 400 and never forwarded: ${name}`, async () => {
    const seen = pair.app.requests.length;
    const reply = await raw(bytes);
    assert.match(reply, /^HTTP\/1\.1 400 /, reply);
    assert.match(reply, /x-tsmesh-error: bad-request/);
    assert.equal(pair.app.requests.length, seen, 'the app saw nothing');
    assert.equal((await send(pair.proxyURL, { path: '/after' })).status, 200, 'the sidecar keeps serving');
  });
}

test('an unknown transfer coding is not passed on ambiguously', async () => {
  await raw('POST /xchunked HTTP/1.1\r\nHost: pod-service\r\nTransfer-Encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n');
  assert.ok(!pair.app.requests.some((r) => r.headers['transfer-encoding'] === 'xchunked'), 'no request reached the app with a transfer coding it could read differently');
  assert.equal((await send(pair.proxyURL, { path: '/after-xchunked' })).status, 200);
});

test('bytes that are not UTF-8 in a header value are passed on as they came (obs-text)', async () => {
  const reply = await raw(Buffer.concat([Buffer.from('GET /latin1 HTTP/1.1\r\nHost: pod-service\r\nX-Name: '), Buffer.from([0xe9, 0xff]), Buffer.from('\r\nConnection: close\r\n\r\n')]));
  assert.match(reply, /^HTTP\/1\.1 200 /);
  const seen = pair.app.requests.find((r) => r.url === '/latin1')!;
  assert.deepEqual(Buffer.from(String(seen.headers['x-name']), 'latin1'), Buffer.from([0xe9, 0xff]));
});

test('a request line that is not HTTP at all gets 400', async () => {
  const reply = await raw('\x16\x03\x01 not http\r\n\r\n');
  assert.match(reply, /^HTTP\/1\.1 400 /);
});
