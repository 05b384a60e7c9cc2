// Protocol detection on real loopback sockets: the verdicts, partial first chunks, the
// server-first timeout, and that the socket can be handed over intact afterwards (to an
// http.Server, an HTTP/2 server, a TLS server, or piped).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer as createNetServer, connect, type Server, type Socket, type AddressInfo } from 'node:net';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createH2Server, connect as h2connect } from 'node:http2';
import { createServer as createTlsServer, connect as tlsConnect } from 'node:tls';
import { setTimeout as sleep } from 'node:timers/promises';
import { classify, detectProtocol, likelyProtocol, H2_PREFACE, type Detection } from './detect.ts';
import { x509, generateP256, privateKeyToPem } from '../identity/x509.ts';

const b = (s: string) => Buffer.from(s, 'latin1');

void test('classify: verdicts on complete and partial heads', () => {
  const cases: [string | Buffer, string][] = [
    ['GET / HTTP/1.1\r\n', 'http1'],
    ['POST ', 'http1'],
    ['M-SEARCH * HTTP/1.1', 'http1'],
    ['GE', 'more'],
    ['GET', 'more'],
    [H2_PREFACE, 'h2'],
    [H2_PREFACE.subarray(0, 10), 'more'],
    // past the preface's first bytes "PRI " is just a method token and a space: HTTP/1 by the
    // grammar (an HTTP/1 server answers 400); only the exact preface is h2
    ['PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n', 'http1'],
    [Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00]), 'tls'],
    [Buffer.from([0x16]), 'more'],
    [Buffer.from([0x16, 0x00]), 'opaque'],
    [Buffer.from([0x00, 0x00, 0x00, 0x4a, 0x0a]), 'opaque'], // e.g. a MySQL-ish binary frame
    [' GET /', 'opaque'],
    ['GET\r\n', 'opaque'],
    ['SSH-2.0-OpenSSH_9.6\r\n', 'opaque'],
    ['A'.repeat(30), 'opaque'], // a "method" longer than any real one
    ['', 'more'],
    // empty lines before a request line: an HTTP parser skips them, so this is HTTP (issue 14)
    ['\r\nGET / HTTP/1.1\r\n', 'http1'],
    ['\n\n\nPOST ', 'http1'],
    ['\r\n', 'more'],
    ['\r\nGE', 'more'],
    [Buffer.from([0x0d, 0x01, 0x00, 0x00]), 'opaque'], // a binary length that starts with 13
    ['\r\n'.repeat(40) + 'GET', 'http1'], // more empty lines than any other protocol sends
  ];
  for (const [head, want] of cases) {
    const buf = typeof head === 'string' ? b(head) : head;
    assert.equal(classify(buf), want, `classify(${JSON.stringify(buf.toString('latin1'))})`);
  }
});

void test('likelyProtocol: what an undecided head is on its way to be', () => {
  assert.equal(likelyProtocol(b('GE')), 'http1');
  assert.equal(likelyProtocol(b('\r\nGE')), 'http1');
  assert.equal(likelyProtocol(b('PRI')), 'http1'); // a method, as far as anyone can tell
  assert.equal(likelyProtocol(H2_PREFACE.subarray(0, 10)), 'h2');
  assert.equal(likelyProtocol(Buffer.from([0x16])), 'tls');
});

// A front server that detects, then hands the socket to `handoff`.
let front: Server;
let port = 0;
let handoff: (socket: Socket, d: Detection) => void = (s) => s.destroy();
const detections: Detection[] = [];
const servers: { close(): unknown }[] = [];
after(() => {
  front?.close();
  for (const s of servers) s.close();
});

async function start(timeoutMs: number) {
  front = createNetServer(async (socket) => {
    const d = await detectProtocol(socket, { timeoutMs });
    detections.push(d);
    handoff(socket, d);
  });
  await new Promise<void>((r) => front.listen(0, '127.0.0.1', r));
  port = (front.address() as AddressInfo).port;
}

function rawExchange(writes: (Buffer | string)[], until: (out: string) => boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = connect(port, '127.0.0.1');
    let out = '';
    c.setEncoding('latin1');
    c.on('data', (d: string) => {
      out += d;
      if (until(out)) {
        c.destroy();
        resolve(out);
      }
    });
    c.on('end', () => resolve(out));
    c.on('error', reject);
    void (async () => {
      for (const w of writes) {
        c.write(w);
        await sleep(30); // separate TCP segments: the detector sees partial heads
      }
    })();
  });
}

