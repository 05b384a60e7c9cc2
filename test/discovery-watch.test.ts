// The control plane's side of discovery: projections of Services, EndpointSlices and Pods into
// the registry model, and the list+watches against the stand-in API server in its real wire
// format (resume after a dropped stream, relist after 410 Expired, bookmarks), and the RBAC
// rules matching exactly the requests discovery makes.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { KubeStandin, type KubeObject } from './harness/kube-standin.ts';
import { eventually } from './harness/mesh.ts';
import { ClusterState, projectPod, projectService, projectSlice } from '../injector/discovery/cluster.ts';
import { startDiscovery, DiscoveryServer, type Discovery } from '../injector/discovery/index.ts';
import { parseServiceDetail } from '../src/discovery/protocol.ts';

const quiet = pino({ level: 'silent' });
type Obj = Record<string, unknown>;

const svc = (name: string, spec: Obj = {}, annotations: Record<string, string> = {}): KubeObject => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name, namespace: 'shop', annotations },
  spec: { clusterIP: '10.96.0.10', selector: { app: name }, ports: [{ name: 'http', port: 80, targetPort: 'web' }], ...spec },
});
const slice = (name: string, service: string, endpoints: Obj[], ports: Obj[] = [{ name: 'http', port: 8080 }]): KubeObject => ({
  apiVersion: 'discovery.k8s.io/v1',
  kind: 'EndpointSlice',
  metadata: { name, namespace: 'shop', labels: { 'kubernetes.io/service-name': service } },
  addressType: 'IPv4',
  ports,
  endpoints,
});
const pod = (name: string, extra: { annotations?: Record<string, string>; labels?: Record<string, string>; containers?: string[]; sa?: string; phase?: string } = {}): KubeObject => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: 'shop', labels: extra.labels ?? { app: 'web' }, annotations: extra.annotations ?? {} },
  spec: { serviceAccountName: extra.sa ?? 'web', containers: (extra.containers ?? ['app']).map((c) => ({ name: c, image: 'x' })) },
  status: { podIP: '10.244.0.1', phase: extra.phase ?? 'Running' },
});

