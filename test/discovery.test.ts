// Discovery end to end: the stand-in API server (Services, EndpointSlices, Pods, driven by the
// test) -> `tsmesh injector`'s control plane (runInjector with the discovery component, the
// mesh CA, HTTPS with client certificates) -> real sidecars in this process, each connected
// with its mesh certificate -> real upstream apps on loopback addresses.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { request as httpsRequest } from 'node:https';
import type { ServerResponse } from 'node:http';
import { KubeStandin, type KubeObject } from './harness/kube-standin.ts';
import { eventually, loopbackIP, tempDir, upstream, type LogLine, type Upstream } from './harness/mesh.ts';
import { send } from './harness/client.ts';
import { runInjector, type RunningInjector } from '../injector/main.ts';
import { capture, controlPlane, controlPlaneGet, discoverySidecar, lookup, SERVICE_HOST, type DiscoSidecar } from './harness/discovery.ts';
import { discoveryComponent } from '../injector/discovery/index.ts';
import { writeWorkloadIdentity, createCA } from '../src/localcluster/identity.ts';
import { DISCOVERY_PATH } from '../src/discovery/protocol.ts';
import { parseExposition } from '../src/metrics/exposition.ts';

type Obj = Record<string, unknown>;

// ---- Kubernetes objects -------------------------------------------------------------------
const service = (name: string, annotations: Record<string, string> = {}, clusterIP = `10.96.${Math.floor(Math.random() * 250)}.${1 + Math.floor(Math.random() * 250)}`): KubeObject => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name, namespace: 'default', annotations },
  spec: { clusterIP, selector: { app: name }, ports: [{ name: 'http', port: 80, targetPort: 'http', protocol: 'TCP' }] },
});
const pod = (name: string, ip: string, app: string, meshed: boolean): KubeObject => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: 'default', labels: { app }, annotations: meshed ? { 'tsmesh.io/status': '{"version":1}' } : {} },
  spec: { serviceAccountName: name, containers: [{ name: 'app', image: 'app' }, ...(meshed ? [{ name: 'tsmesh-proxy', image: 'tsmesh' }] : [])] },
  status: { podIP: ip, phase: 'Running' },
});
const slice = (name: string, serviceName: string, port: number, endpoints: { pod: string; ip: string; ready?: boolean }[]): KubeObject => ({
  apiVersion: 'discovery.k8s.io/v1',
  kind: 'EndpointSlice',
  metadata: { name, namespace: 'default', labels: { 'kubernetes.io/service-name': serviceName } },
  addressType: 'IPv4',
  ports: [{ name: 'http', port, protocol: 'TCP' }],
  endpoints: endpoints.map((e) => ({ addresses: [e.ip], conditions: { ready: e.ready ?? true }, targetRef: { kind: 'Pod', name: e.pod, namespace: 'default' } })),
});

const reply = (name: string) => (_req: unknown, res: ServerResponse) => res.end(name);

