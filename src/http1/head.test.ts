// The strict HTTP/1.1 head parser and the chunked framer: what they accept and how they read
// it, what they refuse, and bytes arriving one at a time.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HeadError, MAX_HEAD_BYTES, parseRequestHead, parseResponseHead, scanHead } from './head.ts';
import { ChunkedFramer } from './body.ts';

const b = (s: string) => Buffer.from(s, 'latin1');

function request(s: string) {
  const buf = b(s);
  const end = scanHead(buf, 0, 0, buf.length);
  assert.notEqual(end, -1, 'a complete head');
  return { head: parseRequestHead(buf, 0, end), end, length: buf.length };
}

test('a request head: method, target, version, headers as node:http presents them, framing', () => {
  const { head, end, length } = request('POST /a?b=c HTTP/1.1\r\nHost: pod-service\r\nX-A: 1\r\nx-a: 2\r\nCookie: a=1\r\nCookie: b=2\r\nContent-Length: 5\r\nX-Pad:  v \t\r\n\r\nhello');
  assert.equal(end, length - 5);
  assert.equal(head.method, 'POST');
  assert.equal(head.target, '/a?b=c');
  assert.equal(head.version, '1.1');
  assert.deepEqual(head.headers, { host: 'pod-service', 'x-a': '1, 2', cookie: 'a=1; b=2', 'content-length': '5', 'x-pad': 'v' });
  assert.equal(head.contentLength, 5);
  assert.equal(head.chunked, false);
  assert.equal(head.keepAlive, true);
});

test('keep-alive, Expect, Upgrade, absolute form, HTTP/1.0', () => {
  assert.equal(request('GET / HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n').head.keepAlive, false);
  assert.equal(request('GET / HTTP/1.0\r\n\r\n').head.keepAlive, false);
  assert.equal(request('GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n').head.keepAlive, true);
  assert.equal(request('PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n').head.expectContinue, true);
  assert.equal(request('GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n').head.upgrade, true);
  assert.equal(request('GET http://pod-service:80/x?y HTTP/1.1\r\nHost: pod-service\r\n\r\n').head.target, 'http://pod-service:80/x?y');
  assert.equal(request('POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n').head.chunked, true);
});

