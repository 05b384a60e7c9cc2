// Hostile HTTP/2 input at every front (issue 14, item 1): a connection whose frames open a stream
// and then break the session in the same packet once killed a sidecar (the stream's pipeline
// looked its connection's context up after the session was gone). Raw frames, real sockets:
// pod-b's outbound front, pod-a's inbound front with the mesh preamble in plaintext, and the same
// with mTLS (a meshed caller's certificate, ALPN h2). The sidecar must stay up and keep answering,
// and nothing may stay counted in flight. Also the HTTP/1.1 input `npm run fuzz` found of the
// same kind: a request whose chunked body is refused while its forward is being started.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { connect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { sidecarPair, eventually, type Pair } from './harness/mesh.ts';
import { send } from './harness/client.ts';
import { FLAG, FRAME, frame, getRequest, goaway, H2_PREFACE, headers, prefaceHeadersGoawayZeros, rstStream, settings, windowUpdate } from './harness/h2-frames.ts';
import { preamble } from '../src/mesh/preamble.ts';

/** Writes `bytes` at once on a connected socket and resolves when the sidecar closes it (or after 2 s). */
function blast(socket: Socket, bytes: Buffer): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => socket.destroy(), 2000);
    socket.on('error', () => undefined);
    socket.on('data', () => undefined);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
    socket.write(bytes);
  });
}

const plain = (ip: string, port: number): Promise<Socket> =>
  new Promise((resolve, reject) => {
    const s = connect(port, ip, () => resolve(s));
    s.once('error', reject);
  });

/** The variants of the one-packet input, and other frame sequences that end a session while a stream opens. */
const inputs = (authority: string): [string, Buffer][] => [
  ['preface, SETTINGS, HEADERS on stream 1, GOAWAY, 150 zero bytes (the issue\'s packet)', prefaceHeadersGoawayZeros(authority)],
  ['the same with a graceful GOAWAY (NO_ERROR)', Buffer.concat([H2_PREFACE, settings(), headers(1, getRequest(authority), FLAG.END_HEADERS | FLAG.END_STREAM), goaway(0, 0), Buffer.alloc(150)])],
  ['HEADERS then DATA on stream 0', Buffer.concat([H2_PREFACE, settings(), headers(1, getRequest(authority)), frame(FRAME.DATA, 0, 0, Buffer.from('x'))])],
  ['HEADERS then RST_STREAM then garbage', Buffer.concat([H2_PREFACE, settings(), headers(1, getRequest(authority)), rstStream(1, 8), Buffer.alloc(64, 0xff)])],
  ['HEADERS then a zero WINDOW_UPDATE on the connection', Buffer.concat([H2_PREFACE, settings(), headers(1, getRequest(authority)), windowUpdate(0, 0)])],
  ['HEADERS without END_HEADERS then a frame that is not CONTINUATION', Buffer.concat([H2_PREFACE, settings(), headers(1, getRequest(authority), 0), goaway(0, 1)])],
  ['three streams, then a SETTINGS frame of bad length', Buffer.concat([H2_PREFACE, settings(), headers(1, getRequest(authority), FLAG.END_HEADERS | FLAG.END_STREAM), headers(3, getRequest(authority)), headers(5, getRequest(authority)), frame(FRAME.SETTINGS, 0, 0, Buffer.alloc(5))])],
];

/** After an attack: the sidecars are up, answer a real request end to end, and nothing stays in flight. */
async function stillServing(pair: Pair, what: string): Promise<void> {
  for (const s of [pair.client, pair.server]) assert.equal((await fetch(`${s.adminURL}/healthz/ready`)).status, 200, `${what}: ready`);
  assert.equal((await send(pair.proxyURL, { path: '/after' })).status, 200, `${what}: a request through the pair`);
  for (const s of [pair.client, pair.server]) {
    await eventually(async () => ((await (await fetch(`${s.adminURL}/config`)).json()) as { inFlight: number }).inFlight === 0, 5000, `${what}: nothing in flight`);
  }
}

for (const mtls of [false, true]) {
  const mode = mtls ? 'mTLS' : 'plaintext';
  let pair: Pair;
  let tls: { cert: Buffer; key: Buffer; ca: Buffer } | undefined;
  before(async () => {
    pair = await sidecarPair((req, res) => {
      req.resume();
      res.end('ok');
    }, { mtls, env: { TSMESH_IDLE_TIMEOUT: '1s' } }); // a session left half-closed by bad frames is ended when idle
    if (mtls) {
      const [cert, key, ca] = await Promise.all(['tls.crt', 'tls.key', 'ca.crt'].map((f) => readFile(join(pair.dir, 'pod-b-tls', f))));
      tls = { cert: cert!, key: key!, ca: ca! };
    }
  });
  after(() => pair.close());

  test(`${mode}: a chunked body refused in the packet that carries its head: no crash, nothing left in flight (outbound and inbound fronts)`, async () => {
    const bad = Buffer.from('POST /upload HTTP/1.1\r\nHost: pod-service\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\ncoding: chunked\r\n\r\n');
    await blast(await plain(pair.pods.b.ip, pair.client.sidecar.outbound.port), bad);
    if (mtls) {
      const s = tlsConnect({ host: pair.pods.a.ip, port: 15006, ...tls!, ALPNProtocols: ['tsmesh/1'], checkServerIdentity: () => undefined });
      await new Promise<void>((resolve, reject) => s.once('secureConnect', resolve).once('error', reject));
      await blast(s, Buffer.concat([preamble(8080), bad]));
    } else {
      await blast(await plain(pair.pods.a.ip, 15006), Buffer.concat([preamble(8080), bad]));
    }
    await stillServing(pair, 'a refused chunked body');
  });

  test(`${mode}: HTTP/2 frames that open a stream and break the session never crash the sidecar (outbound and inbound fronts)`, async () => {
    for (const [name, bytes] of inputs('pod-service')) {
      await blast(await plain(pair.pods.b.ip, pair.client.sidecar.outbound.port), bytes);
      if (mtls) {
        const s = tlsConnect({ host: pair.pods.a.ip, port: 15006, ...tls!, ALPNProtocols: ['h2'], checkServerIdentity: () => undefined });
        await new Promise<void>((resolve, reject) => s.once('secureConnect', resolve).once('error', reject));
        await blast(s, Buffer.concat([preamble(8080, 'h2'), bytes]));
      } else {
        await blast(await plain(pair.pods.a.ip, 15006), Buffer.concat([preamble(8080, 'h2'), bytes]));
      }
      await stillServing(pair, name);
    }
  });
}
