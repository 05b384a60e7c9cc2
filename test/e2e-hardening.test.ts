// Issue 14 end to end, with the real interception (network-namespace pods, iptables, each
// sidecar its own process as UID 1337, mTLS between them): a hostile caller cannot crash a
// sidecar with one packet, pass a forged x-forwarded-client-cert to an app, or use another
// pod's admin port. pod-a is the target (mtls permissive, so a caller without a sidecar reaches
// its app port in plaintext), pod-b a meshed client, pod-c a pod without a sidecar, pod-d a
// meshed client that marks port 80 opaque on itself. Needs root.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { netnsCluster, NODE, APP_UID, ROOT, type NetnsCluster } from './harness/netns.ts';

const skip = process.getuid?.() !== 0 ? 'needs root (network namespaces and iptables)' : false;
let cluster: NetnsCluster;
const FRAMES = join(ROOT, 'test/harness/h2-frames.ts');

// pod-a's apps: HTTP/1.1 on 8080 and h2c on 8081, each answering with the XFCC it was given
const APPS = `
import http from 'node:http';
import http2 from 'node:http2';
const xfcc = (h) => 'xfcc=' + (h['x-forwarded-client-cert'] ?? 'none');
http.createServer((req, res) => res.end(xfcc(req.headers))).listen(8080);
http2.createServer((req, res) => res.end(xfcc(req.headers))).listen(8081, () => console.log('apps ready'));
`;

before(async () => {
  if (skip) return;
  cluster = await netnsCluster({
    pods: [
      { name: 'pod-a', labels: { app: 'web-app' }, serviceAccount: 'pod-a', sidecar: true, annotations: { 'tsmesh.io/mtls': 'permissive' } },
      { name: 'pod-b', labels: { app: 'client' }, serviceAccount: 'pod-b', sidecar: true },
      { name: 'pod-c', labels: { app: 'outsider' } },
      // a meshed caller that declares the service's port opaque on itself: its sidecar sends TCP
      { name: 'pod-d', labels: { app: 'opaque-client' }, serviceAccount: 'pod-d', sidecar: true, annotations: { 'tsmesh.io/opaque-ports': '80' } },
    ],
    services: [
      { name: 'pod-service', ports: [{ port: 80, targetPort: 8080 }], selector: { app: 'web-app' } },
      { name: 'h2-service', ports: [{ port: 81, targetPort: 8081 }], selector: { app: 'web-app' } },
    ],
    mtls: true,
  });
  await cluster.spawn('pod-a', [NODE, '--input-type=module', '-e', APPS], { uid: APP_UID }).waitForLine(/apps ready/);
});
after(() => cluster?.close());

const alive = (pod: string) => {
  const child = cluster.pod(pod).sidecar!.child;
  return child.exitCode === null && child.signalCode === null;
};

/** Writes `bytes` (a JS expression over the frame helpers) from `pod` to host:port at once; waits for the close (at most 2 s). */
function blast(pod: string, host: string, port: number, bytes: string) {
  return cluster.node(
    pod,
    `import { connect } from 'node:net';
     import * as f from ${JSON.stringify(FRAMES)};
     const s = connect(${port}, ${JSON.stringify(host)}, () => s.write(${bytes}));
     s.on('error', () => undefined);
     s.on('data', () => undefined);
     const t = setTimeout(() => s.destroy(), 2000);
     s.on('close', () => { clearTimeout(t); console.log('closed'); });`,
    { uid: APP_UID },
  );
}

/** Raw bytes from `pod` to host:port; what came back. */
async function raw(pod: string, host: string, port: number, text: string): Promise<string> {
  const r = await cluster.node(
    pod,
    `import { connect } from 'node:net';
     const s = connect(${port}, ${JSON.stringify(host)}, () => s.write(${JSON.stringify(text)}));
     let out = '';
     s.on('data', (d) => (out += d));
     s.on('error', () => undefined);
     setTimeout(() => s.destroy(), 1500);
     s.on('close', () => console.log(JSON.stringify(out)));`,
    { uid: APP_UID },
  );
  return JSON.parse(r.stdout.trim() || '""') as string;
}

test('one packet (preface, SETTINGS, HEADERS, GOAWAY, zeros) to an app port and through the outbound front: both sidecars stay up and keep answering (item 1)', { skip }, async () => {
  const packet = `f.prefaceHeadersGoawayZeros('pod-service')`;
  // to pod-a's app port from a pod without a sidecar: redirected to pod-a's inbound front
  assert.match((await blast('pod-c', cluster.pod('pod-a').ip, 8080, packet)).stdout, /closed/);
  // from pod-b's app to the service: pod-b's outbound front (destination known), then pod-a over mTLS
  assert.match((await blast('pod-b', 'pod-service', 80, packet)).stdout, /closed/);
  assert.ok(alive('pod-a') && alive('pod-b'), `the sidecars are running\n${cluster.pod('pod-a').sidecar!.output().slice(-2000)}`);
  const r = await cluster.curl('pod-b', 'http://pod-service/after');
  assert.equal(r.status, 200, r.stderr);
});

