// Mutual TLS between real sidecars: certificates from one CA (TSMESH_TLS_DIR), SPIFFE
// identities checked both ways, strict and permissive inbound, the allow-list, XFCC.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect as tlsConnect } from 'node:tls';
import { connect, createServer as createNetServer } from 'node:net';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { sidecarPair, writeRegistry, eventually, type Pair } from './harness/mesh.ts';
import { send } from './harness/client.ts';

const SA = (name: string) => `spiffe://cluster.local/ns/default/sa/${name}`;
let pair: Pair;

before(async () => {
  pair = await sidecarPair((req, res) => res.end(JSON.stringify({ xfcc: req.headers['x-forwarded-client-cert'] ?? null, url: req.url })), { mtls: true });
});
after(() => pair.close());

/** Sends raw bytes to pod-a's inbound port and returns what came back before the close. */
function raw(bytes: string): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(15006, pair.pods.a.ip);
    let data = '';
    s.on('data', (c) => (data += c.toString()));
    s.on('close', () => resolve(data));
    s.on('error', () => undefined);
    s.write(bytes);
  });
}

test('the app behind a strict sidecar sees the caller in x-forwarded-client-cert; a forged one is replaced', async () => {
  const r = await send(pair.proxyURL, { path: '/who', headers: { 'x-forwarded-client-cert': `By=x;URI=${SA('admin')}` } });
  assert.equal(r.status, 200);
  assert.deepEqual(JSON.parse(r.body.toString()), { xfcc: `By=${SA('pod-a')};URI=${SA('pod-b')}`, url: '/who' });
  await eventually(() => pair.server.logs.some((l) => l.type === 'access' && l.path === '/who' && l.peer === SA('pod-b')), 3000, 'the caller identity in the access log');
});

test('strict: a plaintext mesh connection is refused and reaches nothing', async () => {
  const before = pair.app.requests.length;
  assert.equal(await raw('TSMESH/1 8080\r\nGET /plain HTTP/1.1\r\nHost: x\r\n\r\n'), '');
  assert.equal(pair.app.requests.length, before);
  await eventually(() => pair.server.logs.some((l) => l.code === 'TSMESH_MTLS_REQUIRED'), 3000, 'the refusal logged');
});

test('strict: TLS without a client certificate is refused', async () => {
  const ca = await readFile(join(pair.dir, 'pod-a-tls', 'ca.crt'));
  const result = await new Promise<string>((resolve) => {
    const s = tlsConnect({ host: pair.pods.a.ip, port: 15006, ca, ALPNProtocols: ['tsmesh/1'], checkServerIdentity: () => undefined });
    let data = '';
    s.on('secureConnect', () => s.write('TSMESH/1 8080\r\nGET /nocert HTTP/1.1\r\nHost: x\r\n\r\n'));
    s.on('data', (c) => (data += c.toString()));
    s.on('error', (e) => resolve(`error: ${e.message}`));
    s.on('close', () => resolve(data || 'closed'));
  });
  assert.ok(!result.includes('HTTP/1.1 200'), result);
  assert.ok(!pair.app.requests.some((r) => r.url === '/nocert'), 'the app saw nothing');
  await eventually(() => pair.server.logs.some((l) => l.component === 'mtls' && l.code === 'ERR_TSMESH_PEER_REJECTED' && l.reason === 'NO_CERTIFICATE'), 3000, 'the refusal with its reason');
});

test('openssl s_client without a client certificate gets nothing from a strict inbound', async () => {
  const { spawnSync } = await import('node:child_process');
  const r = spawnSync('openssl', ['s_client', '-connect', `${pair.pods.a.ip}:15006`, '-alpn', 'tsmesh/1', '-quiet'], { input: 'TSMESH/1 8080\r\nGET /openssl HTTP/1.1\r\nHost: x\r\n\r\n', timeout: 3000, encoding: 'utf8' });
  assert.ok(!r.stdout.includes('HTTP/1.1'), r.stdout);
  assert.ok(!pair.app.requests.some((q) => q.url === '/openssl'));
});

test('outbound: an endpoint presenting another SPIFFE ID than the registry says is refused', async () => {
  await writeRegistry(pair.registryFile, {
    services: [{ name: 'pod-service', ports: [{ port: 80, targetPort: 8080 }], selector: { app: 'web-app' } }],
    pods: [{ ...pair.pods.a, serviceAccount: 'payments' }, pair.pods.b],
  });
  await eventually(() => pair.client.sidecar.registry.view.podByIP(pair.pods.a.ip)?.serviceAccount === 'payments', 5000, 'the registry');
  const before = pair.app.requests.length;
  const r = await send(pair.proxyURL, { path: '/impostor' });
  assert.equal(r.status, 502);
  assert.equal(r.headers['x-tsmesh-error'], 'connect-failure');
  assert.match(r.body.toString(), new RegExp(`expected ${SA('payments').replace(/[/.]/g, '\\$&')}`));
  assert.equal(pair.app.requests.length, before, 'nothing was sent to the impostor');
  await writeRegistry(pair.registryFile, {
    services: [{ name: 'pod-service', ports: [{ port: 80, targetPort: 8080 }], selector: { app: 'web-app' } }],
    pods: [pair.pods.a, pair.pods.b],
  });
  await eventually(() => pair.client.sidecar.registry.view.podByIP(pair.pods.a.ip)?.serviceAccount === 'pod-a', 5000, 'the registry back');
});

