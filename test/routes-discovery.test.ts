// Mesh routes from Kubernetes: HTTPRoutes in the stand-in API server -> the control plane's
// route watch -> the discovery stream -> a real sidecar, whose next requests follow them; and
// the status the control plane writes back (status.parents, controller tsmesh.io/mesh,
// Accepted and ResolvedRefs) through the status subresource. A cluster without the Gateway API
// CRDs works as before, and starts routing when they are installed.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ServerResponse } from 'node:http';
import { parseAllDocuments } from 'yaml';
import { KubeStandin, type KubeObject } from './harness/kube-standin.ts';
import { eventually, loopbackIP, tempDir, upstream, type LogLine, type Upstream } from './harness/mesh.ts';
import { send } from './harness/client.ts';
import { controlPlane, controlPlaneGet, discoverySidecar, type DiscoSidecar } from './harness/discovery.ts';
import { writeWorkloadIdentity } from '../src/localcluster/identity.ts';
import type { RunningInjector } from '../injector/main.ts';

type Obj = Record<string, unknown>;
const GW = 'gateway.networking.k8s.io';

const service = (name: string, ip: string): KubeObject => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name, namespace: 'default' },
  spec: { clusterIP: ip, selector: { app: name }, ports: [{ name: 'http', port: 80, targetPort: 'http', protocol: 'TCP' }] },
});
const pod = (name: string, ip: string, meshed: boolean): KubeObject => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: 'default', labels: { app: name }, annotations: meshed ? { 'tsmesh.io/status': '{"version":1}' } : {} },
  spec: { serviceAccountName: name, containers: [{ name: 'app', image: 'app' }] },
  status: { podIP: ip, phase: 'Running' },
});
const slice = (name: string, serviceName: string, endpoints: { pod: string; ip: string }[]): KubeObject => ({
  apiVersion: 'discovery.k8s.io/v1',
  kind: 'EndpointSlice',
  metadata: { name, namespace: 'default', labels: { 'kubernetes.io/service-name': serviceName } },
  addressType: 'IPv4',
  ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  endpoints: endpoints.map((e) => ({ addresses: [e.ip], conditions: { ready: true }, targetRef: { kind: 'Pod', name: e.pod, namespace: 'default' } })),
});
const httpRoute = (name: string, rules: unknown[], version = 'v1', status?: Obj): KubeObject => ({
  apiVersion: `${GW}/${version}`,
  kind: 'HTTPRoute',
  metadata: { name, namespace: 'default' },
  spec: { parentRefs: [{ group: '', kind: 'Service', name: 'pod-service', port: 80 }], rules },
  ...(status ? { status } : {}),
});
const to = (name: string, weight?: number) => ({ name, port: 80, ...(weight === undefined ? {} : { weight }) });
const reply = (name: string) => (_req: unknown, res: ServerResponse) => res.end(name);

interface Mesh {
  kube: KubeStandin;
  cp: { injector: RunningInjector; logs: LogLine[] };
  client: DiscoSidecar;
  apps: Upstream[];
  close(): Promise<void>;
}

/** pod-service (both versions), pod-service-v1, pod-service-v2; pod-b's sidecar is the client. */
async function mesh(prepare: (kube: KubeStandin) => void = () => undefined): Promise<Mesh> {
  const kube = await KubeStandin.start();
  prepare(kube);
  const dir = await tempDir();
  const v1 = await upstream(reply('v1'), { port: 8080 });
  const v2 = await upstream(reply('v2'), { port: 8080 });
  const podB = loopbackIP();
  kube.put(service('pod-service', '10.96.7.1'));
  kube.put(service('pod-service-v1', '10.96.7.2'));
  kube.put(service('pod-service-v2', '10.96.7.3'));
  kube.put(pod('pod-a-v1', v1.ip, false));
  kube.put(pod('pod-a-v2', v2.ip, false));
  kube.put(pod('pod-b', podB, true));
  kube.put(slice('pod-service-1', 'pod-service', [{ pod: 'pod-a-v1', ip: v1.ip }, { pod: 'pod-a-v2', ip: v2.ip }]));
  kube.put(slice('pod-service-v1-1', 'pod-service-v1', [{ pod: 'pod-a-v1', ip: v1.ip }]));
  kube.put(slice('pod-service-v2-1', 'pod-service-v2', [{ pod: 'pod-a-v2', ip: v2.ip }]));
  const cp = await controlPlane(kube, 0, { routes: { probeIntervalMs: 100, statusDelayMs: 5, statusRetryMs: 100 } });
  const tls = await writeWorkloadIdentity(cp.injector.ca, join(dir.path, 'pod-b-tls'), { namespace: 'default', serviceAccount: 'pod-b' });
  const client = await discoverySidecar({ name: 'pod-b', ip: podB, app: 'pod-b', controlPlanePort: cp.injector.controlPlane.port, tlsDir: tls, dir: dir.path });
  return {
    kube,
    cp,
    client,
    apps: [v1, v2],
    async close() {
      await client.close();
      await cp.injector.close();
      await Promise.all([v1, v2].map((u) => u.close()));
      await kube.close();
      await dir.remove();
    },
  };
}

