// The proxy's errors, in every form the sidecar answers in, are one answer (src/errors/response.ts):
// the status and `x-tsmesh-error` from the code registry, `content-type: text/plain;
// charset=utf-8` and the body "<reason>: <message>\n" with its length; a gRPC call gets a
// trailers-only answer (or error trailers) with `grpc-status` from the registry. Each form is
// reached through a real sidecar and real sockets:
//   HTTP/1.1      a request through the raw-socket core (no service for its authority)
//   raw socket    a head the parser refuses (400, 431), a head too slow (408), before any
//                 request exists; a WebSocket upgrade refused, and one whose upstream refuses
//                 the connection (http-proxy's error path)
//   HTTP/2        a non-gRPC stream; gRPC trailers-only; gRPC error trailers after the head
//   node:http     the admin port's answer
// Regression: before, the raw socket's answers said `content-type: text/plain` and the
// WebSocket upstream failure had no body at all (both hand-built). A last test reads the
// source: no file outside src/errors/ writes the header itself.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { connect as netConnect } from 'node:net';
import { createServer as createHttpServer, type IncomingHttpHeaders } from 'node:http';
import { connect as h2Connect, createServer as createH2Server, constants, type Http2Server } from 'node:http2';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { loopbackIP, tempDir, testSidecar, writeRegistry, type TestSidecar } from './harness/mesh.ts';
import { codes, ProxyError, type ProxyErrorCode } from '../src/errors/errors.ts';
import { sendProxyError } from '../src/errors/response.ts';

let sidecar: TestSidecar;
let dir: { path: string; remove(): Promise<void> };
let stallApp: Http2Server;
let outbound: { host: string; port: number };

before(async () => {
  dir = await tempDir();
  const client = { name: 'pod-b', ip: loopbackIP(), labels: { app: 'client' }, meshed: true };
  // a pod without a sidecar where nothing listens on port 9: connections to it are refused
  const ghost = { name: 'ghost', ip: loopbackIP(), labels: { app: 'ghost' }, meshed: false };
  // a pod without a sidecar whose h2c app sends a gRPC response head and then nothing
  const stall = { name: 'stall', ip: loopbackIP(), labels: { app: 'stall' }, meshed: false };
  stallApp = createH2Server();
  stallApp.on('stream', (stream) => {
    stream.on('error', () => undefined);
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' });
  });
  await new Promise<void>((r) => stallApp.listen(0, stall.ip, r));
  const stallPort = (stallApp.address() as AddressInfo).port;
  const registryFile = join(dir.path, 'registry.yaml');
  await writeRegistry(registryFile, {
    services: [
      { name: 'ghost', ports: [{ port: 80, targetPort: 9 }], selector: { app: 'ghost' } },
      { name: 'stall', ports: [{ port: 81, targetPort: stallPort }], selector: { app: 'stall' } },
    ],
    pods: [client, ghost, stall],
  });
  sidecar = await testSidecar({ pod: client, registryFile, dir: dir.path, env: { TSMESH_HEADERS_TIMEOUT: '300ms' } });
  outbound = { host: client.ip, port: sidecar.sidecar.outbound.port };
});
after(async () => {
  await sidecar.close();
  await new Promise<void>((r) => stallApp.close(() => r()));
  await dir.remove();
});

/** The shape every HTTP (non-gRPC) answer of the proxy has. */
function assertAnswer(form: string, code: ProxyErrorCode, status: number, headers: Record<string, string | string[] | number | undefined>, body: string): void {
  const { reason } = codes[code];
  assert.equal(status, codes[code].status, `${form}: status`);
  assert.equal(headers['x-tsmesh-error'], reason, `${form}: x-tsmesh-error`);
  assert.equal(headers['content-type'], 'text/plain; charset=utf-8', `${form}: content-type`);
  assert.match(body, new RegExp(`^${reason}: .+\\n$`), `${form}: body`);
  assert.equal(Number(headers['content-length']), Buffer.byteLength(body), `${form}: content-length`);
}

/** Writes `bytes` (in pieces, `gapMs` apart) on a raw connection to the outbound listener; reads to its close. */
function raw(pieces: string[], gapMs = 0): Promise<{ status: number; headers: IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const socket = netConnect(outbound);
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      const text = Buffer.concat(chunks).toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      if (end === -1) return reject(new Error(`no response head: ${JSON.stringify(text)}`));
      const [statusLine, ...lines] = text.slice(0, end).split('\r\n');
      const headers: IncomingHttpHeaders = {};
      for (const line of lines) {
        const colon = line.indexOf(':');
        headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
      }
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3}) /.exec(statusLine!)?.[1] ?? 0), headers, body: text.slice(end + 4) });
    });
    let i = 0;
    const next = () => {
      if (socket.destroyed || i >= pieces.length) return;
      socket.write(pieces[i++]!);
      if (i < pieces.length) setTimeout(next, gapMs);
    };
    socket.once('connect', next);
  });
}

test('HTTP/1.1 through the raw-socket core: no service for the authority', async () => {
  const r = await raw(['GET /x HTTP/1.1\r\nhost: nowhere.default:80\r\nconnection: close\r\n\r\n']);
  assertAnswer('HTTP/1.1', 'NO_HEALTHY_ENDPOINTS', r.status, r.headers, r.body);
});

test('raw socket, before a request exists: a malformed head (400) and one over the size limit (431)', async () => {
  const bad = await raw(['GET /x HTTP/1.1\r\nhost: ghost\r\nbad header: x\r\n\r\n']);
  assertAnswer('malformed head', 'BAD_REQUEST', bad.status, bad.headers, bad.body);
  assert.equal(bad.headers.connection, 'close');
  const big = await raw([`GET /x HTTP/1.1\r\nhost: ghost\r\nx-big: ${'a'.repeat(20_000)}\r\n\r\n`]);
  assertAnswer('head too large', 'HEADERS_TOO_LARGE', big.status, big.headers, big.body);
});

