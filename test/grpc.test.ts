// gRPC through real sidecars: a real @grpc/grpc-js client in pod-b (one channel, to its
// sidecar's outbound listener in explicit mode, :authority naming the service) and real
// @grpc/grpc-js servers as the apps, with mTLS (ALPN h2) between the sidecars.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { connect as h2connect, createServer as createH2Server, type Http2Server, type IncomingHttpHeaders } from 'node:http2';
import { execFile } from 'node:child_process';
import * as grpc from '@grpc/grpc-js';
import { eventually, loopbackIP, tempDir, testSidecar, writeRegistry, type PodDef, type ServiceDef, type TestSidecar } from './harness/mesh.ts';
import { createCA, writeWorkloadIdentity, type CA } from './harness/identity.ts';
import { parseExposition, sampleValue } from '../src/metrics/exposition.ts';

// ---- a service with the four kinds of call, JSON messages ----
type Msg = { n: number; text?: string; pod?: string; attempt?: string };
const ser = (v: Msg) => Buffer.from(JSON.stringify(v));
const de = (b: Buffer) => JSON.parse(b.toString()) as Msg;
const method = (name: string, requestStream: boolean, responseStream: boolean) => ({
  path: `/tsmesh.test.Echo/${name}`,
  requestStream,
  responseStream,
  requestSerialize: ser,
  requestDeserialize: de,
  responseSerialize: ser,
  responseDeserialize: de,
  originalName: name,
});
const ECHO = {
  unary: method('Unary', false, false),
  serverStream: method('ServerStream', false, true),
  clientStream: method('ClientStream', true, false),
  bidi: method('Bidi', true, true),
};
const EchoClient = grpc.makeGenericClientConstructor(ECHO, 'Echo');
type Client = InstanceType<typeof EchoClient> & Record<string, (...args: unknown[]) => unknown>;

interface Calls {
  /** every unary call: the metadata it arrived with */
  seen: grpc.Metadata[];
  /** indexes (in `seen`) of the calls the app saw cancelled */
  cancelled: number[];
}

/** The echo app: what each kind of call does, steered by the request's `text`. */
function echoImpl(pod: string, calls: Calls, behaviour: { unary?: (call: grpc.ServerUnaryCall<Msg, Msg>, cb: grpc.sendUnaryData<Msg>) => void } = {}): grpc.UntypedServiceImplementation {
  return {
    unary(call: grpc.ServerUnaryCall<Msg, Msg>, cb: grpc.sendUnaryData<Msg>) {
      calls.seen.push(call.metadata);
      if (behaviour.unary) return behaviour.unary(call, cb);
      const req = call.request;
      if (req.text === 'not-found') {
        const trailer = new grpc.Metadata();
        trailer.set('x-detail', 'no such thing');
        trailer.set('x-detail-bin', Buffer.from([0, 1, 2, 255]));
        return cb({ code: grpc.status.NOT_FOUND, details: 'thing 42 is not here: ü', metadata: trailer });
      }
      if (req.text === 'hang') {
        const index = calls.seen.length - 1;
        call.on('cancelled', () => calls.cancelled.push(index));
        return; // never answers
      }
      const trailer = new grpc.Metadata();
      trailer.set('x-trailer', 'present');
      cb(null, { n: req.n + 1, pod, attempt: String(call.metadata.get('x-tsmesh-attempt')[0] ?? '') }, trailer);
    },
    serverStream(call: grpc.ServerWritableStream<Msg, Msg>) {
      const { n, text } = call.request;
      if (text === 'slow') {
        // headers at once, then a message every 100 ms for ~1 s: longer than the service's timeout
        call.sendMetadata(new grpc.Metadata());
        let i = 0;
        const timer = setInterval(() => {
          call.write({ n: i++ });
          if (i === 10) {
            clearInterval(timer);
            call.end();
          }
        }, 100);
        call.on('cancelled', () => clearInterval(timer));
        return;
      }
      for (let i = 0; i < n; i++) call.write({ n: i, text: 'x'.repeat(100) });
      if (text === 'fail-after') {
        const trailer = new grpc.Metadata();
        trailer.set('x-why', 'ran out');
        call.emit('error', { code: grpc.status.INTERNAL, details: 'broke mid-stream', metadata: trailer });
        return;
      }
      call.end();
    },
    clientStream(call: grpc.ServerReadableStream<Msg, Msg>, cb: grpc.sendUnaryData<Msg>) {
      let count = 0;
      let sum = 0;
      call.on('data', (m: Msg) => {
        count++;
        sum += m.n;
      });
      call.on('end', () => cb(null, { n: count, text: String(sum) }));
    },
    bidi(call: grpc.ServerDuplexStream<Msg, Msg>) {
      call.on('data', (m: Msg) => call.write({ n: m.n * 2 }));
      call.on('end', () => call.end());
    },
  };
}

