// `npm run fuzz`: random and mutated input against every front of a sidecar pair for a bounded
// time, looking for a crash, a hang, an answer that is not HTTP, or work and descriptors that
// stay behind. The sidecars run as their own processes (a crash is an exit), with mTLS between
// them; pod-a (mtls permissive) has an HTTP/1.1 app on 8080 and an h2c app on 8081. Inputs:
//   http1   mutated HTTP/1.1 requests (the seeds in fuzz/corpus)
//   h2      HTTP/2 frame sequences: the preface, SETTINGS, HEADERS with HPACK blocks (split into
//           CONTINUATION or not), DATA, RST_STREAM, GOAWAY, WINDOW_UPDATE, PING, PRIORITY,
//           PUSH_PROMISE, unknown frames and random bytes, then byte-level mutations
// Targets: pod-b's outbound listener (what an app sends), pod-a's inbound listener behind the
// mesh preamble in plaintext and over mTLS with pod-b's certificate (what a peer sidecar
// sends), and pod-a's admin port. At the end, once idle connections had time to close, each
// sidecar's requests in flight and open file descriptors must be back where they started.
// An input that crashes a sidecar or stops it answering is written to fuzz/crashes/ and the
// run exits 1; keep it as a regression test. Seeded: the same seed sends the same inputs.
//
//   node fuzz/http-front.ts [--seconds 60] [--seed N] [--connections 4] [--settle 75] [--record]
//   (--record appends the run's figures to fuzz/RESULTS.md)
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createServer, get } from 'node:http';
import { createServer as createH2Server } from 'node:http2';
import { connect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { appendFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir, cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { createCA, writeWorkloadIdentity } from '../src/localcluster/identity.ts';
import { formatPodInfo } from '../src/config/podinfo.ts';
import { preamble } from '../src/mesh/preamble.ts';
import { FLAG, FRAME, frame, H2_PREFACE, hpackInt } from '../test/harness/h2-frames.ts';

const ROOT = join(import.meta.dirname, '..');
const { values } = parseArgs({
  options: { seconds: { type: 'string', default: '60' }, seed: { type: 'string' }, connections: { type: 'string', default: '4' }, settle: { type: 'string', default: '75' }, record: { type: 'boolean', default: false } },
});
const seconds = Number(values.seconds);
const connections = Number(values.connections);
const settleSeconds = Number(values.settle);
let seed = Number(values.seed ?? Date.now() % 2 ** 31);
const firstSeed = seed;
const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31; // reproducible with --seed
const int = (n: number) => Math.floor(random() * n);
const pick = <T>(a: readonly T[]): T => a[int(a.length)]!;

// Fresh loopback addresses (Linux routes all of 127/8 to lo), so runs side by side do not collide.
const octet = () => 1 + Math.floor(Math.random() * 250);
const A = `127.${octet()}.${octet()}.${octet()}`;
const B = `127.${octet()}.${octet()}.${octet()}`;
const APP_HTTP1 = 8080;
const APP_H2 = 8081;

type Target = 'outbound' | 'inbound' | 'inbound-mtls' | 'admin';
type Kind = 'http1' | 'h2';
interface Pod {
  readonly name: string;
  readonly ip: string;
  readonly child: ChildProcess;
  output: string;
}
interface Tls {
  cert: Buffer;
  key: Buffer;
  ca: Buffer;
}

async function main(): Promise<number> {
  const dir = await mkdtemp(join(tmpdir(), 'tsmesh-fuzz-'));
  const registry = join(dir, 'registry.yaml');
  await writeFile(
    registry,
    stringify({
      services: [
        { name: 'pod-service', ports: [{ port: 80, targetPort: APP_HTTP1 }], selector: { app: 'web-app' } },
        { name: 'h2-service', ports: [{ port: 81, targetPort: APP_H2 }], selector: { app: 'web-app' } },
      ],
      pods: [
        { name: 'pod-a', ip: A, labels: { app: 'web-app' }, serviceAccount: 'pod-a', meshed: true },
        { name: 'pod-b', ip: B, labels: { app: 'client' }, serviceAccount: 'pod-b', meshed: true },
      ],
    }),
  );
  const app = createServer((req, res) => {
    req.resume();
    req.on('end', () => res.end('ok'));
    req.on('error', () => undefined);
  });
  app.on('clientError', (_e, s) => s.destroy());
  const h2app = createH2Server();
  h2app.on('stream', (stream) => {
    stream.on('error', () => undefined);
    stream.resume();
    stream.on('end', () => {
      if (!stream.closed && !stream.headersSent) stream.respond({ ':status': 200 });
      if (!stream.closed) stream.end('ok');
    });
  });
  h2app.on('sessionError', () => undefined);
  await new Promise<void>((r) => app.listen(APP_HTTP1, A, r));
  await new Promise<void>((r) => h2app.listen(APP_H2, A, r));
  const ca = await createCA({ trustDomain: 'cluster.local' });
  const pods: Pod[] = [];
  for (const [name, ip] of [['pod-a', A], ['pod-b', B]] as const) {
    const tlsDir = await writeWorkloadIdentity(ca, join(dir, `${name}-tls`), { namespace: 'default', serviceAccount: name });
    const annotations = join(dir, `${name}.annotations`);
    // pod-a takes plaintext from callers without a sidecar too, so the plaintext inbound front is reachable
    await writeFile(annotations, formatPodInfo(name === 'pod-a' ? { 'tsmesh.io/mtls': 'permissive' } : {}));
    const child = spawn(process.execPath, [join(ROOT, 'bin/tsmesh.js'), 'proxy'], {
      // a short idle timeout: connections a fuzz input leaves open are closed soon after
      env: { ...process.env, POD_NAME: name, POD_IP: ip, TSMESH_BIND_ADDRESS: ip, TSMESH_REGISTRY: registry, TSMESH_ANNOTATIONS: annotations, TSMESH_TLS_DIR: tlsDir, TSMESH_DRAIN_TIMEOUT: '1s', TSMESH_IDLE_TIMEOUT: '2s', TSMESH_CONTROL_PLANE: 'https://127.0.0.1:9' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const pod: Pod = { name, ip, child, output: '' };
    child.stderr!.on('data', (d) => (pod.output = (pod.output + d).slice(-20_000)));
    pods.push(pod);
  }
  const [cert, key, caPem] = await Promise.all(['tls.crt', 'tls.key', 'ca.crt'].map((f) => readFile(join(dir, 'pod-b-tls', f))));
  const tls: Tls = { cert: cert!, key: key!, ca: caPem! };
  const cleanup = async () => {
    for (const p of pods) p.child.kill('SIGKILL');
    app.closeAllConnections();
    app.close();
    h2app.close();
    await rm(dir, { recursive: true, force: true });
  };
  try {
    for (const p of pods) await waitReady(p.ip);
    // warm the pools (one call each way) so the start counts hold what a serving pair holds
    await new Promise<void>((resolve, reject) => get({ host: B, port: 15001, path: '/warm', agent: false, headers: { host: 'pod-service', connection: 'close' } }, (res) => res.resume().on('end', resolve)).on('error', reject));
    await h2get(B, 'h2-service');
    const start = await Promise.all(pods.map((p) => state(p)));
    const seeds = await Promise.all((await readdir(join(ROOT, 'fuzz/corpus'))).map((f) => readFile(join(ROOT, 'fuzz/corpus', f))));
    console.log(`fuzzing for ${seconds} s with ${connections} connections, seed ${firstSeed} (${seeds.length} HTTP/1.1 seeds, generated HTTP/2 frame sequences)`);
    const end = Date.now() + seconds * 1000;
    const sent: Record<Target, Record<Kind, number>> = { outbound: { http1: 0, h2: 0 }, inbound: { http1: 0, h2: 0 }, 'inbound-mtls': { http1: 0, h2: 0 }, admin: { http1: 0, h2: 0 } };
    let total = 0;
    let answered = 0;
    let nextReport = Date.now() + 10_000;
    let crash: { input: Buffer; target: string; why: string } | undefined;
    const crashed = () => pods.find((p) => p.child.exitCode !== null || p.child.signalCode !== null);
    await Promise.all(
      Array.from({ length: connections }, async () => {
        while (Date.now() < end && !crash) {
          const kind: Kind = random() < 0.5 ? 'http1' : 'h2';
          const input = kind === 'h2' ? h2Input() : mutate(pick(seeds), seeds);
          const target = pick<Target>(['outbound', 'outbound', 'inbound', 'inbound-mtls', 'admin']);
          const halfClose = random() < 0.5;
          const reply = await send(target, kind, input, halfClose, tls);
          sent[target][kind]++;
          total++;
          if (reply.length) answered++;
          if (!sane(reply)) crash = { input, target: `${target}-${kind}`, why: `answered with something that is neither HTTP/1.1 nor HTTP/2: ${JSON.stringify(reply.subarray(0, 80).toString('latin1'))}` };
          const dead = crashed();
          if (dead) crash ??= { input, target: `${target}-${kind}`, why: `${dead.name}'s sidecar exited (${dead.child.exitCode ?? dead.child.signalCode}): ${dead.output.slice(-2000)}` };
          if (total % 200 === 0 && !crash && !(await Promise.all(pods.map((p) => live(p.ip)))).every(Boolean)) crash = { input, target: `${target}-${kind}`, why: 'a sidecar stopped answering its admin port' };
          if (Date.now() > nextReport) {
            nextReport += 10_000;
            console.log(`  ${Math.round((end - Date.now()) / 1000)} s left: ${total} inputs sent, ${answered} answered`);
          }
        }
      }),
    );
    if (crash) {
      const name = createHash('sha256').update(crash.input).digest('hex').slice(0, 16);
      await mkdir(join(ROOT, 'fuzz/crashes'), { recursive: true });
      await writeFile(join(ROOT, 'fuzz/crashes', `${crash.target}-${name}.bin`), crash.input);
      console.error(`FOUND: ${crash.why}\n  input saved as fuzz/crashes/${crash.target}-${name}.bin (seed ${firstSeed})`);
      return 1;
    }
    // Every fuzz connection is closed now: what the sidecars still hold must drain away.
    const settleStart = Date.now();
    let after = await Promise.all(pods.map((p) => state(p)));
    const back = () => after.every((s, i) => s.inFlight === start[i]!.inFlight && s.fds <= start[i]!.fds);
    while (!back() && Date.now() - settleStart < settleSeconds * 1000) {
      await new Promise((r) => setTimeout(r, 500));
      after = await Promise.all(pods.map((p) => state(p)));
    }
    const settled = Math.round((Date.now() - settleStart) / 100) / 10;
    const dead = crashed();
    const figures = pods.map((p, i) => `${p.name}: in flight ${start[i]!.inFlight} -> ${after[i]!.inFlight}, file descriptors ${start[i]!.fds} -> ${after[i]!.fds}`).join('; ');
    const perTarget = Object.entries(sent).map(([t, k]) => `${t} ${k.http1} HTTP/1.1 + ${k.h2} HTTP/2`).join(', ');
    const ok = back() && !dead;
    console.log(`${ok ? 'done' : 'FOUND'}: ${total} inputs (${perTarget}), ${answered} answered, ${dead ? 'a sidecar exited' : 'no crash'}, every answer HTTP; after ${settled} s: ${figures} (seed ${firstSeed})`);
    if (values.record) {
      const line = `| ${new Date().toISOString().slice(0, 16).replace('T', ' ')} | ${firstSeed} | ${seconds} s, ${connections} connections | ${total} (${perTarget}) | ${dead ? 1 : 0} | ${figures} (after ${settled} s) | ${cpus().length} cores, Node ${process.version} |\n`;
      await appendFile(join(ROOT, 'fuzz/RESULTS.md'), line);
    }
    if (!ok) console.error(dead ? dead.output.slice(-2000) : 'in-flight work or file descriptors did not return to their start');
    return ok ? 0 : 1;
  } finally {
    await cleanup();
  }
}

/** One input to one front: connects (TLS for inbound-mtls), writes the preamble where it goes and the input, collects the reply (1 s). */
function send(target: Target, kind: Kind, input: Buffer, halfClose: boolean, tls: Tls): Promise<Buffer> {
  return new Promise((resolve) => {
    const mesh = preamble(kind === 'h2' ? APP_H2 : APP_HTTP1, kind === 'h2' ? 'h2' : 'http1');
    let s: Socket;
    let bytes = input;
    if (target === 'inbound-mtls') {
      s = tlsConnect({ host: A, port: 15006, ...tls, ALPNProtocols: [kind === 'h2' ? 'h2' : 'tsmesh/1'], checkServerIdentity: () => undefined });
      bytes = Buffer.concat([mesh, input]);
    } else {
      const [host, port] = target === 'outbound' ? [B, 15001] : target === 'inbound' ? [A, 15006] : [A, 15020];
      s = connect(port, host);
      if (target === 'inbound') bytes = Buffer.concat([mesh, input]);
    }
    const chunks: Buffer[] = [];
    let length = 0;
    const done = () => {
      clearTimeout(timer);
      s.destroy();
      resolve(Buffer.concat(chunks, length));
    };
    const timer = setTimeout(done, 1000);
    s.on('data', (c: Buffer) => {
      chunks.push(c);
      length += c.length;
      if (length > 16_384) done();
    });
    s.on('error', done);
    s.on('close', done);
    s.once(target === 'inbound-mtls' ? 'secureConnect' : 'connect', () => (halfClose ? s.end(bytes) : s.write(bytes)));
  });
}

/** Nothing, an HTTP/1.1 response, or HTTP/2 frames (a server's first frame is its SETTINGS). */
function sane(reply: Buffer): boolean {
  return reply.length === 0 || reply.subarray(0, 7).toString('latin1') === 'HTTP/1.' || (reply.length >= 9 && reply[3] === FRAME.SETTINGS);
}

/** A sidecar's requests in flight (its /config, read from loopback) and open file descriptors. */
async function state(pod: Pod): Promise<{ inFlight: number; fds: number }> {
  const config = JSON.parse((await admin(pod.ip, '/config')).body) as { inFlight: number };
  return { inFlight: config.inFlight, fds: (await readdir(`/proc/${pod.child.pid}/fd`).catch(() => [])).length };
}

/** GET on a sidecar's admin port on a connection of its own, closed after the answer (none kept alive to skew the counts). */
function admin(ip: string, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = get({ host: ip, port: 15020, path, agent: false, headers: { connection: 'close' }, timeout: 3000 }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('admin timeout')));
    req.on('error', reject);
  });
}

async function h2get(ip: string, authority: string): Promise<void> {
  const { connect: h2connect } = await import('node:http2');
  const session = h2connect(`http://${ip}:15001`);
  session.on('error', () => undefined);
  await new Promise<void>((resolve) => {
    const req = session.request({ ':path': '/warm', ':authority': authority });
    req.on('error', () => resolve());
    req.resume();
    req.on('close', () => resolve());
    req.end();
  });
  session.close();
}

async function live(ip: string): Promise<boolean> {
  try {
    return (await admin(ip, '/livez')).status === 200;
  } catch {
    return false;
  }
}

async function waitReady(ip: string): Promise<void> {
  for (let i = 0; i < 300; i++) {
    try {
      if ((await admin(ip, '/healthz/ready')).status === 200) return;
    } catch {
      /* starting */
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`the sidecar on ${ip} was not ready within 15 s`);
}

// ---- HTTP/1.1: mutations of the corpus ---------------------------------------------------

const NASTY = ['\r\n', '\n', '\r', '\0', ' ', ':', '\t', '\r\n\r\n', 'Transfer-Encoding: chunked\r\n', 'Content-Length: 5\r\n', 'Content-Length: -1\r\n', '\r\n \r\n', '0\r\n\r\n', 'ffffffffffffffff\r\n', 'Upgrade: websocket\r\n', 'Expect: 100-continue\r\n', '%00', '\xff\xfe', 'a'.repeat(9000), 'TSMESH/1 8080\r\n', 'x-forwarded-client-cert: forged\r\n', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'];

/** One to eight random edits of a seed: flips, inserts, deletes, duplicates, splices, truncation. */
function mutate(input: Buffer, seeds: readonly Buffer[]): Buffer {
  let b = Buffer.from(input);
  const edits = 1 + int(8);
  for (let i = 0; i < edits; i++) {
    const at = int(b.length + 1);
    switch (int(7)) {
      case 0: // flip a byte
        if (b.length) b[Math.min(at, b.length - 1)] = int(256);
        break;
      case 1: // insert something nasty
        b = Buffer.concat([b.subarray(0, at), Buffer.from(pick(NASTY), 'latin1'), b.subarray(at)]);
        break;
      case 2: // delete a run
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + int(16))]);
        break;
      case 3: // duplicate a run
        b = Buffer.concat([b.subarray(0, at), b.subarray(at, at + 32), b.subarray(at)]);
        break;
      case 4: // splice another seed in
        b = Buffer.concat([b.subarray(0, at), pick(seeds)]);
        break;
      case 5: // truncate
        b = b.subarray(0, at);
        break;
      default: // random bytes
        b = Buffer.concat([b.subarray(0, at), randomBytes(1 + int(8)), b.subarray(at)]);
    }
  }
  return b;
}

const randomBytes = (n: number) => Buffer.from(Array.from({ length: n }, () => int(256)));

// ---- HTTP/2: generated frame sequences ---------------------------------------------------

const STREAM_IDS = [1, 1, 3, 3, 5, 7, 0, 2, 0x7fffffff];
const streamId = () => (random() < 0.9 ? pick(STREAM_IDS) : int(2 ** 31));
const u32 = (v: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0);
  return b;
};

