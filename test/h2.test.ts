// HTTP/2 stream mechanics through a sidecar pair (plaintext mesh hop: the preamble alone says
// h2): flow control end to end, request trailers, resets both ways, GOAWAY on drain. The app is
// a plain node:http2 server (h2c); the client a plain node:http2 session to pod-b's outbound
// listener in explicit mode.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { connect, constants, createServer, type ClientHttp2Session, type Http2Server, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import { eventually, loopbackIP, tempDir, testSidecar, writeRegistry, type PodDef, type TestSidecar } from './harness/mesh.ts';

type Handler = (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => void;
const handlers = new Map<string, Handler>();
let dir: { path: string; remove(): Promise<void> };
let app: Http2Server;
let server: TestSidecar;
let client: TestSidecar;

before(async () => {
  dir = await tempDir();
  const a: PodDef = { name: 'pod-a', ip: loopbackIP(), labels: { app: 'web' }, meshed: true };
  const b: PodDef = { name: 'pod-b', ip: loopbackIP(), labels: { app: 'client' }, meshed: true };
  app = createServer();
  app.on('stream', (stream, headers) => {
    stream.on('error', () => undefined);
    handlers.get(String(headers[':path']))!(stream, headers);
  });
  await new Promise<void>((r) => app.listen(8080, a.ip, r));
  const registryFile = join(dir.path, 'registry.yaml');
  await writeRegistry(registryFile, { services: [{ name: 'web', ports: [{ port: 80, targetPort: 8080 }], selector: { app: 'web' } }], pods: [a, b] });
  server = await testSidecar({ pod: a, registryFile, dir: dir.path });
  client = await testSidecar({ pod: b, registryFile, dir: dir.path });
});
after(async () => {
  await Promise.all([client?.close(), server?.close()]);
  app?.close();
  await dir?.remove();
});

function session(): ClientHttp2Session {
  const s = connect(`http://${new URL(client.outboundURL).host}`);
  s.on('error', () => undefined);
  return s;
}

test('flow control holds end to end: a client that does not read stops the app writing, then gets every byte', async (t) => {
  const TOTAL = 8 * 1024 * 1024;
  const chunk = Buffer.alloc(16 * 1024, 7);
  let written = 0; // bytes the app's stream accepted (write() called); it waits for 'drain' when full
  handlers.set('/big', (stream) => {
    stream.respond({ ':status': 200 });
    const write = () => {
      while (written < TOTAL) {
        written += chunk.length;
        if (!stream.write(chunk)) return void stream.once('drain', write);
      }
      stream.end();
    };
    write();
  });
  const s = session();
  t.after(() => s.close());
  const req = s.request({ ':path': '/big', ':authority': 'web' });
  req.end();
  req.pause(); // read nothing for now
  await new Promise((r) => req.once('response', r));
  // wait until the app is stuck: what it wrote stops growing
  let last = -1;
  let still = 0;
  await eventually(() => {
    still = written === last ? still + 1 : 0;
    last = written;
    return still >= 4;
  }, 10_000, 'the app to stop writing');
  assert.ok(written < 2 * 1024 * 1024, `the app wrote ${written} bytes of 8 MiB while the client read nothing: windows and buffers, nothing without bound`);
  let got = 0;
  req.on('data', (c: Buffer) => (got += c.length));
  req.resume();
  await new Promise((r) => req.once('end', r));
  assert.equal(got, TOTAL);
});

test('request trailers reach the app; response trailers reach the client', async (t) => {
  let appTrailers: IncomingHttpHeaders | undefined;
  handlers.set('/trailers', (stream) => {
    stream.on('trailers', (tr: IncomingHttpHeaders) => (appTrailers = tr));
    stream.resume();
    stream.on('end', () => {
      stream.respond({ ':status': 200 }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'x-checksum': 'abc' }));
      stream.end('body');
    });
  });
  const s = session();
  t.after(() => s.close());
  const req = s.request({ ':path': '/trailers', ':authority': 'web', ':method': 'POST' }, { waitForTrailers: true });
  req.on('wantTrailers', () => req.sendTrailers({ 'x-request-sum': '42' }));
  req.end('payload');
  const trailers = await new Promise<IncomingHttpHeaders>((resolve) => req.once('trailers', resolve));
  req.resume();
  assert.equal(trailers['x-checksum'], 'abc');
  assert.equal(appTrailers?.['x-request-sum'], '42');
});

test("a client's RST_STREAM cancels the app's stream", async (t) => {
  let appClosed: Promise<number> | undefined;
  handlers.set('/cancel-me', (stream) => {
    appClosed = new Promise((resolve) => stream.once('close', () => resolve(stream.rstCode)));
    stream.respond({ ':status': 200 });
    stream.write('first');
  });
  const s = session();
  t.after(() => s.close());
  const req = s.request({ ':path': '/cancel-me', ':authority': 'web' });
  req.end();
  await new Promise((r) => req.once('data', r));
  req.close(constants.NGHTTP2_CANCEL);
  await eventually(() => appClosed !== undefined, 3000, 'the app stream');
  assert.equal(await appClosed, constants.NGHTTP2_CANCEL, 'the reset reached the app');
});

test("an app whose connection breaks mid-response: the client's stream is reset, and the access log says upstream-reset", async (t) => {
  // (node's stream.close() sends END_STREAM before its RST_STREAM, which reads as a complete
  // response; losing the session mid-response is an unambiguous cut)
  handlers.set('/reset-mid', (stream) => {
    stream.respond({ ':status': 200 });
    stream.write('partial', () => setTimeout(() => stream.session!.destroy(new Error('app crashed')), 20));
  });
  const s = session();
  t.after(() => s.close());
  const req = s.request({ ':path': '/reset-mid', ':authority': 'web' });
  req.on('error', () => undefined);
  req.end();
  req.resume();
  await new Promise((r) => req.once('close', r));
  assert.notEqual(req.rstCode, constants.NGHTTP2_NO_ERROR, 'reset, not a clean end');
  await eventually(() => client.logs.some((l) => l.type === 'access' && l.path === '/reset-mid' && l.error === 'upstream-reset'), 3000, 'the access line');
});

test('a non-gRPC HTTP/2 request with no endpoint gets the HTTP error and x-tsmesh-error', async (t) => {
  const s = session();
  t.after(() => s.close());
  const req = s.request({ ':path': '/', ':authority': 'nowhere' });
  req.end();
  const head = await new Promise<IncomingHttpHeaders>((resolve) => req.once('response', resolve));
  req.resume();
  assert.equal(head[':status'], 503);
  assert.equal(head['x-tsmesh-error'], 'no-healthy-endpoints');
});

test('on drain the sidecar sends GOAWAY; a stream in flight still completes', async () => {
  let release!: () => void;
  handlers.set('/long', (stream) => {
    stream.respond({ ':status': 200 });
    release = () => stream.end('done');
  });
  const s = session();
  const req = s.request({ ':path': '/long', ':authority': 'web' });
  req.end();
  let body = '';
  req.on('data', (c: Buffer) => (body += c));
  await new Promise((r) => req.once('response', r));
  const goaway = new Promise((r) => s.once('goaway', r));
  const drained = client.sidecar.drain();
  await goaway;
  release();
  await new Promise((r) => req.once('end', r));
  assert.equal(body, 'done');
  s.close();
  await drained;
});