void test('HTTP/1.1 split in small pieces is detected, and the socket serves keep-alive requests afterwards', async () => {
  await start(2000);
  const http = createHttpServer((req, res) => res.end(`hello ${req.method} ${req.url}`));
  servers.push(http);
  handoff = (socket) => http.emit('connection', socket);
  const out = await rawExchange(['GE', 'T /fir', 'st HTTP/1.1\r\nHost: x\r\n\r\n', 'GET /second HTTP/1.1\r\nHost: x\r\n\r\n'], (o) => o.includes('hello GET /second'));
  const d = detections.at(-1)!;
  assert.equal(d.protocol, 'http1');
  assert.ok(b('GET /first').toString().startsWith(d.head.toString('latin1').slice(0, 3)));
  assert.ok(d.head.length < 64, `read ${d.head.length} bytes to decide`);
  assert.match(out, /hello GET \/first/);
  assert.match(out, /hello GET \/second/);
});

void test('the HTTP/2 preface is detected, and an HTTP/2 server takes the socket over', async () => {
  const h2 = createH2Server((req, res) => res.end(`h2 ${req.url}`));
  servers.push(h2);
  handoff = (socket) => h2.emit('connection', socket);
  const session = h2connect(`http://127.0.0.1:${port}`);
  const body = await new Promise<string>((resolve, reject) => {
    const req = session.request({ ':path': '/over-h2' });
    let data = '';
    req.setEncoding('utf8').on('data', (d: string) => (data += d)).on('end', () => resolve(data)).on('error', reject);
  });
  session.close();
  assert.equal(body, 'h2 /over-h2');
  assert.equal(detections.at(-1)!.protocol, 'h2');
  assert.ok(detections.at(-1)!.head.subarray(0, H2_PREFACE.length).equals(H2_PREFACE));
});

void test('a TLS ClientHello is detected, and a TLS server completes the handshake on the socket', async () => {
  const keys = await generateP256();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01',
    name: 'CN=detect-test',
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 3_600_000),
    keys,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
  });
  const tls = createTlsServer({ key: await privateKeyToPem(keys.privateKey), cert: cert.toString('pem') }, (s) => s.end('over tls'));
  servers.push(tls);
  handoff = (socket) => tls.emit('connection', socket);
  const got = await new Promise<string>((resolve, reject) => {
    const c = tlsConnect({ port, host: '127.0.0.1', rejectUnauthorized: false });
    let data = '';
    c.setEncoding('utf8').on('data', (d: string) => (data += d)).on('end', () => resolve(data)).on('error', reject);
  });
  assert.equal(got, 'over tls');
  const d = detections.at(-1)!;
  assert.equal(d.protocol, 'tls');
  assert.deepEqual([...d.head.subarray(0, 2)], [0x16, 0x03]);
});

// An echo of whatever arrives: shows the bytes read for detection are put back in order.
function echoHandoff(socket: Socket) {
  socket.pipe(socket);
  socket.resume();
}

void test('opaque client-first bytes are put back: piping the socket echoes them unchanged', async () => {
  handoff = echoHandoff;
  const payload = Buffer.from([0x00, 0x00, 0x00, 0x4a, 0x0a, 0x35, 0x2e, 0x37, 0xff, 0x16]);
  const out = await rawExchange([payload.subarray(0, 3), payload.subarray(3)], (o) => o.length >= payload.length);
  assert.equal(detections.at(-1)!.protocol, 'opaque');
  assert.deepEqual(Buffer.from(out, 'latin1'), payload);
});

void test('an HTTP/2 preface split in three segments is detected and put back whole', async () => {
  handoff = echoHandoff;
  const out = await rawExchange([H2_PREFACE.subarray(0, 5), H2_PREFACE.subarray(5, 17), H2_PREFACE.subarray(17)], (o) => o.length >= H2_PREFACE.length);
  assert.equal(detections.at(-1)!.protocol, 'h2');
  assert.deepEqual(Buffer.from(out, 'latin1'), H2_PREFACE);
});

void test('a client that sends a few bytes and half-closes before a decision: opaque, and the bytes are still put back', async () => {
  handoff = echoHandoff;
  const out = await new Promise<string>((resolve, reject) => {
    const c = connect({ port, host: '127.0.0.1', allowHalfOpen: true }, () => c.end('PING'));
    let data = '';
    c.setEncoding('latin1').on('data', (d: string) => (data += d)).on('end', () => resolve(data)).on('error', reject);
  });
  assert.equal(detections.at(-1)!.protocol, 'opaque');
  assert.equal(detections.at(-1)!.head.toString(), 'PING');
  assert.equal(out, 'PING');
});

