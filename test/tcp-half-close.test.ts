// Regression (issue 14, item 2): opaque TCP connections that half-close. A client that sends,
// ends its side and reads to the end (the shape of many request/response protocols over TCP)
// must get the whole answer, and the sidecar must then end the connection on both sides: one
// access line per connection, in-flight back to 0 (it counts against TSMESH_MAX_REQUESTS),
// file descriptors back to where they were. Before the fix each such connection stayed
// half-open in the sidecar for good. The outbound opaque path (interception) is covered by
// test/e2e-tcp-half-close.test.ts; this file covers the mesh hop into an inbound sidecar,
// plaintext and mTLS, on loopback.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { connect, createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { sidecarPair, eventually, type Pair } from './harness/mesh.ts';

const ROUNDS = 20;
let pair: Pair;
let tlsPair: Pair;
const apps: NetServer[] = [];

/** An app that reads its request to the end, then answers with what it read and closes. */
async function halfCloseApp(ip: string): Promise<void> {
  const app = createNetServer({ allowHalfOpen: true }, (s) => {
    let got = 0;
    s.on('data', (c: Buffer) => (got += c.length));
    s.on('end', () => s.end(`read ${got} bytes`));
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => app.listen(9000, ip, r));
  apps.push(app);
}

before(async () => {
  // port 9000 is opaque by pod-a's own declaration: a `tcp` preamble alone does not make the
  // inbound sidecar pipe bytes that look like HTTP (issue 14, item 3)
  const annotations = { a: { 'tsmesh.io/opaque-ports': '9000' } };
  pair = await sidecarPair((_req, res) => res.end('ok'), { annotations });
  tlsPair = await sidecarPair((_req, res) => res.end('ok'), { mtls: true, annotations });
  await halfCloseApp(pair.pods.a.ip);
  await halfCloseApp(tlsPair.pods.a.ip);
});
after(async () => {
  for (const a of apps) a.close();
  await Promise.all([pair?.close(), tlsPair?.close()]);
});

/** Sends `body`, half-closes, reads to the end; resolves with what came back once the socket closed. */
function exchange(socket: Socket, first: string, body: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let data = '';
    socket.on('data', (c: Buffer) => (data += c.toString()));
    socket.on('error', reject);
    socket.on('close', () => resolve(data));
    socket.write(first);
    socket.end(body);
  });
}

const openFds = () => readdirSync('/proc/self/fd').length;
const inFlight = async (p: Pair) => ((await (await fetch(`${p.server.adminURL}/config`)).json()) as { inFlight: number }).inFlight;
const tcpLines = (p: Pair) => p.server.logs.filter((l) => l.type === 'access' && l.kind === 'tcp');

async function rounds(p: Pair, open: () => Socket) {
  const fdsBefore = openFds();
  const linesBefore = tcpLines(p).length;
  const body = 'x'.repeat(1000);
  const answers = await Promise.all(Array.from({ length: ROUNDS }, () => exchange(open(), 'TSMESH/1 9000 tcp\r\n', body)));
  for (const a of answers) assert.equal(a, `read ${body.length} bytes`, 'the whole answer, after the client half-closed');
  await eventually(async () => (await inFlight(p)) === 0, 5000, 'in-flight back to 0');
  await eventually(() => tcpLines(p).length === linesBefore + ROUNDS, 5000, `one TCP access line per connection (${ROUNDS})`);
  for (const l of tcpLines(p).slice(linesBefore)) {
    assert.equal(l.error, undefined);
    assert.equal(l.bytes_in, body.length);
    assert.equal(l.bytes_out, `read ${body.length} bytes`.length);
  }
  // the client's sockets, the sidecar's two per connection: all closed again (a little slack
  // for descriptors the runtime opens by itself)
  await eventually(() => openFds() <= fdsBefore + 2, 5000, `file descriptors back to ${fdsBefore} (now ${openFds()})`);
}

test('half-closed TCP over the mesh hop (plaintext, `tcp` preamble): answered, ended, logged, counted out', async () => {
  await rounds(pair, () => connect({ host: pair.pods.a.ip, port: 15006, allowHalfOpen: true }));
});

test('half-closed TCP over the mesh hop with mTLS: answered, ended, logged, counted out', async () => {
  const tlsDir = join(tlsPair.dir, 'pod-b-tls');
  const [cert, key, ca] = await Promise.all(['tls.crt', 'tls.key', 'ca.crt'].map((f) => readFile(join(tlsDir, f))));
  await rounds(tlsPair, () => tlsConnect({ host: tlsPair.pods.a.ip, port: 15006, cert, key, ca, ALPNProtocols: ['tsmesh/1'], checkServerIdentity: () => undefined }));
});

test('a client that resets mid-connection is ended, logged with the error and counted out', async () => {
  const linesBefore = tcpLines(pair).length;
  const s = connect({ host: pair.pods.a.ip, port: 15006 });
  await new Promise<void>((r) => s.once('connect', () => r()));
  s.write('TSMESH/1 9000 tcp\r\nhalf a request');
  await eventually(async () => (await inFlight(pair)) === 1, 5000, 'the connection in flight');
  s.resetAndDestroy();
  await eventually(async () => (await inFlight(pair)) === 0, 5000, 'in-flight back to 0');
  await eventually(() => tcpLines(pair).length === linesBefore + 1, 5000, 'one access line');
});