const AUTHORITIES = ['pod-service', 'h2-service', 'h2-service', '', 'unknown.example', 'x'.repeat(300), 'pod-service:80'];
const HEADER_NAMES = ['content-type', 'te', 'x-forwarded-client-cert', 'grpc-timeout', 'content-length', 'connection', 'upgrade', 'host', 'x-tsmesh-retry', 'traceparent', 'Upper-Case', 'bad name', ':unknown', 'x-a'];
const HEADER_VALUES = ['application/grpc', 'trailers', 'forged', '1S', '99999999999', '-1', 'keep-alive', 'h2c', 'true', '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', 'a\r\nb', '\0', 'v'.repeat(20_000), ''];

/** An HPACK block: mostly a request's literal fields, sometimes indexed fields, table-size updates or garbage. */
function headerBlock(): Buffer {
  const parts: Buffer[] = [];
  const field = (name: string, value: string, prefix = 0x00) => {
    const n = Buffer.from(name, 'latin1');
    const v = Buffer.from(value, 'latin1');
    parts.push(Buffer.from([prefix]), hpackInt(n.length, 7), n, hpackInt(v.length, 7), v);
  };
  if (random() < 0.1) parts.push(hpackInt(int(70_000), 5, 0x20)); // dynamic table size update
  if (random() < 0.9) field(':method', pick(['GET', 'POST', 'PUT', 'CONNECT', 'PRI', 'get', '']));
  if (random() < 0.9) field(':scheme', pick(['http', 'https', 'ftp']));
  if (random() < 0.9) field(':path', pick(['/', '/tsmesh.test.Echo/Unary', '*', '', 'no-slash', '/%00', '/' + 'p'.repeat(5000)]));
  if (random() < 0.9) field(':authority', pick(AUTHORITIES), random() < 0.2 ? 0x40 : 0x00); // literal, or with incremental indexing
  for (let i = int(4); i > 0; i--) field(pick(HEADER_NAMES), pick(HEADER_VALUES), random() < 0.2 ? 0x40 : 0x10);
  if (random() < 0.2) parts.push(hpackInt(int(100), 7, 0x80)); // an indexed field, maybe past the table
  if (random() < 0.1) parts.push(randomBytes(1 + int(16)));
  return Buffer.concat(parts);
}