async function grpcServer(ip: string, port: number, impl: grpc.UntypedServiceImplementation): Promise<grpc.Server> {
  const server = new grpc.Server();
  server.addService(ECHO, impl);
  await new Promise<void>((resolve, reject) => server.bindAsync(`${ip}:${port}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())));
  return server;
}

/** A client with one channel to a sidecar's outbound listener (explicit mode), :authority = `service`. */
function grpcClient(sidecar: TestSidecar, service: string): Client {
  const { host } = new URL(sidecar.outboundURL);
  return new EchoClient(host, grpc.credentials.createInsecure(), { 'grpc.default_authority': service, 'grpc.enable_http_proxy': 0 }) as unknown as Client;
}

const unary = (client: Client, req: Msg, options: { deadline?: number; metadata?: grpc.Metadata } = {}) =>
  new Promise<{ res?: Msg; err?: grpc.ServiceError; trailers?: grpc.Metadata }>((resolve) => {
    let trailers: grpc.Metadata | undefined;
    const call = client.unary(req, options.metadata ?? new grpc.Metadata(), options.deadline ? { deadline: Date.now() + options.deadline } : {}, (err: grpc.ServiceError | null, res: Msg) =>
      // the status event (with the trailers) comes around the callback: let it arrive
      setImmediate(() => resolve(err ? { err, trailers: err.metadata } : { res, trailers })),
    ) as grpc.ClientUnaryCall;
    call.on('status', (s: grpc.StatusObject) => (trailers = s.metadata));
  });

function collect<T>(stream: NodeJS.EventEmitter): Promise<{ items: T[]; err?: grpc.ServiceError; status?: grpc.StatusObject }> {
  return new Promise((resolve) => {
    const items: T[] = [];
    let err: grpc.ServiceError | undefined;
    stream.on('data', (m: T) => items.push(m));
    stream.on('error', (e: grpc.ServiceError) => (err = e));
    stream.on('status', (status: grpc.StatusObject) => setImmediate(() => resolve({ items, err, status })));
  });
}

const accessLines = (s: TestSidecar, where: (l: Record<string, unknown>) => boolean) => s.logs.filter((l) => l.type === 'access' && where(l));

// ---- the pair: pod-b (client) -> echo (pod-a, a gRPC server on 8080, and an h2c app on 8081) ----
let dir: { path: string; remove(): Promise<void> };
let ca: CA;
let a: PodDef;
let b: PodDef;
let server: TestSidecar;
let client: TestSidecar;
let app: grpc.Server;
let h2app: Http2Server;
let stub: Client;
const hanging: { timeout: string; closed: boolean }[] = [];
const calls: Calls = { seen: [], cancelled: [] };

async function podWithCert(pod: PodDef): Promise<Record<string, string>> {
  return { TSMESH_TLS_DIR: await writeWorkloadIdentity(ca, join(dir.path, `${pod.name}-tls`), { namespace: 'default', serviceAccount: pod.serviceAccount! }) };
}

before(async () => {
  dir = await tempDir();
  ca = await createCA({ trustDomain: 'cluster.local' });
  a = { name: 'pod-a', ip: loopbackIP(), labels: { app: 'echo' }, meshed: true, serviceAccount: 'pod-a' };
  b = { name: 'pod-b', ip: loopbackIP(), labels: { app: 'client' }, meshed: true, serviceAccount: 'pod-b' };
  app = await grpcServer(a.ip, 8080, echoImpl('pod-a', calls));
  h2app = createH2Server();
  h2app.on('stream', (stream, headers) => {
    if (headers[':path'] === '/tsmesh.test.Echo/Hang') {
      const seen = { timeout: String(headers['grpc-timeout']), closed: false };
      hanging.push(seen);
      stream.on('error', () => undefined);
      stream.on('close', () => (seen.closed = true));
      return stream.resume(); // never answers
    }
    stream.respond({ ':status': 200, 'content-type': 'text/plain', 'x-app-saw-attempt': String(headers['x-tsmesh-attempt']) });
    stream.end(`h2 app: ${headers[':method']} ${headers[':path']} via ${headers['x-forwarded-client-cert'] ? 'mTLS' : 'plain'}\n`);
  });
  await new Promise<void>((r) => h2app.listen(8081, a.ip, r));
  const registryFile = join(dir.path, 'registry.yaml');
  const services: ServiceDef[] = [
    { name: 'echo', ports: [{ port: 80, targetPort: 8080 }], selector: { app: 'echo' } },
    { name: 'slow-echo', ports: [{ port: 80, targetPort: 8080 }], selector: { app: 'echo' }, annotations: { 'tsmesh.io/timeout': '300ms' } },
    { name: 'web', ports: [{ port: 80, targetPort: 8081 }], selector: { app: 'echo' } },
  ];
  await writeRegistry(registryFile, { services, pods: [a, b] });
  server = await testSidecar({ pod: a, registryFile, dir: dir.path, env: await podWithCert(a) });
  client = await testSidecar({ pod: b, registryFile, dir: dir.path, env: await podWithCert(b) });
  stub = grpcClient(client, 'echo');
});

after(async () => {
  stub?.close();
  await Promise.all([client?.close(), server?.close()]);
  app?.forceShutdown();
  h2app?.close();
  await dir?.remove();
});

test('a unary call through both sidecars, over mTLS: the answer, the trailers, and what the app saw', async () => {
  const before = calls.seen.length;
  const r = await unary(stub, { n: 41 });
  assert.equal(r.err, undefined, r.err?.message);
  assert.deepEqual(r.res, { n: 42, pod: 'pod-a', attempt: '1' });
  assert.deepEqual(r.trailers?.get('x-trailer'), ['present'], 'the response trailers arrived');
  const md = calls.seen[before]!;
  assert.equal(md.get('x-forwarded-client-cert')[0], 'By=spiffe://cluster.local/ns/default/sa/pod-a;URI=spiffe://cluster.local/ns/default/sa/pod-b');
  assert.match(String(md.get('traceparent')[0]), /^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/, 'the trace context reaches the app (sampled or not: 1% of new traces by default)');
  await eventually(() => accessLines(client, (l) => l.path === '/tsmesh.test.Echo/Unary').length > 0 && accessLines(server, (l) => l.path === '/tsmesh.test.Echo/Unary').length > 0, 3000, 'both access lines');
  const out = accessLines(client, (l) => l.path === '/tsmesh.test.Echo/Unary')[0]!;
  assert.equal(out.protocol, 'HTTP/2');
  assert.equal(out.grpc_status, 0);
  assert.equal(out.upstream_service, 'echo.default');
  assert.equal(accessLines(server, (l) => l.path === '/tsmesh.test.Echo/Unary')[0]!.peer, 'spiffe://cluster.local/ns/default/sa/pod-b');
  const metrics = parseExposition(await (await fetch(`${client.adminURL}/metrics`)).text());
  assert.ok(sampleValue(metrics, 'tsmesh_grpc_calls_total', { direction: 'outbound', destination_service: 'echo.default', grpc_status: 'OK' }) >= 1);
  assert.ok(sampleValue(metrics, 'tsmesh_requests_total', { direction: 'outbound', destination_service: 'echo.default', response_code: '200', mtls: 'true' }) >= 1);
});

test('error statuses and their trailers arrive intact: details, text and binary metadata', async () => {
  const r = await unary(stub, { n: 0, text: 'not-found' });
  assert.equal(r.err?.code, grpc.status.NOT_FOUND, r.err?.message);
  assert.equal(r.err?.details, 'thing 42 is not here: ü');
  assert.deepEqual(r.err?.metadata.get('x-detail'), ['no such thing']);
  assert.deepEqual(r.err?.metadata.get('x-detail-bin'), [Buffer.from([0, 1, 2, 255])]);
  assert.equal(r.err?.metadata.get('x-tsmesh-error').length, 0, 'the app made this error, not the proxy');

  const s = await collect<Msg>(stub.serverStream({ n: 10, text: 'fail-after' }) as NodeJS.EventEmitter);
  assert.equal(s.items.length, 10, 'the messages before the error');
  assert.equal(s.err?.code, grpc.status.INTERNAL);
  assert.equal(s.err?.details, 'broke mid-stream');
  assert.deepEqual(s.err?.metadata.get('x-why'), ['ran out']);
  await eventually(() => accessLines(client, (l) => l.path === '/tsmesh.test.Echo/ServerStream' && l.grpc_status === 13).length > 0, 3000, 'grpc_status 13 logged');
  const metrics = parseExposition(await (await fetch(`${client.adminURL}/metrics`)).text());
  assert.equal(sampleValue(metrics, 'tsmesh_grpc_calls_total', { direction: 'outbound', destination_service: 'echo.default', grpc_status: 'NOT_FOUND' }), 1);
});

test('server streaming: 5000 messages in order', async () => {
  const s = await collect<Msg>(stub.serverStream({ n: 5000 }) as NodeJS.EventEmitter);
  assert.equal(s.err, undefined, s.err?.message);
  assert.equal(s.items.length, 5000);
  assert.ok(s.items.every((m, i) => m.n === i), 'in order');
});

test('client streaming: 5000 messages counted and summed by the app', async () => {
  const r = await new Promise<{ err: grpc.ServiceError | null; res: Msg }>((resolve) => {
    const call = stub.clientStream((err: grpc.ServiceError | null, res: Msg) => resolve({ err, res })) as grpc.ClientWritableStream<Msg>;
    let i = 0;
    const write = () => {
      while (i < 5000) if (!call.write({ n: i++ })) return void call.once('drain', write);
      call.end();
    };
    write();
  });
  assert.equal(r.err, null, r.err?.message);
  assert.deepEqual(r.res, { n: 5000, text: String((4999 * 5000) / 2) });
});

test('bidirectional streaming: 5000 messages each way, answers interleaved with requests', async () => {
  const call = stub.bidi() as grpc.ClientDuplexStream<Msg, Msg>;
  const got: number[] = [];
  let firstAnswerBeforeLastRequest = false;
  let sent = 0;
  const done = collect<Msg>(call);
  call.on('data', (m: Msg) => {
    got.push(m.n);
    if (sent < 5000) firstAnswerBeforeLastRequest = true;
  });
  await new Promise<void>((resolve) => {
    const write = () => {
      while (sent < 5000) {
        // a pause now and then, so answers come back while the call is still sending
        if (sent % 500 === 499) {
          call.write({ n: sent++ });
          return void setTimeout(write, 5);
        }
        if (!call.write({ n: sent++ })) return void call.once('drain', write);
      }
      call.end();
      resolve();
    };
    write();
  });
  const r = await done;
  assert.equal(r.err, undefined, r.err?.message);
  assert.equal(got.length, 5000);
  assert.ok(got.every((n, i) => n === i * 2));
  assert.ok(firstAnswerBeforeLastRequest, 'the stream flowed both ways at once (not buffered until the request ended)');
});

test('a client that cancels a server stream after the first message: both sidecars log the bytes sent and CANCELLED (issue 14, item 7)', async () => {
  const streams = (s: TestSidecar) => accessLines(s, (l) => l.path === '/tsmesh.test.Echo/ServerStream' && l.authority === 'echo');
  const seen = { client: streams(client).length, server: streams(server).length };
  const call = stub.serverStream({ n: 0, text: 'slow' }) as grpc.ClientReadableStream<Msg>;
  const got: Msg[] = [];
  const status = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
  call.on('error', () => undefined);
  await new Promise<void>((resolve) => call.on('data', (m: Msg) => {
    got.push(m);
    if (got.length === 1) {
      call.cancel();
      resolve();
    }
  }));
  assert.equal((await status).code, grpc.status.CANCELLED);
  await eventually(() => streams(client).length > seen.client && streams(server).length > seen.server, 5000, 'both access lines');
  for (const [side, line] of [['outbound', streams(client)[seen.client]!], ['inbound', streams(server)[seen.server]!]] as const) {
    assert.equal(line.status, 200, side);
    assert.equal(line.grpc_status, grpc.status.CANCELLED, `${side}: the status the client saw`);
    assert.ok((line.bytes_out as number) >= 5 + JSON.stringify(got[0]).length, `${side}: bytes_out counts the message the client got (${line.bytes_out})`);
    assert.equal(line.error, undefined, `${side}: the client went away; the upstream did not fail`);
  }
});

test("grpc-timeout is enforced by the sidecar: DEADLINE_EXCEEDED with x-tsmesh-error, the app's stream cancelled", async () => {
  // a raw HTTP/2 client that sends grpc-timeout but does not enforce it itself, to an app
  // (a plain HTTP/2 server) that never answers and has no deadline of its own
  const { host } = new URL(client.outboundURL);
  const session = h2connect(`http://${host}`);
  try {
    const body = ser({ n: 1 });
    const req = session.request({ ':method': 'POST', ':path': '/tsmesh.test.Echo/Hang', ':authority': 'web', 'content-type': 'application/grpc', te: 'trailers', 'grpc-timeout': '300m' });
    req.end(Buffer.concat([Buffer.from([0, 0, 0, 0, body.length]), body]));
    const head = await new Promise<IncomingHttpHeaders>((resolve) => req.once('response', resolve));
    req.resume();
    await new Promise((r) => req.once('close', r));
    assert.equal(head[':status'], 200);
    assert.equal(head['grpc-status'], '4', 'DEADLINE_EXCEEDED');
    assert.equal(head['x-tsmesh-error'], 'timeout');
    assert.match(String(head['grpc-message']), /^timeout: /);
    assert.equal(hanging.length, 1);
    const sent = hanging[0]!.timeout;
    assert.match(sent, /^\d+m$/);
    assert.ok(Number(sent.slice(0, -1)) <= 300, `the app got the time left of the deadline (${sent})`);
    await eventually(() => hanging[0]!.closed, 3000, "the app's stream to be reset");
  } finally {
    session.close();
  }
  const r = await unary(stub, { n: 1, text: 'hang' }, { deadline: 400 });
  assert.equal(r.err?.code, grpc.status.DEADLINE_EXCEEDED, 'a grpc-js deadline ends the call either way');
});

test("a service's `timeout` bounds the wait for a response head, not a stream the app keeps alive", async () => {
  const slow = grpcClient(client, 'slow-echo'); // timeout: 300ms
  try {
    const index = calls.seen.length;
    const hung = await unary(slow, { n: 1, text: 'hang' });
    assert.equal(hung.err?.code, grpc.status.DEADLINE_EXCEEDED);
    assert.deepEqual(hung.err?.metadata.get('x-tsmesh-error'), ['timeout']);
    await eventually(() => calls.cancelled.includes(index), 3000, "the app's call to be cancelled by the sidecar");
    // headers at once, then ten messages over ~1 s: three times the timeout, and it lives
    const s = await collect<Msg>(slow.serverStream({ n: 0, text: 'slow' }) as NodeJS.EventEmitter);
    assert.equal(s.err, undefined, s.err?.message);
    assert.equal(s.items.length, 10);
  } finally {
    slow.close();
  }
});

test('no endpoint: UNAVAILABLE from the proxy, with x-tsmesh-error', async () => {
  const nowhere = grpcClient(client, 'nowhere');
  try {
    const r = await unary(nowhere, { n: 1 });
    assert.equal(r.err?.code, grpc.status.UNAVAILABLE);
    assert.deepEqual(r.err?.metadata.get('x-tsmesh-error'), ['no-healthy-endpoints']);
  } finally {
    nowhere.close();
  }
});

test('h2c with prior knowledge from curl, explicit mode: routed by :authority, through both sidecars', async () => {
  const { hostname, port } = new URL(client.outboundURL);
  const out = await new Promise<{ stdout: string; stderr: string }>((resolve, reject) =>
    execFile('curl', ['-sS', '--http2-prior-knowledge', '--connect-to', `web:80:${hostname}:${port}`, '-w', '\n%{http_version} %{http_code}', '-D', '-', 'http://web/hello?x=1'], { timeout: 10_000 }, (err, stdout, stderr) => (err ? reject(new Error(`${err.message} ${stderr}`)) : resolve({ stdout, stderr }))),
  );
  assert.match(out.stdout, /h2 app: GET \/hello\?x=1 via mTLS\n/);
  assert.match(out.stdout, /x-app-saw-attempt: 1/);
  assert.match(out.stdout, /\n2 200$/, 'HTTP/2 all the way from curl');
});

// ---- one client channel, a service with three pods ----

interface Seen {
  pod: string;
  method: string;
  attempt: number;
}

/** A pod's app: answers with its name; while `state.failing`, pod-0 says UNAVAILABLE (streams after their messages). */
function podImpl(pod: string, seen: Seen[], state: { failing: boolean }): grpc.UntypedServiceImplementation {
  const note = (method: string, md: grpc.Metadata) => seen.push({ pod, method, attempt: Number(md.get('x-tsmesh-attempt')[0]) });
  const unavailable = () => state.failing && pod === 'pod-0';
  return {
    unary(call: grpc.ServerUnaryCall<Msg, Msg>, cb: grpc.sendUnaryData<Msg>) {
      note('unary', call.metadata);
      if (unavailable()) return cb({ code: grpc.status.UNAVAILABLE, details: `${pod} is draining` });
      cb(null, { n: call.request.n, pod });
    },
    serverStream(call: grpc.ServerWritableStream<Msg, Msg>) {
      note('serverStream', call.metadata);
      for (let i = 0; i < call.request.n; i++) call.write({ n: i, pod });
      if (unavailable()) return void call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'gone mid-stream' });
      call.end();
    },
    clientStream(call: grpc.ServerReadableStream<Msg, Msg>, cb: grpc.sendUnaryData<Msg>) {
      note('clientStream', call.metadata);
      let count = 0;
      call.on('data', () => count++);
      call.on('end', () => (unavailable() ? cb({ code: grpc.status.UNAVAILABLE, details: 'no' }) : cb(null, { n: count, pod })));
    },
    bidi(call: grpc.ServerDuplexStream<Msg, Msg>) {
      call.on('data', (m: Msg) => call.write(m));
      call.on('end', () => call.end());
    },
  };
}

