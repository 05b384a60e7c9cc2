// End to end with the real interception: pods are network namespaces, `tsmesh init` installs
// the iptables rules, the sidecars run as UID 1337, the apps as another user, and the apps
// know nothing of the mesh (plain curl, plain sockets). Needs root.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { netnsCluster, NODE, APP_UID, sidecarLines as podSidecarLines, type NetnsCluster } from './harness/netns.ts';
import { eventually } from './harness/mesh.ts';

const skip = process.getuid?.() !== 0 ? 'needs root (network namespaces and iptables)' : false;
let cluster: NetnsCluster;

// pod-a's apps: HTTP on 8080 (says who called it), a TCP echo on 9000, a server-first
// protocol on 2525 (greets first, like SMTP), and an HTTP app on 7000 whose port is excluded.
const APPS = `
import http from 'node:http';
import net from 'node:net';
const from = (s) => s.remoteAddress.replace(/^::ffff:/, '');
http.createServer((req, res) => res.end(JSON.stringify({ pod: 'pod-a', url: req.url, from: from(req.socket), headers: req.headers }))).listen(8080);
http.createServer((req, res) => res.end('excluded ' + from(req.socket))).listen(7000);
net.createServer((s) => s.pipe(s)).listen(9000);
net.createServer((s) => { s.write('220 pod-a ready\\r\\n'); s.on('data', (d) => s.write('250 ' + d)); }).listen(2525, () => console.log('apps ready'));
`;

const sidecarLines = (pod: string) => podSidecarLines(cluster, pod);

before(async () => {
  if (skip) return;
  cluster = await netnsCluster({
    pods: [
      { name: 'pod-a', labels: { app: 'web-app' }, sidecar: true, annotations: { 'tsmesh.io/exclude-inbound-ports': '7000' } },
      { name: 'pod-b', labels: { app: 'client' }, sidecar: true, annotations: { 'tsmesh.io/exclude-outbound-ports': '7000' } },
    ],
    services: [
      { name: 'pod-service', ports: [{ port: 80, targetPort: 8080 }], selector: { app: 'web-app' } },
      { name: 'echo', ports: [{ port: 9000 }], selector: { app: 'web-app' } },
      { name: 'mail', ports: [{ port: 25, targetPort: 2525 }], selector: { app: 'web-app' } },
      { name: 'excluded', ports: [{ port: 7000 }], selector: { app: 'web-app' } },
    ],
  });
  await cluster.spawn('pod-a', [NODE, '--input-type=module', '-e', APPS], { uid: APP_UID }).waitForLine(/apps ready/);
});
after(() => cluster?.close());

test("the article's example: plain curl in pod-b gets pod-a's answer through both sidecars", { skip }, async () => {
  const r = await cluster.curl('pod-b', 'http://pod-service/hello');
  assert.equal(r.status, 200, r.stderr);
  const body = JSON.parse(r.body) as { pod: string; url: string; from: string; headers: Record<string, string> };
  assert.equal(body.pod, 'pod-a');
  assert.equal(body.url, '/hello');
  assert.equal(body.from, cluster.pod('pod-a').ip, "the app sees the request arrive from its own sidecar, at the pod's IP");
  assert.equal(body.headers['x-forwarded-for'], cluster.pod('pod-b').ip);
  assert.equal(body.headers['x-tsmesh-attempt'], '1');
  // access lines are written when each exchange ends, a moment after curl has its answer
  const logged = (pod: string, path: string) => sidecarLines(pod).some((l) => l.type === 'access' && l.path === path);
  await eventually(() => logged('pod-b', '/hello') && logged('pod-a', '/hello'), 5000, 'both access lines');
  const out = sidecarLines('pod-b').filter((l) => l.type === 'access' && l.path === '/hello');
  const inn = sidecarLines('pod-a').filter((l) => l.type === 'access' && l.path === '/hello');
  assert.equal(out.length, 1, "one outbound access line in pod-b's sidecar: its own call to pod-a was not captured again (no loop)");
  assert.equal(out[0]!.upstream_service, 'pod-service.default');
  assert.equal(inn.length, 1, "one inbound access line in pod-a's sidecar");
  assert.equal(inn[0]!.upstream, `${cluster.pod('pod-a').ip}:8080`);
});

test('a call to a pod IP (not a service) goes through both sidecars too', { skip }, async () => {
  const r = await cluster.curl('pod-b', `http://${cluster.pod('pod-a').ip}:8080/by-ip`);
  assert.equal(r.status, 200, r.stderr);
  await eventually(() => sidecarLines('pod-b').some((l) => l.type === 'access' && l.path === '/by-ip' && l.upstream_pod === 'pod-a'), 5000, "pod-b's access line");
  await eventually(() => sidecarLines('pod-a').some((l) => l.type === 'access' && l.path === '/by-ip'), 5000, "pod-a's access line");
});

test('a service whose port is excluded bypasses the sidecars', { skip }, async () => {
  const r = await cluster.curl('pod-b', 'http://excluded:7000/skip');
  assert.equal(r.status, 200, r.stderr);
  assert.match(r.body, /^excluded /);
  assert.notEqual(r.body, `excluded ${cluster.pod('pod-a').ip}`, "the app was not called by its own sidecar");
  // a request that is intercepted, sent after it: once its lines are there, /skip's would be too
  assert.equal((await cluster.curl('pod-b', 'http://pod-service/after-skip')).status, 200);
  await eventually(() => sidecarLines('pod-a').some((l) => l.path === '/after-skip'), 5000, 'the later request logged');
  assert.ok(!sidecarLines('pod-b').some((l) => l.path === '/skip'), "pod-b's sidecar did not see it");
  assert.ok(!sidecarLines('pod-a').some((l) => l.path === '/skip'), "pod-a's sidecar did not see it");
});

test('a raw TCP echo works through interception', { skip }, async () => {
  const r = await cluster.node(
    'pod-b',
    `import net from 'node:net';
     const s = net.connect(9000, 'echo');
     let got = '';
     s.on('data', (d) => { got += d; if (got.length >= 11) s.end(); });
     s.on('close', () => console.log(got));
     s.write('\\x00\\x01binary-ish');`,
    { uid: APP_UID, timeoutMs: 10_000 },
  );
  assert.equal(r.stdout.trim(), '\x00\x01binary-ish'.trim(), r.stderr);
  await eventually(() => sidecarLines('pod-b').some((l) => l.kind === 'tcp' && l.upstream_service === 'echo.default'), 5000, 'pod-b sidecar logged the TCP connection');
  await eventually(() => sidecarLines('pod-a').some((l) => l.kind === 'tcp' && l.upstream === `${cluster.pod('pod-a').ip}:9000`), 5000, 'pod-a sidecar piped it');
});

test('a server-first protocol (the client waits for a greeting) works through interception', { skip }, async () => {
  const r = await cluster.node(
    'pod-b',
    `import net from 'node:net';
     const s = net.connect(25, 'mail');
     let got = '';
     s.on('data', (d) => { got += d; if (got.startsWith('220') && !got.includes('250')) s.write('HELO pod-b\\r\\n'); if (got.includes('250')) s.end(); });
     s.on('close', () => console.log(JSON.stringify(got)));`,
    { uid: APP_UID, timeoutMs: 10_000 },
  );
  assert.equal(JSON.parse(r.stdout), '220 pod-a ready\r\n250 HELO pod-b\r\n', r.stderr);
});