/** HEADERS for a stream, sometimes split into CONTINUATION frames, sometimes with padding or priority. */
function headersFrames(): Buffer[] {
  const id = streamId();
  const block = headerBlock();
  const endStream = random() < 0.5 ? FLAG.END_STREAM : 0;
  const extra = random() < 0.1 ? FLAG.PRIORITY : 0;
  const prefix = extra ? Buffer.concat([u32(int(8)), Buffer.from([int(256)])]) : Buffer.alloc(0);
  if (random() < 0.7 || block.length < 2) return [frame(FRAME.HEADERS, FLAG.END_HEADERS | endStream | extra, id, Buffer.concat([prefix, block]))];
  const cut = 1 + int(block.length - 1);
  const frames = [frame(FRAME.HEADERS, endStream | extra, id, Buffer.concat([prefix, block.subarray(0, cut)]))];
  if (random() < 0.8) frames.push(frame(FRAME.CONTINUATION, random() < 0.8 ? FLAG.END_HEADERS : 0, random() < 0.9 ? id : streamId(), block.subarray(cut)));
  return frames;
}

function settingsFrame(): Buffer {
  if (random() < 0.1) return frame(FRAME.SETTINGS, FLAG.ACK, 0);
  const entries = Array.from({ length: int(4) }, () => Buffer.concat([Buffer.from([0, pick([1, 2, 3, 4, 5, 6, 8, 9, int(256)])]), u32(pick([0, 1, 100, 16_384, 65_535, 2 ** 24, 2 ** 31, 2 ** 32 - 1, int(2 ** 32)]))]));
  return frame(FRAME.SETTINGS, 0, random() < 0.95 ? 0 : streamId(), Buffer.concat(entries));
}

