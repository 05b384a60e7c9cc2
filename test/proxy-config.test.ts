// Live configuration of a running sidecar: the registry file and the pod's annotations file
// are re-read when they change; bad input is reported with what is wrong and the last good
// state stays in force. Also opaque TCP, round-robin and the admin endpoints.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { createServer as createNetServer, connect, type AddressInfo } from 'node:net';
import { sidecarPair, upstream, writeRegistry, eventually, type Pair, type Upstream } from './harness/mesh.ts';
import { send } from './harness/client.ts';

let pair: Pair;
let second: Upstream;

before(async () => {
  pair = await sidecarPair((req, res) => res.end(`pod-a ${req.url}`));
});
after(async () => {
  await pair.close();
  await second?.close();
});

test('a bad registry file is reported with the bad field and the last good view stays', async () => {
  const before = pair.client.sidecar.registry.view.version;
  await writeFile(pair.registryFile, 'services:\n  - name: pod-service\n    ports: [{ port: 99999 }]\n    selector: { app: web-app }\n');
  await eventually(() => pair.client.logs.some((l) => l.code === 'TSMESH_CONFIG_INVALID'), 5000, 'the registry error in the log');
  const line = pair.client.logs.find((l) => l.code === 'TSMESH_CONFIG_INVALID')!;
  assert.match(JSON.stringify(line.issues), /services\[0\] \(pod-service\)\.ports\[0\]\.port/);
  assert.equal(pair.client.sidecar.registry.view.version, before, 'the view was not replaced');
  assert.equal((await send(pair.proxyURL, { path: '/still' })).body.toString(), 'pod-a /still');

  await writeFile(pair.registryFile, 'services: [ {');
  await eventually(() => pair.client.logs.some((l) => /not valid YAML/.test(String(l.msg))), 5000, 'the YAML error');
  assert.equal((await send(pair.proxyURL)).status, 200);
});

test('a changed registry file is picked up: a new endpoint gets traffic', async () => {
  second = await upstream((req, res) => res.end(`pod-c ${req.url}`), { port: 8080 });
  await writeRegistry(pair.registryFile, {
    services: [{ name: 'pod-service', ports: [{ port: 80, targetPort: 8080 }], selector: { app: 'web-app' } }],
    pods: [pair.pods.a, pair.pods.b, { name: 'pod-c', ip: second.ip, labels: { app: 'web-app' }, meshed: false }],
  });
  const version = pair.client.sidecar.registry.view.version;
  await eventually(() => pair.client.sidecar.registry.view.version > version, 5000, 'the new registry');
  // a new endpoint starts at the balancer's default estimate: chosen as soon as the known
  // one's estimate is higher (under load at once; here within a few hundred ms of calls)
  let calls = 0;
  while (second.requests.length === 0) {
    assert.ok(++calls <= 500, 'the new endpoint got no call');
    assert.equal((await send(pair.proxyURL)).status, 200);
  }
  assert.equal(second.requests[0]!.headers['x-tsmesh-attempt'], '1', 'an unmeshed endpoint is called directly');
});

test('a bad annotation value is logged with its key and the previous value stays', async () => {
  const sc = pair.server;
  await sc.setAnnotations({ 'tsmesh.io/opaque-ports': '9000', 'tsmesh.io/log-level': 'debug' });
  await eventually(() => sc.sidecar.config.pod['opaque-ports'].includes(9000), 5000, 'opaque-ports=9000');
  await sc.setAnnotations({ 'tsmesh.io/opaque-ports': 'ninety', 'tsmesh.io/log-level': 'debug', 'tsmesh.io/timeout': 'soon' });
  await eventually(() => sc.logs.some((l) => l.key === 'tsmesh.io/opaque-ports'), 5000, 'the warning');
  const warning = sc.logs.find((l) => l.key === 'tsmesh.io/opaque-ports')!;
  assert.equal(warning.code, 'TSMESH_ANNOTATION_INVALID');
  assert.match(String(warning.reason), /"ninety" is not a port/);
  assert.ok(sc.logs.some((l) => l.key === 'tsmesh.io/timeout' && /not a duration/.test(String(l.reason))));
  assert.deepEqual(sc.sidecar.config.pod['opaque-ports'], [9000], 'previous value kept');
  const config = (await (await fetch(`${sc.adminURL}/config`)).json()) as { problems: { key: string }[]; annotations: { 'opaque-ports': number[] } };
  assert.deepEqual(config.annotations['opaque-ports'], [9000]);
  assert.ok(config.problems.some((p) => p.key === 'tsmesh.io/opaque-ports'), '/config shows the problem');
});