test('a forged x-forwarded-client-cert never reaches the app, whatever the path (item 3)', { skip }, async () => {
  const a = cluster.pod('pod-a').ip;
  const forged = ['-H', 'x-forwarded-client-cert: By=spiffe://cluster.local/ns/default/sa/pod-a;URI=spiffe://cluster.local/ns/kube-system/sa/admin'];
  // a meshed caller: the sidecar's value replaces the caller's
  const meshed = await cluster.curl('pod-b', 'http://pod-service/', { args: forged });
  assert.equal(meshed.body, 'xfcc=By=spiffe://cluster.local/ns/default/sa/pod-a;URI=spiffe://cluster.local/ns/default/sa/pod-b');
  const meshedH2 = await cluster.curl('pod-b', 'http://h2-service:81/', { args: ['--http2-prior-knowledge', ...forged] });
  assert.equal(meshedH2.body, 'xfcc=By=spiffe://cluster.local/ns/default/sa/pod-a;URI=spiffe://cluster.local/ns/default/sa/pod-b');
  // a caller whose own sidecar sends the request as opaque TCP: pod-a, which never said port
  // 8080 is opaque, looks at the bytes itself and sees an HTTP request
  const opaqueCaller = await cluster.curl('pod-d', 'http://pod-service/', { args: forged });
  assert.equal(opaqueCaller.body, 'xfcc=By=spiffe://cluster.local/ns/default/sa/pod-a;URI=spiffe://cluster.local/ns/default/sa/pod-d');
  // a caller without a sidecar (permissive): no identity, so no header at all
  assert.equal((await cluster.curl('pod-c', `http://${a}:8080/`, { args: forged })).body, 'xfcc=none');
  assert.equal((await cluster.curl('pod-c', `http://${a}:8081/`, { args: ['--http2-prior-knowledge', ...forged] })).body, 'xfcc=none');
  // empty lines before the request line: the app's parser skips them, so the sidecar must read
  // it as HTTP too (it was piped as opaque TCP, header and all)
  const crlf = await raw('pod-c', a, 8080, '\r\n\r\nGET /crlf HTTP/1.1\r\nHost: pod-a\r\nX-Forwarded-Client-Cert: forged\r\nConnection: close\r\n\r\n');
  assert.match(crlf, /^HTTP\/1\.1 200/);
  assert.match(crlf, /xfcc=none$/);
  // a request line sent in two pieces, the second after the detection timeout (100 ms)
  const slow = await cluster.node(
    'pod-c',
    `import { connect } from 'node:net';
     const s = connect(8080, ${JSON.stringify(a)}, () => { s.write('GE'); setTimeout(() => s.write('T /slow HTTP/1.1\\r\\nHost: a\\r\\nx-forwarded-client-cert: forged\\r\\nConnection: close\\r\\n\\r\\n'), 300); });
     let out = '';
     s.on('data', (d) => (out += d));
     s.on('close', () => console.log(JSON.stringify(out)));`,
    { uid: APP_UID },
  );
  const slowReply = JSON.parse(slow.stdout.trim()) as string;
  assert.doesNotMatch(slowReply, /forged/);
  assert.match(slowReply, /^HTTP\/1\.1 200[\s\S]*xfcc=none$/);
});

test("the admin port answers another pod's reads of health and metrics, and nothing else (item 5)", { skip }, async () => {
  const admin = `http://${cluster.pod('pod-a').ip}:15020`;
  for (const [method, path] of [['POST', '/quitquitquit'], ['GET', '/config'], ['GET', '/debug/spans'], ['GET', '/nothing-here']] as const) {
    const r = await cluster.curl('pod-c', `${admin}${path}`, { args: ['-X', method, '-D', '-'] });
    assert.equal(r.status, 403, `${method} ${path} from another pod`);
    assert.match(r.body, /x-tsmesh-error: forbidden/i);
  }
  for (const path of ['/healthz/ready', '/livez', '/metrics']) assert.equal((await cluster.curl('pod-c', `${admin}${path}`)).status, 200, `${path} from another pod`);
  // the pod's own containers, on loopback, may read its config
  const own = await cluster.curl('pod-a', 'http://127.0.0.1:15020/config');
  assert.equal(own.status, 200);
  assert.match(own.body, /"inFlight"/);
  // and the target is still ready and serving
  assert.equal((await cluster.curl('pod-c', `${admin}/healthz/ready`)).status, 200);
  assert.equal((await cluster.curl('pod-b', 'http://pod-service/still-here')).status, 200);
});
