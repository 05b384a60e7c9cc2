// End to end with interception and mTLS: pod-b -> pod-service -> pod-a in network namespaces,
// each sidecar with a certificate from one CA. A capture on pod-a's link to the bridge shows the pod-to-pod
// traffic, and none of the request's plaintext. Needs root and tcpdump.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { netnsCluster, NODE, APP_UID, type NetnsCluster } from './harness/netns.ts';
import { eventually } from './harness/mesh.ts';

const skip = process.getuid?.() !== 0 ? 'needs root' : spawnSync('tcpdump', ['--version']).status !== 0 ? 'needs tcpdump' : false;
let cluster: NetnsCluster;
const SECRET = 'the-secret-path-9f3a';

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
  await cluster
    .spawn('pod-a', [NODE, '--input-type=module', '-e', `import http from 'node:http'; http.createServer((q, s) => s.end('xfcc=' + q.headers['x-forwarded-client-cert'])).listen(8080, () => console.log('ready'))`], { uid: APP_UID })
    .waitForLine(/ready/);
});
after(async () => {
  await cluster?.close();
});

test('pod-b -> pod-service -> pod-a is encrypted and authenticated: the bridge never carries the plaintext', { skip }, async () => {
  const pcap = join(cluster.dir, 'bridge.pcap');
  const capture = spawn('ip', ['netns', 'exec', cluster.nodeNetns, 'tcpdump', '-Z', 'root', '-i', 'veth0', '--immediate-mode', '-U', '-s', '0', '-w', pcap, 'tcp'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let tcpdumpErr = '';
  capture.stderr.on('data', (d) => (tcpdumpErr += d));
  await eventually(() => /listening on/.test(tcpdumpErr), 5000, 'tcpdump to start');
  try {
    const r = await cluster.curl('pod-b', `http://pod-service/${SECRET}`, { args: ['-H', `x-secret-header: ${SECRET}`] });
    assert.equal(r.status, 200, r.stderr);
    assert.equal(r.body, 'xfcc=By=spiffe://cluster.local/ns/default/sa/pod-a;URI=spiffe://cluster.local/ns/default/sa/pod-b');
  } finally {
    await new Promise((r) => setTimeout(r, 300));
    capture.kill('SIGINT');
    await new Promise((r) => capture.once('close', r));
  }
  const bytes = await readFile(pcap);
  assert.ok(bytes.length > 24 + 200, `the capture holds the pod-to-pod packets (${bytes.length} bytes; tcpdump: ${tcpdumpErr})`);
  const text = bytes.toString('latin1');
  assert.ok(!text.includes(SECRET), 'the request path and headers never cross the bridge in plaintext');
  assert.ok(!text.includes('x-secret-header'), 'no plaintext header');
  // the packets went to pod-a's mesh port 15006: its port number in TCP headers (0x3a9e)
  assert.ok(bytes.includes(Buffer.from([0x3a, 0x9e])), 'traffic to port 15006 was captured');
});