test('an opaque port is piped as raw TCP by the inbound sidecar', async () => {
  const sc = pair.server;
  // a raw TCP echo in pod-a on a port marked opaque; the client side speaks the mesh preamble
  const echo = createNetServer((s) => s.pipe(s));
  await new Promise<void>((r) => echo.listen(9000, pair.pods.a.ip, r));
  await sc.setAnnotations({ 'tsmesh.io/opaque-ports': '9000' });
  await eventually(() => sc.sidecar.config.pod['opaque-ports'].includes(9000));
  const reply = await new Promise<string>((resolve, reject) => {
    const s = connect(15006, pair.pods.a.ip);
    let data = '';
    s.on('data', (c) => {
      data += c.toString('latin1');
      if (data.length >= 15) s.end();
    });
    s.on('close', () => resolve(data));
    s.on('error', reject);
    s.write('TSMESH/1 9000\r\nnot http at all');
  });
  assert.equal(reply, 'not http at all');
  await eventually(() => sc.logs.some((l) => l.kind === 'tcp' && l.upstream === `${pair.pods.a.ip}:9000`), 5000, 'the TCP access line');
  echo.close();
});

test('the inbound listener refuses a connection with neither a preamble nor an original destination', async () => {
  const closed = await new Promise<string>((resolve) => {
    const s = connect(15006, pair.pods.a.ip);
    let data = '';
    s.on('data', (c) => (data += c.toString()));
    s.on('close', () => resolve(data));
    s.on('error', () => undefined);
    s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
  });
  assert.equal(closed, '', 'nothing was forwarded to the app');
  assert.ok(pair.server.logs.some((l) => l.code === 'TSMESH_INBOUND_NO_TARGET'));
});

test('admin: readiness, liveness, config, metrics', async () => {
  const ready = await fetch(`${pair.client.adminURL}/healthz/ready`);
  assert.equal(ready.status, 200);
  assert.equal((await fetch(`${pair.client.adminURL}/livez`)).status, 200);
  const config = (await (await fetch(`${pair.client.adminURL}/config`)).json()) as { pod: { name: string }; policy: { timeout: number } };
  assert.equal(config.pod.name, 'pod-b');
  assert.equal(config.policy.timeout, 15000);
  const metrics = await (await fetch(`${pair.client.adminURL}/metrics`)).text();
  assert.match(metrics, /process_cpu_seconds_total/);
  assert.equal((await fetch(`${pair.client.adminURL}/nope`)).status, 404);
});

test('an address that is already taken gives a clear start-up error', async () => {
  const blocker = createNetServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
  const port = (blocker.address() as AddressInfo).port;
  const { settingsFromEnv } = await import('../src/config/settings.ts');
  const { startSidecar } = await import('../src/sidecar.ts');
  const { pino } = await import('pino');
  const settings = settingsFromEnv({ TSMESH_BIND_ADDRESS: '127.0.0.1', TSMESH_OUTBOUND_PORT: String(port), TSMESH_INBOUND_PORT: '0', TSMESH_ADMIN_PORT: '0', TSMESH_REGISTRY: pair.registryFile, TSMESH_ANNOTATIONS: '/nonexistent' });
  await assert.rejects(startSidecar(settings, pino({ level: 'silent' })), /EADDRINUSE/);
  blocker.close();
});