describe('projections: what discovery keeps of each object', () => {
  test('Services: ExternalName and UDP-only are not routed; headless has no ClusterIP; only tsmesh.io/ annotations', () => {
    assert.equal(projectService(svc('ext', { type: 'ExternalName', externalName: 'example.com' })), undefined);
    assert.equal(projectService(svc('dns', { ports: [{ port: 53, protocol: 'UDP' }] })), undefined);
    const headless = projectService(svc('h', { clusterIP: 'None' }))!;
    assert.equal(headless.clusterIP, undefined);
    const s = projectService(svc('web', {}, { 'tsmesh.io/timeout': '2s', 'kubectl.kubernetes.io/last-applied-configuration': '{"huge":true}' }))!;
    assert.deepEqual(s.annotations, { 'tsmesh.io/timeout': '2s' });
    assert.deepEqual(s.ports, [{ name: 'http', port: 80, targetPort: 'web' }]);
  });

  test('Pods: meshed by the status annotation or the proxy container; only workload labels; service account', () => {
    assert.equal(projectPod(pod('a', { annotations: { 'tsmesh.io/status': '{}' } })).meshed, true);
    assert.equal(projectPod(pod('b', { containers: ['app', 'tsmesh-proxy'] })).meshed, true);
    const plain = projectPod(pod('c', { labels: { app: 'web', 'pod-template-hash': 'abc', team: 'x' }, sa: 'shop-web' }));
    assert.deepEqual([plain.meshed, plain.serviceAccount, plain.labels], [false, 'shop-web', { app: 'web' }]);
  });

  test('EndpointSlices: the service from its label, nil ready is ready, FQDN and unlabelled slices ignored', () => {
    const s = projectSlice(slice('web-1', 'web', [{ addresses: ['10.244.0.1'], targetRef: { kind: 'Pod', name: 'a' } }, { addresses: ['10.244.0.2'], conditions: { ready: false } }, { addresses: [] }]))!;
    assert.equal(s.service, 'shop/web');
    assert.deepEqual(s.endpoints, [{ ip: '10.244.0.1', ready: true, pod: 'a' }, { ip: '10.244.0.2', ready: false, pod: undefined }]);
    assert.equal(projectSlice({ ...slice('f', 'web', []), addressType: 'FQDN' }), undefined);
    assert.equal(projectSlice({ ...slice('u', 'web', []), metadata: { name: 'u', namespace: 'shop' } }), undefined);
  });

  test('a service as registry data: targetPort resolved from the slices, one entry per address, pods joined by targetRef; valid for the sidecar', () => {
    const c = new ClusterState(() => undefined);
    c.upsertService('shop/web', projectService(svc('web', {}, { 'tsmesh.io/retry-attempts': '3' }))!, undefined);
    c.upsertPod('shop/a', projectPod(pod('a', { annotations: { 'tsmesh.io/status': '{}' } })), undefined);
    c.upsertSlice('shop/web-1', projectSlice(slice('web-1', 'web', [{ addresses: ['10.244.0.1'], targetRef: { kind: 'Pod', name: 'a' } }]))!, undefined);
    // The same address in a second slice (a slice being replaced), not ready there.
    c.upsertSlice('shop/web-2', projectSlice(slice('web-2', 'web', [{ addresses: ['10.244.0.1'], conditions: { ready: false } }, { addresses: ['10.244.0.9'] }]))!, undefined);
    const d = c.detail('shop/web')!;
    assert.deepEqual(d.service.ports, [{ name: 'http', port: 80, targetPort: 8080 }]);
    assert.deepEqual(d.service.endpoints, [{ ip: '10.244.0.1', ready: true, pod: 'a' }, { ip: '10.244.0.9', ready: true }]);
    assert.deepEqual(d.pods.map((p) => [p.name, p.ip, p.meshed, p.serviceAccount]), [['a', '10.244.0.1', true, 'web']]);
    assert.deepEqual(parseServiceDetail(JSON.parse(JSON.stringify(d)), 'shop/web').service.annotations, { 'tsmesh.io/retry-attempts': '3' });
    assert.deepEqual(c.indexEntry('shop/web'), ['shop/web', '10.96.0.10', [80], ['10.244.0.1', '10.244.0.9']]);
    assert.equal(c.detail('shop/gone'), null);
    assert.equal(c.indexEntry('shop/gone'), undefined);
  });

  test('what dirties a service: its slices, its pods changing what discovery carries; not pod status churn', () => {
    const c = new ClusterState(() => undefined);
    const a = projectPod(pod('a'));
    c.upsertService('shop/web', projectService(svc('web'))!, undefined);
    c.upsertPod('shop/a', a, undefined);
    c.upsertSlice('shop/web-1', projectSlice(slice('web-1', 'web', [{ addresses: ['10.244.0.1'], targetRef: { kind: 'Pod', name: 'a' } }]))!, undefined);
    assert.deepEqual([...c.takeDirty()], ['shop/web']);
    c.upsertPod('shop/a', projectPod(pod('a', { phase: 'Succeeded' })), a);
    assert.equal(c.dirtyCount, 0, 'a status change discovery does not carry pushes nothing');
    c.upsertPod('shop/a', projectPod(pod('a', { annotations: { 'tsmesh.io/status': '{}' } })), a);
    assert.deepEqual([...c.takeDirty()], ['shop/web'], 'the pod became meshed: its services change');
    c.upsertPod('shop/unrelated', projectPod(pod('unrelated', { sa: 'other' })), undefined);
    assert.equal(c.dirtyCount, 0, 'a pod no slice names');

    // The slice relabelled to another service: its addresses and its pods move with it.
    c.upsertService('shop/cart', projectService(svc('cart', { clusterIP: '10.96.0.11' }))!, undefined);
    c.takeDirty();
    const before = projectSlice(slice('web-1', 'web', [{ addresses: ['10.244.0.1'], targetRef: { kind: 'Pod', name: 'a' } }]))!;
    c.upsertSlice('shop/web-1', projectSlice(slice('web-1', 'cart', [{ addresses: ['10.244.0.1'], targetRef: { kind: 'Pod', name: 'a' } }]))!, before);
    assert.deepEqual([...c.takeDirty()].sort(), ['shop/cart', 'shop/web']);
    assert.deepEqual(c.indexEntry('shop/web')![3], []);
    assert.deepEqual(c.indexEntry('shop/cart')![3], ['10.244.0.1']);
    c.upsertPod('shop/a', projectPod(pod('a', { sa: 'moved' })), projectPod(pod('a', { annotations: { 'tsmesh.io/status': '{}' } })));
    assert.deepEqual([...c.takeDirty()], ['shop/cart'], "the pod's change concerns only the service that now names it");
  });
});

