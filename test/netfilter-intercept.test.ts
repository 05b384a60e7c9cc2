// The interception end to end, in network-namespace pods: `tsmesh init` installs the rules,
// a stand-in sidecar (UID 1337) on the outbound, inbound and admin ports answers with the
// original destination it reads (originalDestination, SO_ORIGINAL_DST), and apps (UID 1000)
// and other pods connect. Each answer says who answered, so every case shows where the
// connection went: to the sidecar (and for which original destination) or straight through.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { netnsCluster, ROOT, NODE, APP_UID, PROXY_UID, type NetnsCluster } from './harness/netns.ts';

const ORIGDST = new URL('src/origdst/origdst.ts', `file://${ROOT}/`).href;

// The stand-in sidecar: on each port, answer with the port, the original destination, the caller.
const PROBE = `
import { createServer } from 'node:net';
import { originalDestination } from '${ORIGDST}';
const ports = process.argv.slice(1).map(Number);
let up = 0;
for (const port of ports) {
  createServer((socket) => {
    socket.end(JSON.stringify({ via: port, dst: originalDestination(socket) ?? null, from: socket.remoteAddress.replace(/^::ffff:/, '') }));
  }).listen({ port, host: '::' }, () => { if (++up === ports.length) console.log('listening'); });
}
`;
// An app: on each port, answer with its name and the port.
const APP = `
import { createServer } from 'node:net';
const [name, ...ports] = process.argv.slice(1);
let up = 0;
for (const port of ports) {
  createServer((socket) => socket.end(JSON.stringify({ via: name + ':' + port }))).listen({ port: Number(port), host: '::' }, () => { if (++up === ports.length) console.log('listening'); });
}
`;
// A client: connect, print what comes back.
const CLIENT = `
import { connect } from 'node:net';
const [host, port] = process.argv.slice(1);
let data = '';
connect({ host, port: Number(port) }).setEncoding('utf8').on('data', (d) => (data += d)).on('end', () => process.stdout.write(data)).on('error', (e) => { console.error(e.code); process.exitCode = 1; });
`;

let cluster: NetnsCluster;
let a: string, a6: string, b: string, b6: string, c: string;

async function call(from: string, host: string, port: number, uid = APP_UID): Promise<{ via: number | string; dst: { address: string; port: number; family: number } | null; from?: string }> {
  const r = await cluster.node(from, CLIENT, { uid, args: [host, String(port)] });
  assert.equal(r.code, 0, `connect from ${from} (UID ${uid}) to ${host}:${port} failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

before(async () => {
  cluster = await netnsCluster({
    ipv6: true,
    pods: [
      { name: 'pod-a', labels: { app: 'web-app' }, annotations: { 'tsmesh.io/exclude-inbound-ports': '8081' } },
      { name: 'pod-b' },
      { name: 'pod-c' },
    ],
    services: [{ name: 'pod-service', ports: [{ port: 80, targetPort: 8080 }], selector: { app: 'web-app' } }],
  });
  ({ ip: a, ip6: a6 } = cluster.pod('pod-a') as { ip: string; ip6: string });
  ({ ip: b, ip6: b6 } = cluster.pod('pod-b') as { ip: string; ip6: string });
  c = cluster.pod('pod-c').ip;
  // pod-a is intercepted: annotations give exclude-inbound-ports, flags the outbound exclusions
  await cluster.init('pod-a', ['--exclude-outbound-ports', '9999', '--exclude-outbound-cidrs', `${c}/32`]);
  const started = [
    cluster.spawn('pod-a', [NODE, '--input-type=module', '-e', PROBE, '15001', '15006', '15020'], { uid: PROXY_UID }),
    cluster.spawn('pod-a', [NODE, '--input-type=module', '-e', APP, 'pod-a', '8080', '8081'], { uid: APP_UID }),
    cluster.spawn('pod-b', [NODE, '--input-type=module', '-e', APP, 'pod-b', '8080', '9999'], { uid: APP_UID }),
    cluster.spawn('pod-c', [NODE, '--input-type=module', '-e', APP, 'pod-c', '8080'], { uid: APP_UID }),
  ];
  await Promise.all(started.map((p) => p.waitForLine(/listening/)));
});
after(() => cluster?.close());

void test('outbound: the app\'s connections go to the outbound port with their original destination', async () => {
  assert.deepEqual(await call('pod-a', '10.77.0.200', 80), { via: 15001, dst: { address: '10.77.0.200', port: 80, family: 4 }, from: a });
  assert.deepEqual((await call('pod-a', b, 8080)).dst, { address: b, port: 8080, family: 4 });
  const vip = cluster.service('pod-service').clusterIP;
  assert.deepEqual(await call('pod-a', 'pod-service', 80), { via: 15001, dst: { address: vip, port: 80, family: 4 }, from: a });
});

void test('outbound: the app calling its own pod IP goes through the sidecar too (no inbound policy bypass)', async () => {
  assert.deepEqual(await call('pod-a', a, 8080), { via: 15001, dst: { address: a, port: 8080, family: 4 }, from: a });
});

void test('outbound: loopback, the proxy\'s own UID, excluded ports and CIDRs are not redirected', async () => {
  assert.deepEqual(await call('pod-a', '127.0.0.1', 8080), { via: 'pod-a:8080' });
  assert.deepEqual(await call('pod-a', '::1', 8080), { via: 'pod-a:8080' });
  assert.deepEqual(await call('pod-a', b, 8080, PROXY_UID), { via: 'pod-b:8080' });
  assert.deepEqual(await call('pod-a', b, 9999), { via: 'pod-b:9999' });
  assert.deepEqual(await call('pod-a', c, 8080), { via: 'pod-c:8080' });
});

void test('inbound: connections to the pod\'s ports go to the inbound port with the original port', async () => {
  assert.deepEqual(await call('pod-b', a, 8080), { via: 15006, dst: { address: a, port: 8080, family: 4 }, from: b });
  // any port, also one nothing listens on
  assert.deepEqual(await call('pod-b', a, 5432), { via: 15006, dst: { address: a, port: 5432, family: 4 }, from: b });
});

void test('inbound: the admin port, the inbound port itself and excluded ports are reached directly', async () => {
  assert.deepEqual(await call('pod-b', a, 15020), { via: 15020, dst: null, from: b });
  // sidecar to sidecar: straight to 15006, not a redirected connection
  assert.deepEqual(await call('pod-b', a, 15006), { via: 15006, dst: null, from: b });
  assert.deepEqual(await call('pod-b', a, 8081), { via: 'pod-a:8081' });
});

void test('IPv6: the pod has a ULA address, so init installed the ip6tables rules too', async () => {
  const saved = await cluster.exec('pod-a', ['ip6tables-save', '-t', 'nat']);
  assert.match(saved.stdout, /-A OUTPUT -p tcp -j TSMESH_OUTBOUND/);
  assert.deepEqual(await call('pod-a', 'fd77::c8', 80), { via: 15001, dst: { address: 'fd77::c8', port: 80, family: 6 }, from: a6 });
  assert.deepEqual(await call('pod-b', a6, 8080), { via: 15006, dst: { address: a6, port: 8080, family: 6 }, from: b6 });
  assert.deepEqual(await call('pod-b', a6, 15020), { via: 15020, dst: null, from: b6 });
  assert.deepEqual(await call('pod-a', '::1', 8081), { via: 'pod-a:8081' });
});

void test('a pod without the rules is not intercepted', async () => {
  assert.deepEqual(await call('pod-b', c, 8080), { via: 'pod-c:8080' });
});