/** Which versions answered `n` requests to pod-service (with these headers). */
async function versions(m: Mesh, n: number, headers: Record<string, string> = {}): Promise<Record<string, number>> {
  const seen: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const r = await send(m.client.outboundURL, { headers: { host: 'pod-service', ...headers } });
    const key = r.status === 200 ? r.body.toString() : String(r.status);
    seen[key] = (seen[key] ?? 0) + 1;
  }
  return seen;
}

const ours = (o: KubeObject | undefined): Obj[] => ((o?.status as { parents?: Obj[] } | undefined)?.parents ?? []).filter((p) => p.controllerName === 'tsmesh.io/mesh');
const condition = (entry: Obj | undefined, type: string) => ((entry?.conditions as Obj[] | undefined) ?? []).find((c) => c.type === type);

describe('routes through discovery: the stand-in API -> the control plane -> a sidecar', () => {
  let m: Mesh;
  before(async () => {
    m = await mesh();
    // the sidecar has pod-service loaded (it called it) before routes come and go
    assert.equal((await send(m.client.outboundURL, { headers: { host: 'pod-service' } })).status, 200);
  });
  after(async () => {
    await m?.close();
  });

  test('adding, changing and removing an HTTPRoute apply to the next requests; status is written for each generation', async () => {
    m.kube.put(httpRoute('canary', [{ matches: [{ headers: [{ name: 'x-canary', value: '1' }] }], backendRefs: [to('pod-service-v1')] }, { backendRefs: [to('pod-service-v2')] }]));
    // (before the route, pod-service balances over both versions: wait for the route itself)
    await eventually(() => m.client.sidecar.registry.view.routes.some((r) => r.name === 'canary'), 10_000, 'the route to reach the sidecar');
    assert.deepEqual(await versions(m, 10), { v2: 10 });
    assert.deepEqual(await versions(m, 5, { 'x-canary': '1' }), { v1: 5 });
    await eventually(() => ours(m.kube.get(`${GW}/v1`, 'HTTPRoute', 'default', 'canary')).length === 1, 10_000, 'the status');
    const entry = ours(m.kube.get(`${GW}/v1`, 'HTTPRoute', 'default', 'canary'))[0]!;
    assert.deepEqual(entry.parentRef, { group: '', kind: 'Service', name: 'pod-service', port: 80 });
    assert.deepEqual([condition(entry, 'Accepted')?.status, condition(entry, 'Accepted')?.reason], ['True', 'Accepted']);
    assert.deepEqual([condition(entry, 'ResolvedRefs')?.status, condition(entry, 'ResolvedRefs')?.reason], ['True', 'ResolvedRefs']);
    assert.equal(condition(entry, 'Accepted')?.observedGeneration, 1);

    // changed: everything to v1
    const current = m.kube.get(`${GW}/v1`, 'HTTPRoute', 'default', 'canary')!;
    m.kube.put({ ...current, spec: { ...(current.spec as Obj), rules: [{ backendRefs: [to('pod-service-v1')] }] } });
    await eventually(async () => (await versions(m, 1)).v1 === 1, 10_000, 'the change to reach the sidecar');
    assert.deepEqual(await versions(m, 10), { v1: 10 });
    await eventually(() => condition(ours(m.kube.get(`${GW}/v1`, 'HTTPRoute', 'default', 'canary'))[0], 'Accepted')?.observedGeneration === 2, 10_000, 'the status of generation 2');

    // removed: pod-service as before (both versions behind it)
    m.kube.remove(`${GW}/v1`, 'HTTPRoute', 'default', 'canary');
    await eventually(() => m.client.sidecar.registry.view.routes.length === 0, 10_000, 'the route to go');
    const r = await send(m.client.outboundURL, { headers: { host: 'pod-service' } });
    assert.equal(r.status, 200);
    await eventually(() => m.client.logs.some((l) => l.type === 'access' && l.upstream_service === 'pod-service.default' && l.route_parent === undefined), 5000, 'an unrouted access line');
  });

  test('an invalid route: Accepted False (UnsupportedValue, naming the field), not applied; a missing backend: ResolvedRefs False (BackendNotFound) and 500', async () => {
    m.kube.put(httpRoute('broken', [{ backendRefs: [{ name: 'pod-service-v2' }] }]));
    await eventually(() => ours(m.kube.get(`${GW}/v1`, 'HTTPRoute', 'default', 'broken')).length === 1, 10_000, 'the status');
    const accepted = condition(ours(m.kube.get(`${GW}/v1`, 'HTTPRoute', 'default', 'broken'))[0], 'Accepted')!;
    assert.equal(accepted.status, 'False');
    assert.equal(accepted.reason, 'UnsupportedValue');
    assert.match(String(accepted.message), /spec\.rules\[0\]\.backendRefs\[0\]\.port: a Service backend needs a port/);
    assert.ok(!m.client.sidecar.registry.view.routes.some((r) => r.name === 'broken'), 'an invalid route is not streamed');
    m.kube.remove(`${GW}/v1`, 'HTTPRoute', 'default', 'broken');

    m.kube.put(httpRoute('missing', [{ backendRefs: [to('no-such-service')] }]));
    await eventually(() => ours(m.kube.get(`${GW}/v1`, 'HTTPRoute', 'default', 'missing')).length === 1, 10_000, 'the status');
    const entry = ours(m.kube.get(`${GW}/v1`, 'HTTPRoute', 'default', 'missing'))[0]!;
    assert.equal(condition(entry, 'Accepted')?.status, 'True');
    assert.deepEqual([condition(entry, 'ResolvedRefs')?.status, condition(entry, 'ResolvedRefs')?.reason], ['False', 'BackendNotFound']);
    await eventually(async () => (await versions(m, 1))['500'] === 1, 10_000, 'the route to reach the sidecar');
    // the backend appears: ResolvedRefs turns True and requests go there
    m.kube.put(service('no-such-service', '10.96.7.9'));
    m.kube.put(slice('no-such-service-1', 'no-such-service', [{ pod: 'pod-a-v1', ip: m.apps[0]!.ip }]));
    await eventually(() => condition(ours(m.kube.get(`${GW}/v1`, 'HTTPRoute', 'default', 'missing'))[0], 'ResolvedRefs')?.status === 'True', 10_000, 'ResolvedRefs True');
    await eventually(async () => (await versions(m, 1)).v1 === 1, 10_000, 'requests to the new backend');
    m.kube.remove(`${GW}/v1`, 'HTTPRoute', 'default', 'missing');
  });

  test("another controller's status entry stays; a conflict on the status write reads the route again and retries", async () => {
    const other = { parentRef: { name: 'some-gateway' }, controllerName: 'example.com/gateway', conditions: [{ type: 'Accepted', status: 'True', reason: 'Accepted', message: '', lastTransitionTime: '2026-01-01T00:00:00Z' }] };
    let conflicts = 1;
    const undo = m.kube.use((req) => (req.method === 'PUT' && req.path.endsWith('/httproutes/shared/status') && conflicts-- > 0 ? { status: 409, body: m.kube.status(409, 'Conflict', 'the object has been modified') } : undefined));
    try {
      m.kube.put(httpRoute('shared', [{ backendRefs: [to('pod-service-v1')] }], 'v1', { parents: [other] }));
      await eventually(() => ours(m.kube.get(`${GW}/v1`, 'HTTPRoute', 'default', 'shared')).length === 1, 10_000, 'our status');
      const parents = (m.kube.get(`${GW}/v1`, 'HTTPRoute', 'default', 'shared')!.status as { parents: Obj[] }).parents;
      assert.deepEqual(parents[0], other);
      assert.equal(conflicts, -1, 'the first write met the conflict');
      assert.ok(m.kube.requests.some((r) => r.method === 'GET' && r.path === `/apis/${GW}/v1/namespaces/default/httproutes/shared`), 'read again after the conflict');
    } finally {
      undo();
      m.kube.remove(`${GW}/v1`, 'HTTPRoute', 'default', 'shared');
    }
  });

  test('RBAC (deploy/injector/rbac.yaml) grants exactly the verbs used on routes and their status', () => {
    const used = new Map<string, Set<string>>();
    for (const r of m.kube.requests) {
      const match = new RegExp(`^/apis/${GW}/v[0-9a-z]+/(?:namespaces/[^/]+/)?(httproutes|grpcroutes)(/[^/]+)?(/status)?$`).exec(r.path);
      if (!match) continue;
      const resource = match[1] + (match[3] ?? '');
      const verb = r.method === 'PUT' ? 'update' : r.method === 'PATCH' ? 'patch' : r.query.get('watch') === 'true' ? 'watch' : match[2] ? 'get' : 'list';
      if (!used.has(resource)) used.set(resource, new Set());
      used.get(resource)!.add(verb);
    }
    const role = parseAllDocuments(readFileSync(join(import.meta.dirname, '..', 'deploy', 'injector', 'rbac.yaml'), 'utf8')).map((x) => x.toJS() as Obj).find((x) => x.kind === 'ClusterRole')!;
    const rules = (role.rules as { apiGroups: string[]; resources: string[]; verbs: string[] }[]).filter((r) => r.apiGroups.includes(GW));
    assert.deepEqual([...used.get('httproutes')!].sort(), ['get', 'list', 'watch']);
    assert.deepEqual([...used.get('httproutes/status')!], ['update']);
    for (const [resource, verbs] of used) {
      const granted = rules.filter((r) => r.resources.includes(resource)).flatMap((r) => r.verbs);
      for (const v of verbs) assert.ok(granted.includes(v), `${resource}: ${v} used but not granted`);
    }
    for (const rule of rules) {
      for (const resource of rule.resources) {
        const kind = resource.replace('grpcroutes', 'httproutes'); // the same code path serves both kinds
        assert.deepEqual([...rule.verbs].sort(), [...(used.get(kind) ?? [])].sort(), `${resource}: granted ${rule.verbs.join(',')}`);
      }
    }
  });
});

