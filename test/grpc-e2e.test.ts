// gRPC end to end with the real interception and mTLS: pods are network namespaces, `tsmesh
// init` installs the iptables rules, the sidecars run as UID 1337 with certificates from one
// CA, and the apps (UID 1000, node with @grpc/grpc-js) know nothing of the mesh: pod-b's client
// dials pod-service:80 as h2c, and pod-a's server listens on 8080. Needs root.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { netnsCluster, NODE, APP_UID, ROOT, sidecarLines as podSidecarLines, type NetnsCluster } from './harness/netns.ts';
import { eventually } from './harness/mesh.ts';

const skip = process.getuid?.() !== 0 ? 'needs root (network namespaces and iptables)' : false;
let cluster: NetnsCluster;

// The service, JSON messages, shared by the app and the client scripts.
// @grpc/grpc-js is this checkout's, whatever the working directory.
const SERVICE = `
import { createRequire } from 'node:module';
const grpc = createRequire(${JSON.stringify(join(ROOT, 'package.json'))})('@grpc/grpc-js');
const ser = (v) => Buffer.from(JSON.stringify(v));
const de = (b) => JSON.parse(b.toString());
const m = (name, requestStream, responseStream) => ({ path: '/e2e.Echo/' + name, requestStream, responseStream, requestSerialize: ser, requestDeserialize: de, responseSerialize: ser, responseDeserialize: de });
const ECHO = { unary: m('Unary', false, false), count: m('Count', false, true) };
`;

const APP = `${SERVICE}
const server = new grpc.Server();
server.addService(ECHO, {
  unary(call, cb) {
    if (call.request.fail) return cb({ code: grpc.status.FAILED_PRECONDITION, details: 'not now' });
    cb(null, { n: call.request.n + 1, xfcc: call.metadata.get('x-forwarded-client-cert')[0] ?? null, attempt: call.metadata.get('x-tsmesh-attempt')[0] ?? null });
  },
  count(call) {
    for (let i = 0; i < call.request.n; i++) call.write({ n: i });
    call.end();
  },
});
server.bindAsync('0.0.0.0:8080', grpc.ServerCredentials.createInsecure(), (err) => console.log(err ? 'failed ' + err.message : 'app ready'));
`;

const CLIENT = `${SERVICE}
const Client = grpc.makeGenericClientConstructor(ECHO, 'Echo');
const client = new Client('pod-service:80', grpc.credentials.createInsecure(), { 'grpc.enable_http_proxy': 0 });
const out = {};
const unary = (req) => new Promise((resolve) => client.unary(req, (err, res) => resolve(err ? { code: err.code, details: err.details } : res)));
out.unary = await unary({ n: 41 });
out.failed = await unary({ n: 0, fail: true });
out.count = await new Promise((resolve) => {
  let n = 0;
  const call = client.count({ n: 2000 });
  call.on('data', () => n++);
  call.on('error', (err) => resolve({ n, code: err.code }));
  call.on('end', () => resolve({ n }));
});
client.close();
console.log(JSON.stringify(out));
`;

const sidecarLines = (pod: string) => podSidecarLines(cluster, pod);

before(async () => {
  if (skip) return;
  cluster = await netnsCluster({
    pods: [
      { name: 'pod-a', labels: { app: 'web-app' }, serviceAccount: 'pod-a', sidecar: true },
      { name: 'pod-b', labels: { app: 'client' }, serviceAccount: 'pod-b', sidecar: true },
    ],
    services: [{ name: 'pod-service', ports: [{ port: 80, targetPort: 8080 }], selector: { app: 'web-app' } }],
    mtls: true,
  });
  await cluster.spawn('pod-a', [NODE, '--input-type=module', '-e', APP], { uid: APP_UID }).waitForLine(/app ready|failed/);
});
after(async () => {
  await cluster?.close();
});

test('a gRPC client in pod-b calls pod-service as plain h2c: intercepted, mTLS between the sidecars, unary and a 2000-message stream', { skip }, async () => {
  const r = await cluster.node('pod-b', CLIENT, { uid: APP_UID, timeoutMs: 30_000 });
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { unary: { n: number; xfcc: string; attempt: string }; failed: { code: number; details: string }; count: { n: number; code?: number } };
  assert.equal(out.unary.n, 42);
  assert.equal(out.unary.xfcc, 'By=spiffe://cluster.local/ns/default/sa/pod-a;URI=spiffe://cluster.local/ns/default/sa/pod-b', "pod-a's sidecar verified pod-b's certificate");
  assert.equal(out.unary.attempt, '1');
  assert.deepEqual(out.failed, { code: 9, details: 'not now' }, "the app's error status and message arrive as it sent them");
  assert.deepEqual(out.count, { n: 2000 });
  const logged = (pod: string, path: string) => sidecarLines(pod).filter((l) => l.type === 'access' && l.path === path);
  await eventually(() => logged('pod-b', '/e2e.Echo/Count').length > 0 && logged('pod-a', '/e2e.Echo/Count').length > 0, 5000, 'both access lines');
  const out1 = logged('pod-b', '/e2e.Echo/Unary');
  assert.equal(out1.length, 2, "pod-b's sidecar saw both unary calls (the app's connection was intercepted)");
  assert.ok(out1.every((l) => l.protocol === 'HTTP/2' && l.upstream_service === 'pod-service.default'));
  assert.deepEqual(out1.map((l) => l.grpc_status).sort(), [0, 9]);
  const inbound = logged('pod-a', '/e2e.Echo/Count')[0]!;
  assert.equal(inbound.peer, 'spiffe://cluster.local/ns/default/sa/pod-b');
  assert.equal(inbound.protocol, 'HTTP/2');
});