const refused: [string, string][] = [
  ['CL with TE', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n'],
  ['two Content-Lengths', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\n'],
  ['a list as Content-Length', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4, 4\r\n\r\n'],
  ['a signed Content-Length', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +4\r\n\r\n'],
  ['obs-fold', 'GET / HTTP/1.1\r\nHost: a\r\nX-A: a\r\n b\r\n\r\n'],
  ['a control character', 'GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x01b\r\n\r\n'],
  ['DEL', 'GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x7fb\r\n\r\n'],
  ['chunked not last', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n'],
  ['whitespace after chunked', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\t\r\n\r\n'],
  ['chunked twice', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n'],
  ['an unknown coding alone', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n'],
  ['a space before the colon', 'GET / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\n'],
  ['no Host', 'GET / HTTP/1.1\r\n\r\n'],
  ['two Hosts', 'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n'],
  ['a bare CR', 'GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n'],
  ['a bare CR ending the request line', 'GET / HTTP/1.1\r\rHost: a\r\n\r\n'],
  ['an unknown method', 'FOO / HTTP/1.1\r\nHost: a\r\n\r\n'],
  ['a lower-case method', 'get / HTTP/1.1\r\nHost: a\r\n\r\n'],
  ['HTTP/2.0 in a request line', 'GET / HTTP/2.0\r\nHost: a\r\n\r\n'],
  ['two spaces', 'GET  / HTTP/1.1\r\nHost: a\r\n\r\n'],
  ['a target that is no URL', 'GET x HTTP/1.1\r\nHost: a\r\n\r\n'],
  ['CONNECT', 'CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n'],
  ['TE in HTTP/1.0', 'POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n'],
  ['an Upgrade with a body', 'GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\nContent-Length: 3\r\n\r\n'],
];
for (const [name, s] of refused) {
  test(`refused: ${name}`, () => {
    assert.throws(() => request(s), HeadError);
  });
}

test('scanHead: a bare LF is refused as soon as it arrives; bytes one at a time find the end once', () => {
  assert.throws(() => scanHead(b('GET / HTTP/1.1\nHost'), 0, 0, 19), /bare LF/);
  const buf = b('GET / HTTP/1.1\r\nHost: a\r\n\r\nNEXT');
  let scanned = 0;
  let found = -1;
  for (let end = 1; end <= buf.length && found === -1; end++) {
    found = scanHead(buf, 0, scanned, end);
    scanned = end;
  }
  assert.equal(found, buf.length - 4);
});

test('scanHead: a head over the limit is 431 (tooLarge), complete or not', () => {
  const big = b(`GET / HTTP/1.1\r\nHost: a\r\nX: ${'a'.repeat(MAX_HEAD_BYTES)}\r\n\r\n`);
  assert.throws(() => scanHead(big, 0, 0, big.length), (e: HeadError) => e.tooLarge);
  assert.throws(() => scanHead(big, 0, 0, MAX_HEAD_BYTES + 1), (e: HeadError) => e.tooLarge);
  const ok = b(`GET / HTTP/1.1\r\nHost: a\r\nX: ${'a'.repeat(12 * 1024)}\r\n\r\n`);
  assert.equal(scanHead(ok, 0, 0, ok.length), ok.length);
});

test('response heads: status, reason, names as written, framing', () => {
  const s = b('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: X-Private, keep-alive\r\nContent-Length: 2\r\n\r\nok');
  const r = parseResponseHead(s, 0, s.length - 2);
  assert.equal(r.status, 200);
  assert.equal(r.reason, 'OK');
  assert.deepEqual(r.names, ['Content-Type', 'Connection', 'Content-Length']);
  assert.equal(r.contentLength, 2);
  assert.equal(r.keepAlive, true);
  assert.equal(r.connection, 'x-private, keep-alive');
  const chunked = b('HTTP/1.1 404\r\nTransfer-Encoding: chunked\r\n\r\n');
  assert.deepEqual([parseResponseHead(chunked, 0, chunked.length).chunked, parseResponseHead(chunked, 0, chunked.length).reason], [true, '']);
  const close = b('HTTP/1.0 200 OK\r\n\r\n');
  assert.deepEqual([parseResponseHead(close, 0, close.length).closeDelimited, parseResponseHead(close, 0, close.length).keepAlive], [true, false]);
  const gzip = b('HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n');
  assert.equal(parseResponseHead(gzip, 0, gzip.length).closeDelimited, true);
  for (const bad of ['HTTP/1.1 20 OK\r\n\r\n', 'HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n', 'HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n', 'HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n']) {
    assert.throws(() => parseResponseHead(b(bad), 0, bad.length), HeadError, bad);
  }
});

test('the chunked framer: where the body ends, data bytes counted, byte by byte as well as at once', () => {
  const body = b('5;a=1;b="x y"\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nT: 1\r\nU: 2\r\n\r\nNEXT');
  const whole = new ChunkedFramer();
  assert.equal(whole.feed(body, 0, body.length), body.length - 4);
  assert.equal(whole.done, true);
  assert.equal(whole.bytes, 31);
  const split = new ChunkedFramer();
  let used = 0;
  for (let i = 0; i < body.length && !split.done; i++) used += split.feed(body, i, i + 1);
  assert.equal(used, body.length - 4);
  assert.equal(split.bytes, 31);
});

test('the chunked framer refuses bad sizes, extensions, data lengths and trailers', () => {
  for (const bad of ['z\r\n', '5 \r\nhello\r\n', '-1\r\n', '5\r\nhelloX\r\n', '5\nhello', '5;a b\r\n', '; a\r\n', '0\r\nContent-Length: 1\r\n\r\n', '0\r\nbad trailer\r\n\r\n', 'fffffffffffff\r\n']) {
    assert.throws(() => new ChunkedFramer().feed(b(bad), 0, bad.length), HeadError, JSON.stringify(bad));
  }
});