describe('a cluster without the Gateway API CRDs', () => {
  let m: Mesh;
  const versions3 = [`${GW}/v1`, `${GW}/v1beta1`, `${GW}/v1alpha2`];
  before(async () => {
    m = await mesh((kube) => kube.unserve(...versions3));
  });
  after(async () => {
    await m?.close();
  });

  test('works as before and says once that routes are unavailable; routes apply once the CRDs are installed (HTTPRoute served as v1beta1)', async () => {
    assert.deepEqual(Object.keys(await versions(m, 4)).sort().filter((k) => k !== 'v1' && k !== 'v2'), [], 'requests are answered');
    await new Promise((r) => setTimeout(r, 400)); // a few probes
    const unavailable = m.cp.logs.filter((l) => l.code === 'TSMESH_ROUTES_UNAVAILABLE');
    assert.deepEqual(unavailable.map((l) => l.kind).sort(), ['GRPCRoute', 'HTTPRoute'], 'logged once per kind, however many probes');
    const metrics = (await controlPlaneGet(m.cp.injector.controlPlane.port, '/metrics', m.cp.injector.ca.trustAnchors.join(''))).body;
    assert.match(metrics, /tsmesh_discovery_routes_available\{kind="HTTPRoute"\} 0/);

    // an older Gateway API: HTTPRoute in v1beta1 only
    m.kube.serve(`${GW}/v1beta1`);
    m.kube.put(httpRoute('canary', [{ backendRefs: [to('pod-service-v2')] }], 'v1beta1'));
    await m.kube.waitForWatch((w) => w.path === `/apis/${GW}/v1beta1/httproutes`);
    await eventually(() => m.client.sidecar.registry.view.routes.some((r) => r.name === 'canary'), 10_000, 'the route to reach the sidecar');
    assert.deepEqual(await versions(m, 5), { v2: 5 });
    await eventually(() => ours(m.kube.get(`${GW}/v1beta1`, 'HTTPRoute', 'default', 'canary')).length === 1, 10_000, 'the status, written with v1beta1');
  });
});