test('raw socket, before a request exists: a head that does not arrive within TSMESH_HEADERS_TIMEOUT (408)', async () => {
  // the first bytes of a head, and nothing more: the sweep closes the connection with 408
  const r = await raw(['GET /x HTTP/1.1\r\n']);
  assertAnswer('headers timeout', 'HEADERS_TIMEOUT', r.status, r.headers, r.body);
});

const upgrade = (host: string) => `GET /ws HTTP/1.1\r\nhost: ${host}\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`;

test('WebSocket upgrade: refused by the pipeline (no service), and failed by the upstream (connection refused)', async () => {
  const refused = await raw([upgrade('nowhere.default:80')]);
  assertAnswer('upgrade refused', 'NO_HEALTHY_ENDPOINTS', refused.status, refused.headers, refused.body);
  const failed = await raw([upgrade('ghost.default:80')]);
  assertAnswer('upgrade upstream failure', 'CONNECT_FAILURE', failed.status, failed.headers, failed.body);
});

/** One HTTP/2 request to the outbound (h2c prior knowledge): head, body, trailers, whether the head ended the stream. */
function h2Request(headers: Record<string, string>): Promise<{ head: Record<string, string | string[] | undefined>; body: string; trailers: Record<string, string | string[] | undefined> | undefined; headEnded: boolean }> {
  return new Promise((resolve, reject) => {
    const session = h2Connect(`http://${outbound.host}:${outbound.port}`);
    session.on('error', reject);
    const req = session.request({ ':method': 'POST', ':path': '/svc/Method', ...headers }, { endStream: false });
    req.end();
    let head: Record<string, string | string[] | undefined> = {};
    let headEnded = false;
    let trailers: Record<string, string | string[] | undefined> | undefined;
    let body = '';
    req.on('response', (h, flags) => {
      head = h as typeof head;
      headEnded = (flags & constants.NGHTTP2_FLAG_END_STREAM) !== 0;
    });
    req.on('trailers', (t) => (trailers = t as typeof trailers));
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('error', () => undefined);
    req.on('close', () => {
      session.close();
      resolve({ head, body, trailers, headEnded });
    });
  });
}

test('HTTP/2: a non-gRPC stream gets the HTTP status and the text body', async () => {
  const r = await h2Request({ ':authority': 'nowhere.default:80' });
  assertAnswer('HTTP/2', 'NO_HEALTHY_ENDPOINTS', Number(r.head[':status']), r.head, r.body);
});

test('gRPC: a trailers-only answer with the registry\'s gRPC status, before a response head', async () => {
  const r = await h2Request({ ':authority': 'nowhere.default:80', 'content-type': 'application/grpc' });
  const err = new ProxyError('NO_HEALTHY_ENDPOINTS', 'x');
  assert.equal(r.head[':status'], 200);
  assert.equal(r.headEnded, true, 'one HEADERS frame with END_STREAM');
  assert.equal(r.head['content-type'], 'application/grpc');
  assert.equal(r.head['grpc-status'], String(err.grpcStatus));
  assert.equal(r.head['x-tsmesh-error'], 'no-healthy-endpoints');
  assert.match(String(r.head['grpc-message']), /^no-healthy-endpoints: /);
  assert.equal(r.body, '');
});

test('gRPC: error trailers once the response has started (the call\'s grpc-timeout passes)', async () => {
  const r = await h2Request({ ':authority': 'stall.default:81', 'content-type': 'application/grpc', 'grpc-timeout': '300m' });
  assert.equal(r.head[':status'], 200);
  assert.equal(r.headEnded, false);
  assert.equal(r.trailers?.['grpc-status'], String(codes.TIMEOUT.grpc));
  assert.equal(r.trailers?.['x-tsmesh-error'], 'timeout');
  assert.match(String(r.trailers?.['grpc-message']), /^timeout: /);
});

test('node:http (the admin port\'s form): the same answer', async (t) => {
  const server = createHttpServer((_req, res) => sendProxyError(res, new ProxyError('FORBIDDEN', 'not from loopback')));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  const res = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
  assertAnswer('node:http', 'FORBIDDEN', res.status, Object.fromEntries(res.headers), await res.text());
});

test('no file outside src/errors/ writes x-tsmesh-error itself', async () => {
  const root = new URL('../src/', import.meta.url).pathname;
  const files = (await readdir(root, { recursive: true })).filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts') && !f.startsWith('errors/') && !f.startsWith('demo/')); // the demo is a client: it prints what it saw
  // writing forms: a header line ("x-tsmesh-error: ..."), an object key, an assignment, setHeader
  const writes = /x-tsmesh-error\s*:|\[\s*ERROR_HEADER\s*\]\s*(?::|=[^=])|\$\{\s*ERROR_HEADER\s*\}\s*:|['"`]x-tsmesh-error['"`]\s*(?::|\]\s*=[^=])|setHeader\(\s*(?:ERROR_HEADER|['"`]x-tsmesh-error)/i;
  const offenders: string[] = [];
  for (const f of files) {
    const code = (await readFile(join(root, f), 'utf8')).replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`])\/\/.*$/gm, '$1');
    code.split('\n').forEach((line, i) => writes.test(line) && offenders.push(`src/${f}:${i + 1}: ${line.trim()}`));
  }
  assert.deepEqual(offenders, []);
});