function oneFrame(): Buffer[] {
  switch (int(12)) {
    case 0:
    case 1:
    case 2:
      return headersFrames();
    case 3:
      return [frame(FRAME.DATA, random() < 0.5 ? FLAG.END_STREAM : 0, streamId(), randomBytes(int(64)))];
    case 4:
      return [frame(FRAME.RST_STREAM, 0, streamId(), u32(int(14)))];
    case 5:
      return [frame(FRAME.GOAWAY, 0, random() < 0.9 ? 0 : streamId(), Buffer.concat([u32(pick([0, 1, 3, 0x7fffffff])), u32(int(14)), randomBytes(int(8))]))];
    case 6:
      return [frame(FRAME.WINDOW_UPDATE, 0, random() < 0.5 ? 0 : streamId(), u32(pick([0, 1, 65_535, 2 ** 31 - 1, 2 ** 31, int(2 ** 32)])))];
    case 7:
      return [frame(FRAME.PING, random() < 0.2 ? FLAG.ACK : 0, random() < 0.9 ? 0 : 1, randomBytes(random() < 0.9 ? 8 : int(16)))];
    case 8:
      return [frame(FRAME.PRIORITY, 0, streamId(), randomBytes(random() < 0.9 ? 5 : int(8)))];
    case 9:
      return [settingsFrame()];
    case 10:
      return [frame(pick([FRAME.CONTINUATION, FRAME.PUSH_PROMISE, 0x0a, 0xff]), int(256), streamId(), randomBytes(int(32)))];
    default:
      return [randomBytes(1 + int(150))];
  }
}

/** A frame sequence: the preface (sometimes damaged), SETTINGS, a few frames; sometimes mutated as bytes. */
function h2Input(): Buffer {
  const parts: Buffer[] = [random() < 0.95 ? H2_PREFACE : mutate(H2_PREFACE, [H2_PREFACE])];
  if (random() < 0.9) parts.push(settingsFrame());
  for (let n = 1 + int(8); n > 0; n--) parts.push(...oneFrame());
  const b = Buffer.concat(parts);
  return random() < 0.25 ? mutate(b, [b]) : b;
}

process.exitCode = await main();