test('three pods behind one service: calls on ONE client channel spread over all three; UNAVAILABLE is retried on another pod, streams that started are not', async (t) => {
  const d = await tempDir();
  const seen: Seen[] = [];
  const state = { failing: false };
  const pods: PodDef[] = [0, 1, 2].map((i) => ({ name: `pod-${i}`, ip: loopbackIP(), labels: { app: 'echo3', ...(i === 0 ? { flaky: 'yes' } : {}) }, meshed: true, serviceAccount: `pod-${i}` }));
  const caller: PodDef = { name: 'caller', ip: loopbackIP(), labels: { app: 'caller' }, meshed: true, serviceAccount: 'caller' };
  const servers = await Promise.all(pods.map((p) => grpcServer(p.ip, 8080, podImpl(p.name, seen, state))));
  const registryFile = join(d.path, 'registry.yaml');
  const noBreaker = { 'tsmesh.io/breaker-volume-threshold': '1000' }; // keep pod-0 in the rotation while it fails
  await writeRegistry(registryFile, {
    services: [
      { name: 'echo3', ports: [{ port: 80, targetPort: 8080 }], selector: { app: 'echo3' }, annotations: noBreaker },
      { name: 'flaky', ports: [{ port: 80, targetPort: 8080 }], selector: { flaky: 'yes' }, annotations: noBreaker },
    ],
    pods: [...pods, caller],
  });
  const cert = async (p: PodDef) => ({ TSMESH_TLS_DIR: await writeWorkloadIdentity(ca, join(d.path, `${p.name}-tls`), { namespace: 'default', serviceAccount: p.serviceAccount! }) });
  const sidecars = await Promise.all([...pods, caller].map(async (p) => testSidecar({ pod: p, registryFile, dir: d.path, env: await cert(p) })));
  const callerSidecar = sidecars[3]!;
  const channel = grpcClient(callerSidecar, 'echo3');
  t.after(async () => {
    channel.close();
    await Promise.all(sidecars.map((s) => s.close()));
    for (const s of servers) s.forceShutdown();
    await d.remove();
  });

  // 300 unary calls, 10 at a time, on one channel (one HTTP/2 connection to the sidecar)
  for (let i = 0; i < 300; i += 10) {
    const batch = await Promise.all(Array.from({ length: 10 }, (_, j) => unary(channel, { n: i + j })));
    for (const r of batch) assert.equal(r.err, undefined, r.err?.message);
  }
  const per = (pod: string) => seen.filter((s) => s.pod === pod && s.method === 'unary').length;
  const counts = pods.map((p) => per(p.name));
  assert.equal(counts.reduce((x, y) => x + y, 0), 300);
  for (const [i, n] of counts.entries()) assert.ok(n >= 60, `pod-${i} got ${n} of 300 calls (${counts.join(' / ')}): each at least 20%`);
  const outbound = accessLines(callerSidecar, (l) => l.path === '/tsmesh.test.Echo/Unary');
  assert.equal(new Set(outbound.map((l) => l.client)).size, 1, 'all calls came on one client connection');

  // pod-0 now answers UNAVAILABLE: every call still succeeds, each failure retried on another pod
  state.failing = true;
  seen.length = 0;
  for (let i = 0; i < 60; i += 10) {
    const batch = await Promise.all(Array.from({ length: 10 }, (_, j) => unary(channel, { n: i + j })));
    for (const r of batch) {
      assert.equal(r.err, undefined, r.err?.message);
      assert.notEqual(r.res?.pod, 'pod-0');
    }
  }
  const failed = seen.filter((s) => s.pod === 'pod-0');
  assert.ok(failed.length > 0, 'pod-0 was tried');
  assert.ok(failed.every((s) => s.attempt === 1), 'a retry never went back to pod-0 while others were left');
  assert.equal(seen.filter((s) => s.pod !== 'pod-0' && s.attempt === 2).length, failed.length, 'each UNAVAILABLE was retried once, elsewhere');
  const metrics = parseExposition(await (await fetch(`${callerSidecar.adminURL}/metrics`)).text());
  assert.equal(sampleValue(metrics, 'tsmesh_retries_total', { destination_service: 'echo3.default', reason: 'gateway-error' }), failed.length);

  // a server stream whose response has started is never retried: its messages, then the error
  const flaky = grpcClient(callerSidecar, 'flaky');
  t.after(() => flaky.close());
  seen.length = 0;
  const s = await collect<Msg>(flaky.serverStream({ n: 3 }) as NodeJS.EventEmitter);
  assert.equal(s.items.length, 3);
  assert.equal(s.err?.code, grpc.status.UNAVAILABLE);
  assert.deepEqual(seen.map((x) => x.attempt), [1], 'one try only');

  // a client stream of more than 64 KiB cannot be replayed: not retried either
  seen.length = 0;
  const big = await new Promise<grpc.ServiceError | null>((resolve) => {
    const call = flaky.clientStream((err: grpc.ServiceError | null) => resolve(err)) as grpc.ClientWritableStream<Msg>;
    for (let i = 0; i < 100; i++) call.write({ n: i, text: 'y'.repeat(1024) });
    call.end();
  });
  assert.equal(big?.code, grpc.status.UNAVAILABLE);
  assert.deepEqual(seen.map((x) => x.attempt), [1]);

  // a small unary call to the only (failing) pod: tried 1 + retry-attempts (2) times, then its UNAVAILABLE
  seen.length = 0;
  const r = await unary(flaky, { n: 7 });
  assert.equal(r.err?.code, grpc.status.UNAVAILABLE);
  assert.equal(r.err?.details, 'pod-0 is draining', "the app's own status and message reach the client");
  assert.deepEqual(seen.map((x) => x.attempt), [1, 2, 3]);
});