describe('list+watch against the stand-in API server', () => {
  let kube: KubeStandin;
  let d: Discovery;
  let registry: Registry;
  const lists = (path: string) => kube.requests.filter((r) => r.path === path && !r.query.has('watch')).length;
  const metric = async (name: string, labels: Record<string, string>) => {
    const m = (await registry.getMetricsAsJSON()).find((x) => x.name === name);
    return (m?.values as { labels: Record<string, string>; value: number }[] | undefined)?.find((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val))?.value ?? 0;
  };

  before(async () => {
    kube = await KubeStandin.start();
    kube.put(svc('web'));
    kube.put(pod('a'));
    kube.put(slice('web-1', 'web', [{ addresses: ['10.244.0.1'], targetRef: { kind: 'Pod', name: 'a' } }]));
    registry = new Registry();
    d = startDiscovery({ kubeConfig: kube.kubeConfig(), trustDomain: 'cluster.local', log: quiet, registry, server: { pushDelayMs: 1, minPushIntervalMs: 1 }, reflector: { backoffInitialMs: 20, backoffMaxMs: 200 } });
    await d.synced;
    await kube.waitForWatch((w) => w.path === '/api/v1/pods');
    await kube.waitForWatch((w) => w.path === '/apis/discovery.k8s.io/v1/endpointslices');
    await kube.waitForWatch((w) => w.path === '/api/v1/services');
  });
  after(async () => {
    d?.stop();
    await kube?.close();
  });

  test('one list, then one watch per resource, asking for bookmarks; the state is built from the lists', async () => {
    assert.equal(d.server.version, 1);
    assert.deepEqual(d.cluster.indexEntry('shop/web'), ['shop/web', '10.96.0.10', [80], ['10.244.0.1']]);
    for (const path of ['/api/v1/services', '/api/v1/pods', '/apis/discovery.k8s.io/v1/endpointslices']) {
      assert.equal(lists(path), 1, path);
      const w = kube.watches.filter((x) => x.path === path);
      assert.equal(w.length, 1, `one watch on ${path}`);
      assert.equal(w[0]!.bookmarks, true);
    }
  });

  test('a dropped watch resumes from its resourceVersion (no new list) and misses nothing', async () => {
    const v = d.server.version;
    kube.closeWatches();
    kube.put(slice('web-1', 'web', [{ addresses: ['10.244.0.1'] }, { addresses: ['10.244.0.2'] }]));
    await eventually(() => d.cluster.indexEntry('shop/web')![3].includes('10.244.0.2'), 5000, 'the change made while the watch was down');
    assert.equal(lists('/apis/discovery.k8s.io/v1/endpointslices'), 1);
    await eventually(() => d.server.version > v, 5000, 'a push');
  });

  test('bookmarks move the resourceVersion a watch resumes from', async () => {
    await kube.waitForWatch((w) => w.path === '/api/v1/services');
    kube.put(pod('b')); // other resources move the global version on
    kube.put(pod('c'));
    const rv = kube.resourceVersion;
    kube.bookmark();
    await eventually(async () => (await metric('tsmesh_discovery_watch_events_total', { resource: 'services', type: 'BOOKMARK' })) >= 1, 5000, 'the bookmark');
    kube.closeWatches();
    const w = await kube.waitForWatch((x) => x.path === '/api/v1/services');
    assert.equal(w.query.get('resourceVersion'), rv, 'resumed from the bookmark, not from the last Service event');
  });

  test('410 Expired: a new list; what was deleted and added meanwhile is deleted and added', async () => {
    kube.put(svc('cart', { clusterIP: '10.96.0.11' }));
    await eventually(() => d.cluster.indexEntry('shop/cart') !== undefined, 5000, 'cart');
    const before = lists('/api/v1/services');
    kube.closeWatches();
    kube.remove('v1', 'Service', 'shop', 'cart');
    kube.put(svc('pay', { clusterIP: '10.96.0.12' }));
    kube.compact();
    await eventually(() => d.cluster.indexEntry('shop/pay') !== undefined && d.cluster.indexEntry('shop/cart') === undefined, 5000, 'the state after the relist');
    assert.equal(lists('/api/v1/services'), before + 1);
    assert.ok((await metric('tsmesh_discovery_lists_total', { resource: 'services', reason: 'expired' })) >= 1);
  });

  test('an API error on list is retried with backoff', async () => {
    let failing = 2;
    const undo = kube.use((req) => (req.path === '/api/v1/pods' && !req.query.has('watch') && failing-- > 0 ? { status: 500, body: kube.status(500, 'InternalError', 'etcd is sad') } : undefined));
    try {
      kube.closeWatches();
      kube.put(pod('late', { sa: 'late' }));
      kube.compact(); // the watch gets 410, the list fails twice, then succeeds
      await eventually(() => d.cluster.pods.has('shop/late'), 5000, 'the pod after the list succeeded');
      assert.equal(failing, -1);
      assert.ok((await metric('tsmesh_discovery_watch_errors_total', { resource: 'pods' })) >= 2);
    } finally {
      undo();
    }
  });

  test('RBAC (deploy/injector/rbac.yaml) grants discovery exactly list and watch on the resources it requests, and it requests nothing else', () => {
    const paths = new Map([
      ['/api/v1/services', 'services'],
      ['/api/v1/pods', 'pods'],
      ['/apis/discovery.k8s.io/v1/endpointslices', 'endpointslices'],
      ['/apis/gateway.networking.k8s.io/v1/httproutes', 'httproutes'],
      ['/apis/gateway.networking.k8s.io/v1/grpcroutes', 'grpcroutes'],
    ]);
    const used = new Map<string, Set<string>>();
    for (const r of kube.requests) {
      const resource = paths.get(r.path);
      assert.ok(resource, `discovery made a request outside its three collections: ${r.method} ${r.path}`);
      assert.equal(r.method, 'GET');
      const verb = r.query.get('watch') === 'true' ? 'watch' : 'list';
      if (!used.has(resource)) used.set(resource, new Set());
      used.get(resource)!.add(verb);
    }
    const role = parseAllDocuments(readFileSync(join(import.meta.dirname, '..', 'deploy', 'injector', 'rbac.yaml'), 'utf8')).map((x) => x.toJS() as Obj).find((x) => x.kind === 'ClusterRole')!;
    const rules = role.rules as { apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] }[];
    for (const [resource, verbs] of used) {
      const granted = rules.filter((r) => r.resources.includes(resource) && !r.resourceNames).flatMap((r) => r.verbs);
      // routes: also get, used when a status write meets a conflict (test/routes-discovery.test.ts)
      const expected = resource.endsWith('routes') ? [...verbs, 'get'] : [...verbs];
      assert.deepEqual([...new Set(granted)].sort(), expected.sort(), `${resource}: granted ${granted.join(',')}, used ${[...verbs].join(',')}`);
    }
    assert.equal(used.size, 5);
  });
});

test('pushes are coalesced: a burst of changes is one new version', async () => {
  const holder: { server?: DiscoveryServer } = {};
  const cluster = new ClusterState(() => holder.server?.changed());
  const server = new DiscoveryServer({ cluster, synced: () => true, trustDomain: 'cluster.local', log: quiet, pushDelayMs: 30, minPushIntervalMs: 30 });
  holder.server = server;
  try {
    cluster.upsertService('shop/web', projectService(svc('web'))!, undefined);
    server.synced();
    assert.equal(server.version, 1);
    let previous: ReturnType<typeof projectSlice>;
    for (let i = 0; i < 50; i++) {
      const next = projectSlice(slice('web-1', 'web', [{ addresses: [`10.244.0.${i + 1}`] }]))!;
      cluster.upsertSlice('shop/web-1', next, previous);
      previous = next;
    }
    await eventually(() => server.version > 1, 5000, 'the push');
    assert.equal(server.version, 2, '50 changes, one push');
    assert.equal(cluster.dirtyCount, 0);
    assert.deepEqual(cluster.indexEntry('shop/web')![3], ['10.244.0.50']);
  } finally {
    server.close();
  }
});