test('allow-list: an allowed caller passes; another gets 403 forbidden over HTTP and a closed connection over TCP', async () => {
  await pair.server.setAnnotations({ 'tsmesh.io/allow': 'ns/default/sa/pod-b', 'tsmesh.io/opaque-ports': '9000' });
  await eventually(() => pair.server.sidecar.config.pod.allow.length === 1);
  assert.equal((await send(pair.proxyURL, { path: '/allowed' })).status, 200);

  await pair.server.setAnnotations({ 'tsmesh.io/allow': `${SA('frontend')}, ns/other`, 'tsmesh.io/opaque-ports': '9000' });
  await eventually(() => pair.server.sidecar.config.pod.allow.length === 2);
  const denied = await send(pair.proxyURL, { path: '/denied' });
  assert.equal(denied.status, 403);
  assert.equal(denied.headers['x-tsmesh-error'], 'forbidden');
  assert.ok(!pair.app.requests.some((r) => r.url === '/denied'));
  await eventually(() => pair.server.logs.some((l) => l.code === 'TSMESH_FORBIDDEN' && l.peer === SA('pod-b')), 3000, 'the denial logged with the caller');

  // TCP: pod-b's sidecar opens mTLS with the preamble for an opaque port; pod-a's closes it
  const echo = createNetServer((s) => s.pipe(s));
  await new Promise<void>((r) => echo.listen(9000, pair.pods.a.ip, r));
  try {
    const before = pair.server.logs.filter((l) => l.code === 'TSMESH_FORBIDDEN').length;
    // the mesh hop as pod-b's sidecar opens it (its certificate, the preamble of an opaque port)
    const tlsDir = join(pair.dir, 'pod-b-tls');
    const [cert, key, ca] = await Promise.all(['tls.crt', 'tls.key', 'ca.crt'].map((f) => readFile(join(tlsDir, f))));
    const got = await new Promise<string>((resolve) => {
      const s = tlsConnect({ host: pair.pods.a.ip, port: 15006, cert, key, ca, ALPNProtocols: ['tsmesh/1'], checkServerIdentity: () => undefined });
      let data = '';
      s.on('secureConnect', () => s.write('TSMESH/1 9000 tcp\r\nhello'));
      s.on('data', (c) => (data += c.toString()));
      s.on('error', () => resolve(data));
      s.on('close', () => resolve(data));
    });
    assert.equal(got, '', 'the echo never answered');
    await eventually(() => pair.server.logs.filter((l) => l.code === 'TSMESH_FORBIDDEN').length > before, 3000, 'the TCP denial logged');
  } finally {
    echo.close();
    await pair.server.setAnnotations({});
    await eventually(() => pair.server.sidecar.config.pod.allow.length === 0);
  }
});

test('permissive: plaintext from a caller without a certificate is let in, without a caller identity', async () => {
  await pair.server.setAnnotations({ 'tsmesh.io/mtls': 'permissive' });
  await eventually(() => pair.server.sidecar.config.pod.mtls === 'permissive');
  const reply = await raw('TSMESH/1 8080\r\nGET /permissive HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  assert.match(reply, /^HTTP\/1\.1 200/);
  assert.match(reply, /"xfcc":null/);
  assert.equal((await send(pair.proxyURL, { path: '/still-mtls' })).status, 200, 'meshed callers still use mTLS');
  await pair.server.setAnnotations({});
});

test('certificate rotation: new files are picked up while requests keep succeeding', async () => {
  const { writeWorkloadIdentity } = await import('./harness/identity.ts');
  const tlsDir = join(pair.dir, 'pod-b-tls');
  const [cert, key, ca] = await Promise.all(['tls.crt', 'tls.key', 'ca.crt'].map((f) => readFile(join(tlsDir, f))));
  // the serial pod-a's sidecar presents to a new connection
  const presented = () =>
    new Promise<string>((resolve, reject) => {
      const s = tlsConnect({ host: pair.pods.a.ip, port: 15006, cert, key, ca, ALPNProtocols: ['tsmesh/1'], checkServerIdentity: () => undefined });
      s.on('secureConnect', () => {
        resolve(s.getPeerCertificate().serialNumber);
        s.destroy();
      });
      s.on('error', reject);
    });
  const first = await presented();
  const statuses: number[] = [];
  let stop = false;
  const load = (async () => {
    while (!stop) statuses.push((await send(pair.proxyURL, { path: '/rotating' })).status);
  })();
  await new Promise((r) => setTimeout(r, 100));
  await writeWorkloadIdentity(pair.ca!, join(pair.dir, 'pod-a-tls'), { namespace: 'default', serviceAccount: 'pod-a' });
  await eventually(async () => (await presented()) !== first, 5000, 'pod-a to present its new certificate');
  await new Promise((r) => setTimeout(r, 100));
  stop = true;
  await load;
  assert.ok(statuses.length > 5, `${statuses.length} requests during the rotation`);
  assert.deepEqual([...new Set(statuses)], [200], 'no request failed across the rotation');
});