describe('discovery: the stand-in API -> the control plane -> sidecars -> real apps', () => {
  let kube: KubeStandin;
  let cp: { injector: RunningInjector; logs: LogLine[] };
  let dir: { path: string; remove(): Promise<void> };
  let root: string;
  let client: DiscoSidecar; // pod-b, calls pod-service
  let server: DiscoSidecar; // pod-a1's sidecar, meshed
  let app1: Upstream; // behind pod-a1's sidecar
  let app2: Upstream; // pod-a2, unmeshed, added by a test
  let flaky: Upstream; // flaky-service's one pod, unmeshed: always 503
  const podB = loopbackIP();

  before(async () => {
    kube = await KubeStandin.start();
    kube.put({
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'MutatingWebhookConfiguration',
      metadata: { name: 'tsmesh-injector' },
      webhooks: [{ name: 'namespace.inject.tsmesh.io', clientConfig: { service: { name: 'tsmesh-injector', namespace: 'tsmesh-system', path: '/inject', port: 8443 } } }],
    });
    dir = await tempDir();
    app1 = await upstream(reply('a1'), { port: 8080 });
    app2 = await upstream(reply('a2'), { port: 8080 });
    flaky = await upstream((_req, res) => {
      res.statusCode = 503;
      res.end('flaky');
    });
    kube.put(service('pod-service'));
    kube.put(pod('pod-a1', app1.ip, 'pod-service', true));
    kube.put(pod('pod-a2', app2.ip, 'pod-service', false));
    kube.put(pod('pod-b', podB, 'client', true));
    kube.put(slice('pod-service-1', 'pod-service', 8080, [{ pod: 'pod-a1', ip: app1.ip }]));
    kube.put(service('flaky-service', { 'tsmesh.io/retry-on': '5xx', 'tsmesh.io/retry-attempts': '0' }));
    kube.put(pod('flaky-1', flaky.ip, 'flaky-service', false));
    kube.put(slice('flaky-service-1', 'flaky-service', flaky.port, [{ pod: 'flaky-1', ip: flaky.ip }]));
    cp = await controlPlane(kube);
    root = cp.injector.ca.trustAnchors.join('');
    const port = cp.injector.controlPlane.port;
    const identity = (sa: string) => writeWorkloadIdentity(cp.injector.ca, join(dir.path, `${sa}-tls`), { namespace: 'default', serviceAccount: sa });
    server = await discoverySidecar({ name: 'pod-a1', ip: app1.ip, app: 'pod-service', controlPlanePort: port, tlsDir: await identity('pod-a1'), dir: dir.path });
    client = await discoverySidecar({ name: 'pod-b', ip: podB, app: 'client', controlPlanePort: port, tlsDir: await identity('pod-b'), dir: dir.path });
  });
  after(async () => {
    await client?.close();
    await server?.close();
    await cp?.injector.close();
    await Promise.all([app1, app2, flaky].map((u) => u?.close()));
    await kube?.close();
    await dir?.remove();
  });

  const viewHas = (s: DiscoSidecar, ip: string) => s.sidecar.registry.view.services.some((svc) => svc.name === 'pod-service' && svc.endpoints?.some((e) => e.ip === ip));

  test('a sidecar starts with the index only; the first call to a service waits for it (ensureAuthority) and reaches the meshed pod over mTLS', async () => {
    const reg = client.sidecar.registry;
    assert.equal(reg.view.service('pod-service', 'default'), undefined, 'details only after first use');
    const target = await reg.ensureAuthority('pod-service', 'default');
    assert.equal(target?.service.name, 'pod-service');
    assert.equal(target?.port.targetPort, 8080, 'the named targetPort resolved from the EndpointSlice');
    const eps = reg.view.endpoints(target!);
    assert.deepEqual(eps.map((e) => [e.ip, e.pod.meshed, e.pod.serviceAccount]), [[app1.ip, true, 'pod-a1']]);
    assert.equal(await reg.ensureAuthority('nowhere', 'default'), undefined, 'a name no one knows: undefined at once');

    const r = await send(client.outboundURL);
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), 'a1');
    assert.match(String(app1.requests.at(-1)!.headers['x-forwarded-client-cert']), /URI=spiffe:\/\/cluster\.local\/ns\/default\/sa\/pod-b/, 'mTLS with the identity the Pod says');

    // The server side's own service is subscribed without being called (inbound metrics name it).
    await eventually(() => server.sidecar.registry.view.service('pod-service', 'default') !== undefined, 5000, "pod-a1's own service");
    // The control plane sees both sidecars, up to date.
    await eventually(async () => {
      const d = JSON.parse((await controlPlaneGet(cp.injector.controlPlane.port, '/debug/sidecars', root)).body) as { version: number; sidecars: Obj[] };
      return d.sidecars.length === 2 && d.sidecars.every((s) => s.upToDate === true);
    }, 5000, 'both sidecars acknowledged');
    const d = JSON.parse((await controlPlaneGet(cp.injector.controlPlane.port, '/debug/sidecars', root)).body) as { sidecars: Obj[] };
    const b = d.sidecars.find((s) => (s.pod as Obj).name === 'pod-b')!;
    assert.equal(b.spiffeId, 'spiffe://cluster.local/ns/default/sa/pod-b');
    assert.equal(b.subscriptions, 1);
  });

  test('the first HTTP request to a service the sidecar has not loaded yet waits for it and is answered', async () => {
    kube.put(service('late-service'));
    kube.put(slice('late-service-1', 'late-service', 8080, [{ pod: 'pod-a1', ip: app1.ip }]));
    // the index (not the details) reaches every sidecar: wait until pod-b's knows the name
    await eventually(async () => (await client.sidecar.registry.ensureAuthority('nowhere-yet', 'default')) === undefined && client.sidecar.registry.view.service('late-service', 'default') === undefined, 5000, 'the index');
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(client.sidecar.registry.view.service('late-service', 'default'), undefined, 'not loaded before its first use');
    const r = await send(client.outboundURL, { headers: { host: 'late-service' } });
    assert.equal(r.status, 200, `the first request: ${r.body.toString()}`);
    assert.equal(r.body.toString(), 'a1');
    kube.remove('discovery.k8s.io/v1', 'EndpointSlice', 'default', 'late-service-1');
    kube.remove('v1', 'Service', 'default', 'late-service');
    await eventually(async () => {
      const samples = [...parseExposition((await controlPlaneGet(cp.injector.controlPlane.port, '/metrics', root)).body).values()].flatMap((f) => f.samples);
      return samples.find((m) => m.name === 'tsmesh_discovery_services')?.value === 2;
    }, 5000, 'the control plane to forget late-service');
  });

  test('adding an EndpointSlice reaches the connected sidecar and traffic goes to the new pod', async () => {
    await client.sidecar.registry.ensureAuthority('pod-service', 'default');
    kube.put(slice('pod-service-2', 'pod-service', 8080, [{ pod: 'pod-a2', ip: app2.ip }]));
    await eventually(() => viewHas(client, app2.ip), 5000, 'the new endpoint in the client view');
    const eps = client.sidecar.registry.view.endpoints(client.sidecar.registry.view.byAuthority('pod-service', 'default')!);
    assert.equal(eps.find((e) => e.ip === app2.ip)?.pod.meshed, false, 'pod-a2 has no sidecar: called directly');
    const before = app2.requests.length;
    await eventually(async () => (await send(client.outboundURL)).body.toString() === 'a2', 5000, 'a request answered by pod-a2');
    assert.ok(app2.requests.length > before);
  });

  test('removing an EndpointSlice stops traffic to its pod', async () => {
    if (!viewHas(client, app2.ip)) kube.put(slice('pod-service-2', 'pod-service', 8080, [{ pod: 'pod-a2', ip: app2.ip }]));
    await eventually(() => viewHas(client, app2.ip), 5000, 'pod-a2 in the view');
    kube.remove('discovery.k8s.io/v1', 'EndpointSlice', 'default', 'pod-service-2');
    await eventually(() => !viewHas(client, app2.ip), 5000, 'pod-a2 gone from the view');
    const before = app2.requests.length;
    for (let i = 0; i < 10; i++) assert.equal((await send(client.outboundURL)).body.toString(), 'a1');
    assert.equal(app2.requests.length, before, 'no request reached the removed pod');
    // An endpoint that is not ready is not used either.
    kube.put(slice('pod-service-2', 'pod-service', 8080, [{ pod: 'pod-a2', ip: app2.ip, ready: false }]));
    await eventually(() => viewHas(client, app2.ip), 5000, 'pod-a2 back, not ready');
    for (let i = 0; i < 5; i++) assert.equal((await send(client.outboundURL)).body.toString(), 'a1');
    kube.remove('discovery.k8s.io/v1', 'EndpointSlice', 'default', 'pod-service-2');
  });

  test('a Service annotation change changes the retry policy live', async () => {
    const reg = client.sidecar.registry;
    await reg.ensureAuthority('flaky-service', 'default');
    const call = () => send(client.outboundURL, { headers: { host: 'flaky-service' } });
    let before = flaky.requests.length;
    assert.equal((await call()).status, 503);
    assert.equal(flaky.requests.length - before, 1, 'retry-attempts 0: one try');
    const version = reg.view.version;
    const svc = kube.get('v1', 'Service', 'default', 'flaky-service')!;
    kube.put({ ...svc, metadata: { ...svc.metadata, annotations: { 'tsmesh.io/retry-on': '5xx', 'tsmesh.io/retry-attempts': '2' } } });
    await eventually(() => reg.view.version > version && reg.view.service('flaky-service', 'default')?.annotations['tsmesh.io/retry-attempts'] === '2', 5000, 'the new annotation');
    before = flaky.requests.length;
    assert.equal((await call()).status, 503);
    assert.equal(flaky.requests.length - before, 3, 'retry-attempts 2: three tries');
    assert.deepEqual(flaky.requests.slice(-3).map((r) => r.headers['x-tsmesh-attempt']), ['1', '2', '3']);
  });

  test('the control plane restarting while requests flow loses none; the sidecar reconnects and catches up on what changed meanwhile', async () => {
    const reg = client.sidecar.registry;
    await reg.ensureAuthority('pod-service', 'default');
    const port = cp.injector.controlPlane.port;
    const snapshots = () => client.logs.filter((l) => l.msg === 'discovery: snapshot applied').length;
    const before = snapshots();
    let stop = false;
    const results: number[] = [];
    const load = (async () => {
      while (!stop) results.push((await send(client.outboundURL)).status);
    })();
    await eventually(() => results.length >= 5, 5000, 'requests flowing');
    await cp.injector.close();
    // While it is away: calls keep working from the last good view, and the cluster changes.
    const during = results.length;
    await eventually(() => results.length >= during + 5, 5000, 'requests flowing without a control plane');
    kube.put(slice('pod-service-2', 'pod-service', 8080, [{ pod: 'pod-a2', ip: app2.ip }]));
    cp = await controlPlane(kube, port);
    await eventually(() => snapshots() > before, 10_000, 'a new snapshot from the new control plane');
    await eventually(() => viewHas(client, app2.ip), 5000, 'the change made during the outage');
    const after = results.length;
    await eventually(() => results.length >= after + 5, 5000, 'requests after the restart');
    stop = true;
    await load;
    assert.ok(results.length > 15);
    assert.deepEqual(results.filter((s) => s !== 200), [], 'every request answered 200');
    assert.equal(client.sidecar.registry.loaded, true);
    kube.remove('discovery.k8s.io/v1', 'EndpointSlice', 'default', 'pod-service-2');
    await eventually(() => !viewHas(client, app2.ip), 5000, 'pod-a2 gone again');
  });

  test('the control plane: metrics; a connection without a mesh certificate, or with one from another CA, is refused', async () => {
    const port = cp.injector.controlPlane.port;
    await eventually(async () => {
      const d = JSON.parse((await controlPlaneGet(port, '/debug/sidecars', root)).body) as { sidecars: Obj[] };
      return d.sidecars.length === 2 && d.sidecars.every((s) => s.upToDate === true);
    }, 10_000, 'both sidecars connected and current');
    const metrics = [...parseExposition((await controlPlaneGet(port, '/metrics', root)).body).values()].flatMap((f) => f.samples);
    const value = (name: string, labels: Record<string, string> = {}) => metrics.find((m) => m.name === name && Object.entries(labels).every(([k, v]) => m.labels[k] === v))?.value;
    assert.equal(value('tsmesh_discovery_streams', { state: 'current' }), 2);
    assert.equal(value('tsmesh_discovery_services'), 2);
    assert.ok((value('tsmesh_discovery_sent_bytes_total') ?? 0) > 0);

    const upgrade = (extra: { cert?: string; key?: string }) =>
      new Promise<number>((resolve, reject) => {
        const req = httpsRequest({ host: SERVICE_HOST, port, path: DISCOVERY_PATH, ca: root, lookup, agent: false, headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', 'sec-websocket-protocol': 'tsmesh-discovery.v1' }, ...extra });
        req.on('response', (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on('upgrade', (res, socket) => {
          socket.destroy();
          resolve(res.statusCode ?? 0);
        });
        req.on('error', reject);
        req.end();
      });
    assert.equal(await upgrade({}), 401, 'no client certificate');
    const other = await createCA({ trustDomain: 'cluster.local' });
    const foreign = await writeWorkloadIdentity(other, join(dir.path, 'foreign-tls'), { namespace: 'default', serviceAccount: 'x' });
    const { readFile } = await import('node:fs/promises');
    assert.equal(await upgrade({ cert: await readFile(join(foreign, 'tls.crt'), 'utf8'), key: await readFile(join(foreign, 'tls.key'), 'utf8') }), 401, 'a certificate from another CA');
    const mine = join(dir.path, 'pod-b-tls');
    assert.equal(await upgrade({ cert: await readFile(join(mine, 'tls.crt'), 'utf8'), key: await readFile(join(mine, 'tls.key'), 'utf8') }), 101, 'the mesh certificate');
    assert.ok(cp.logs.some((l) => /discovery connection refused/.test(l.msg) && l.reason === 'untrusted-certificate'));
  });
});

describe('discovery in the sidecar: the index, subscriptions on demand, dropping unused ones, slow readers', () => {
  let kube: KubeStandin;
  let cp: { injector: RunningInjector; logs: LogLine[] };
  let dir: { path: string; remove(): Promise<void> };
  let sidecar: DiscoSidecar;
  const ownIP = loopbackIP();

  before(async () => {
    kube = await KubeStandin.start();
    dir = await tempDir();
    // 30 services of 3 endpoints each; the sidecar's pod is behind one of them.
    for (let i = 0; i < 30; i++) {
      kube.put(service(`svc-${i}`, {}, `10.96.1.${i + 1}`));
      const ips = [0, 1, 2].map((j) => `10.244.${i}.${j + 1}`);
      ips.forEach((ip, j) => kube.put(pod(`svc-${i}-${j}`, ip, `svc-${i}`, j === 0)));
      kube.put(slice(`svc-${i}-1`, `svc-${i}`, 8080, ips.map((ip, j) => ({ pod: `svc-${i}-${j}`, ip }))));
    }
    kube.put(service('me', {}, '10.96.2.1'));
    kube.put(pod('me-0', ownIP, 'me', true));
    kube.put(slice('me-1', 'me', 8080, [{ pod: 'me-0', ip: ownIP }]));
    const { logger, lines } = capture();
    const injector = await runInjector({
      env: { TSMESH_INJECTOR_PORT: '0' },
      kubeConfig: kube.kubeConfig(),
      logger,
      host: '127.0.0.1',
      // Every push finds the sidecar "too slow": it converges through snapshots only.
      routes: [discoveryComponent({ server: { pushDelayMs: 5, minPushIntervalMs: 20, maxBufferedBytes: -1 } })],
    });
    cp = { injector, logs: lines };
    const tls = await writeWorkloadIdentity(injector.ca, join(dir.path, 'me-tls'), { namespace: 'default', serviceAccount: 'me-0' });
    sidecar = await discoverySidecar({ name: 'me-0', ip: ownIP, app: 'me', controlPlanePort: injector.controlPlane.port, tlsDir: tls, dir: dir.path, idleMs: 400 });
  });
  after(async () => {
    await sidecar?.close();
    await cp?.injector.close();
    await kube?.close();
    await dir?.remove();
  });

  test('the sidecar holds the index of every service, and details only of its own service until it calls others', async () => {
    const config = (await (await fetch(`${sidecar.adminURL}/config`)).json()) as { registry: { services: number; discovery: { indexedServices: number; subscriptions: number; connected: boolean } } };
    assert.equal(config.registry.discovery.indexedServices, 31);
    assert.equal(config.registry.discovery.connected, true);
    await eventually(() => sidecar.sidecar.registry.view.service('me', 'default') !== undefined, 5000, 'its own service');
    assert.deepEqual(sidecar.sidecar.registry.view.services.map((s) => s.name), ['me']);
  });

  test('ensureAddress: a ClusterIP:port and a pod IP load their service; an unknown address or port is undefined at once', async () => {
    const reg = sidecar.sidecar.registry;
    const byVip = await reg.ensureAddress('10.96.1.4', 80);
    assert.ok(byVip && 'target' in byVip && byVip.target.service.name === 'svc-3');
    assert.equal(reg.view.endpoints(byVip.target).length, 3);
    const byPod = await reg.ensureAddress('10.244.7.1', 8080);
    assert.ok(byPod && 'pod' in byPod && byPod.pod.name === 'svc-7-0' && byPod.pod.meshed);
    assert.equal(await reg.ensureAddress('10.96.1.4', 81), undefined, 'a port the service does not have');
    assert.equal(await reg.ensureAddress('192.0.2.1', 80), undefined, 'nothing in the cluster: passes through');
    assert.ok(reg.view.service('svc-3', 'default') && reg.view.service('svc-7', 'default'));
  });

  test('a lookup miss with no one waiting subscribes in the background', async () => {
    const reg = sidecar.sidecar.registry;
    assert.equal(reg.view.byAuthority('svc-12.default.svc.cluster.local', 'x'), undefined);
    await eventually(() => reg.view.byAuthority('svc-12.default.svc.cluster.local', 'x') !== undefined, 5000, 'svc-12 loaded after the miss');
  });

  test('subscriptions unused for idleMs are dropped (and the control plane stops sending them); its own service stays', async () => {
    const reg = sidecar.sidecar.registry;
    await reg.ensureAuthority('svc-20', 'default');
    assert.ok(reg.view.service('svc-20', 'default'));
    await eventually(() => reg.view.services.length === 1, 10_000, 'only its own service left');
    assert.equal(reg.view.services[0]!.name, 'me');
    await eventually(async () => {
      const d = JSON.parse((await controlPlaneGet(cp.injector.controlPlane.port, '/debug/sidecars', cp.injector.ca.trustAnchors.join(''))).body) as { sidecars: Obj[] };
      return d.sidecars[0]?.subscriptions === 1;
    }, 5000, 'the control plane to drop the subscriptions');
    // Used again: subscribed again, with what changed meanwhile.
    kube.put(slice('svc-20-2', 'svc-20', 8080, [{ pod: 'extra', ip: '10.244.20.9' }]));
    assert.ok(await reg.ensureAuthority('svc-20', 'default'));
    await eventually(() => reg.view.endpoints(reg.view.byAuthority('svc-20', 'default')!).some((e) => e.ip === '10.244.20.9'), 5000, 'the new endpoint');
  });

  test('a sidecar too slow for updates gets snapshots instead, and converges', async () => {
    const reg = sidecar.sidecar.registry;
    const target = await reg.ensureAuthority('svc-5', 'default');
    assert.ok(target);
    const snapshots = () => sidecar.logs.filter((l) => l.msg === 'discovery: snapshot applied').length;
    const before = snapshots();
    kube.put(slice('svc-5-2', 'svc-5', 8080, [{ pod: 'new', ip: '10.244.5.9' }]));
    await eventually(() => {
      const t = reg.view.byAuthority('svc-5', 'default');
      return t !== undefined && reg.view.endpoints(t).some((e) => e.ip === '10.244.5.9');
    }, 5000, 'the change, by snapshot');
    assert.ok(snapshots() > before);
    assert.ok(cp.logs.some((l) => /too slow for discovery updates/.test(l.msg)));
  });
});