void test('a server-first protocol (the client waits) is opaque after the timeout, with an empty head', async () => {
  front.close();
  await start(150);
  handoff = (socket, d) => {
    assert.equal(d.head.length, 0);
    socket.write('220 smtp.example ESMTP\r\n'); // the server speaks first
    echoHandoff(socket);
  };
  const out = await new Promise<string>((resolve, reject) => {
    const c = connect(port, '127.0.0.1');
    let data = '';
    c.setEncoding('latin1').on('data', (d: string) => {
      data += d;
      if (data === '220 smtp.example ESMTP\r\n') c.write('EHLO me\r\n');
      if (data.endsWith('EHLO me\r\n')) {
        c.destroy();
        resolve(data);
      }
    });
    c.on('error', reject);
  });
  assert.equal(out, '220 smtp.example ESMTP\r\nEHLO me\r\n');
  assert.equal(detections.at(-1)!.protocol, 'opaque');
});

void test('a client that resets before deciding is opaque; detection never rejects', async () => {
  handoff = (socket) => socket.destroy();
  const before = detections.length;
  const c = connect(port, '127.0.0.1', () => {
    c.write('GE');
    setTimeout(() => c.resetAndDestroy(), 30);
  });
  c.on('error', () => {});
  for (let i = 0; i < 200 && detections.length === before; i++) await sleep(10);
  assert.equal(detections.length, before + 1);
  assert.equal(detections.at(-1)!.protocol, 'opaque');
});

void test('a busy event loop does not turn a talking client into opaque TCP: bytes that arrived before the timeout win (regression, issue 15)', async (t) => {
  let accepted!: (s: Socket) => void;
  const server = createNetServer((s) => accepted(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  after(() => server.close());
  const serverSide = new Promise<Socket>((r) => (accepted = r));
  const client = connect((server.address() as AddressInfo).port, '127.0.0.1');
  await new Promise<void>((r) => client.once('connect', r));
  const socket = await serverSide;
  t.after(() => {
    client.destroy();
    socket.destroy();
  });
  // in the check phase (next in the loop: timers, then polling the sockets): detection starts,
  // the request reaches the kernel's buffer, and the loop is blocked past the timeout, as in a
  // loaded sidecar
  const detection = await new Promise<Promise<Detection>>((resolve) =>
    setImmediate(() => {
      const d = detectProtocol(socket, { timeoutMs: 20 });
      client.write('GET / HTTP/1.1\r\nhost: x\r\n\r\n');
      const until = performance.now() + 100;
      while (performance.now() < until);
      resolve(d);
    }),
  );
  assert.equal((await detection).protocol, 'http1');
});

/** Runs `detect` on the server side of a loopback connection once `bytes` sit unread in its receive buffer. */
async function detectWithBytesWaiting(bytes: Buffer | string, detect: (socket: Socket) => Promise<Detection>): Promise<Detection> {
  // pauseOnConnect: the accepted socket reads nothing until detection starts
  const server = createNetServer({ pauseOnConnect: true });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve));
    const client = connect((server.address() as AddressInfo).port, '127.0.0.1');
    client.on('error', () => undefined);
    // the write callback: the bytes are in the kernel, on loopback in the peer's receive buffer
    await new Promise<void>((resolve) => client.once('connect', () => client.write(bytes, () => resolve())));
    const socket = await accepted;
    try {
      return await detect(socket);
    } finally {
      socket.destroy();
      client.destroy();
    }
  } finally {
    server.close();
  }
}

/** Blocks the event loop for `ms`, as a burst of work (a thousand connections at once) does. */
function busy(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    /* the loop is busy */
  }
}

void test('a busy event loop never makes HTTP opaque: bytes that arrived before the timeout decide (issue 14)', async () => {
  const request = 'GET / HTTP/1.1\r\nHost: x\r\nx-forwarded-client-cert: forged\r\n\r\n';
  // the loop is busy for longer than the timeout right after detection starts
  const d = await detectWithBytesWaiting(request, (socket) => {
    const detection = detectProtocol(socket, { timeoutMs: 20 });
    busy(200);
    return detection;
  });
  assert.equal(d.protocol, 'http1');
  // and the timeout counts from accept: a connection the loop got to late is still read first
  const late = await detectWithBytesWaiting(H2_PREFACE, (socket) => detectProtocol(socket, { timeoutMs: 20, acceptedAt: performance.now() - 1000 }));
  assert.equal(late.protocol, 'h2');
});

void test('a client that sends part of a request line and stops is not opaque: it goes to the HTTP server, whose limits apply', async () => {
  const d = await detectWithBytesWaiting('GE', (socket) => detectProtocol(socket, { timeoutMs: 20 }));
  assert.equal(d.protocol, 'http1');
  assert.equal(d.head.toString(), 'GE');
});
