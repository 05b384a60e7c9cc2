// Mesh routes (GAMMA HTTPRoute) in local mode, end to end through real sidecars: pod-b's sidecar
// routes what its app sends to pod-service by the routes of the registry file, to pod-a-v1 and
// pod-a-v2 (each behind its own sidecar) and a shadow app; the apps answer with what they saw.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Agent, type IncomingMessage, type ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { stringify } from 'yaml';
import { eventually, loopbackIP, tempDir, testSidecar, upstream, type PodDef, type TestSidecar, type Upstream } from './harness/mesh.ts';
import { send } from './harness/client.ts';

/** Request bodies as each app received them. */
const bodies: Record<string, string[]> = { v1: [], v2: [], shadow: [] };

const echo = (version: string) => (req: IncomingMessage, res: ServerResponse) => {
  if (req.url === '/hang') return; // never answers
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    bodies[version]!.push(Buffer.concat(chunks).toString());
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ version, path: req.url, headers: req.headers, body: Buffer.concat(chunks).toString() }));
  });
};

const parentRef = (name: string) => [{ group: '', kind: 'Service', name, port: 80 }];
const backend = (name: string, weight?: number) => ({ name, port: 80, ...(weight === undefined ? {} : { weight }) });

const canary = {
  apiVersion: 'gateway.networking.k8s.io/v1',
  kind: 'HTTPRoute',
  metadata: { name: 'canary', namespace: 'default' },
  spec: {
    parentRefs: parentRef('pod-service'),
    rules: [
      { matches: [{ headers: [{ name: 'x-canary', value: '1' }] }], backendRefs: [backend('pod-service-v2')] },
      { backendRefs: [backend('pod-service-v1', 90), backend('pod-service-v2', 10)] },
      {
        matches: [{ path: { type: 'PathPrefix', value: '/mirror' } }],
        filters: [{ type: 'RequestMirror', requestMirror: { backendRef: { name: 'shadow', port: 80 } } }],
        backendRefs: [backend('pod-service-v1')],
      },
      { matches: [{ path: { type: 'Exact', value: '/old' } }], filters: [{ type: 'RequestRedirect', requestRedirect: { path: { type: 'ReplaceFullPath', replaceFullPath: '/new' }, statusCode: 301 } }] },
      {
        matches: [{ path: { type: 'PathPrefix', value: '/api' } }],
        filters: [
          { type: 'URLRewrite', urlRewrite: { hostname: 'api.internal', path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/' } } },
          { type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'x-routed', value: 'api' }], remove: ['x-secret'] } },
          { type: 'ResponseHeaderModifier', responseHeaderModifier: { add: [{ name: 'x-route', value: 'api' }] } },
        ],
        backendRefs: [backend('pod-service-v1')],
      },
      { matches: [{ path: { type: 'PathPrefix', value: '/broken' } }], backendRefs: [backend('no-such-service')] },
    ],
  },
};

const strict = {
  kind: 'HTTPRoute',
  metadata: { name: 'strict', namespace: 'default' },
  spec: { parentRefs: parentRef('strict-service'), rules: [{ matches: [{ path: { type: 'Exact', value: '/only' } }], backendRefs: [backend('pod-service-v2')] }] },
};

const slow = {
  kind: 'HTTPRoute',
  metadata: { name: 'slow', namespace: 'default' },
  spec: { parentRefs: parentRef('slow-service'), rules: [{ backendRefs: [backend('pod-service-v1')], timeouts: { request: '300ms' } }] },
};

let dir: { path: string; remove(): Promise<void> };
let registryFile: string;
let v1: Upstream, v2: Upstream, shadow: Upstream;
let client: TestSidecar;
const sidecars: TestSidecar[] = [];
let write: (routes: unknown[]) => Promise<void>;
const agent = new Agent({ keepAlive: true, maxSockets: 8 });

before(async () => {
  dir = await tempDir();
  registryFile = join(dir.path, 'registry.yaml');
  v1 = await upstream(echo('v1'), { port: 8080 });
  v2 = await upstream(echo('v2'), { port: 8080 });
  shadow = await upstream(echo('shadow'), { port: 8080 });
  const pods: PodDef[] = [
    { name: 'pod-a-v1', ip: v1.ip, labels: { app: 'web-app', version: 'v1' }, meshed: true, serviceAccount: 'pod-a' },
    { name: 'pod-a-v2', ip: v2.ip, labels: { app: 'web-app', version: 'v2' }, meshed: true, serviceAccount: 'pod-a' },
    { name: 'shadow', ip: shadow.ip, labels: { app: 'shadow' }, meshed: false },
    { name: 'pod-b', ip: loopbackIP(), labels: { app: 'client' }, meshed: true, serviceAccount: 'pod-b' },
  ];
  const svc = (name: string, selector: Record<string, string>) => ({ name, ports: [{ name: 'http', port: 80, targetPort: 8080 }], selector });
  const services = [
    svc('pod-service', { app: 'web-app' }),
    svc('pod-service-v1', { version: 'v1' }),
    svc('pod-service-v2', { version: 'v2' }),
    svc('shadow', { app: 'shadow' }),
    svc('strict-service', { version: 'v1' }),
    svc('slow-service', { version: 'v1' }),
  ];
  // written whole (rename), so the sidecar never reads a file caught mid-write
  write = async (routes) => {
    await writeFile(`${registryFile}.new`, stringify({ services, pods, routes }));
    await rename(`${registryFile}.new`, registryFile);
  };
  await write([canary, strict, slow]);
  for (const pod of pods.slice(0, 2)) sidecars.push(await testSidecar({ pod, registryFile, dir: dir.path }));
  client = await testSidecar({ pod: pods[3]!, registryFile, dir: dir.path });
  sidecars.push(client);
});

after(async () => {
  agent.destroy();
  await Promise.all(sidecars.map((s) => s.close()));
  await Promise.all([v1, v2, shadow].map((u) => u.close()));
  await dir.remove();
});

const get = (path: string, headers: Record<string, string> = {}, host = 'pod-service') => send(client.outboundURL, { path, headers: { host, ...headers }, agent });
const json = (body: Buffer) => JSON.parse(body.toString()) as { version: string; path: string; headers: Record<string, string>; body: string };

test('a 90/10 split holds within 4 percentage points over 1000 requests; x-canary: 1 always goes to v2', async () => {
  const counts = { v1: 0, v2: 0 };
  for (let i = 0; i < 1000; i += 20) {
    const replies = await Promise.all(Array.from({ length: 20 }, () => get('/split')));
    for (const r of replies) {
      assert.equal(r.status, 200);
      counts[json(r.body).version as 'v1' | 'v2']++;
    }
  }
  // binomial(1000, 0.1): sd 9.5 requests; 40 is more than 4 sd
  assert.ok(Math.abs(counts.v2 - 100) <= 40, `v2 got ${counts.v2} of 1000`);
  assert.equal(counts.v1 + counts.v2, 1000);
  for (let i = 0; i < 20; i++) assert.equal(json((await get('/split', { 'x-canary': '1' })).body).version, 'v2');
  // what went where is in the metrics: destination_service the backend, the route counter names the parent
  const metrics = await (await fetch(`${client.adminURL}/metrics`)).text();
  assert.match(metrics, /tsmesh_route_requests_total\{parent_service="pod-service\.default",route="HTTPRoute\/default\/canary",backend_service="pod-service-v2\.default",response_code="200"\} \d+/);
  assert.match(metrics, /tsmesh_requests_total\{[^}]*destination_service="pod-service-v1\.default"[^}]*response_code="200"/);
});

test('RequestMirror: the shadow app gets a copy (body too); the response is the real backend\'s', async () => {
  const before = shadow.requests.length;
  const r = await send(client.outboundURL, { method: 'POST', path: '/mirror/order', headers: { host: 'pod-service', 'content-type': 'text/plain' }, body: 'one order', agent });
  assert.equal(r.status, 200);
  assert.equal(json(r.body).version, 'v1');
  assert.equal(json(r.body).body, 'one order');
  await eventually(() => shadow.requests.length > before, 5000, 'the mirrored request');
  const copy = shadow.requests.at(-1)!;
  assert.equal(copy.url, '/mirror/order');
  assert.equal(copy.method, 'POST');
  await eventually(() => bodies.shadow!.includes('one order'), 5000, 'the mirrored body');
  // a chunked body, larger than what is held for replay, streams to both
  const big = 'x'.repeat(100_000);
  const chunked = await send(client.outboundURL, { method: 'POST', path: '/mirror/big', headers: { host: 'pod-service' }, body: Readable.from([Buffer.from('start:'), Buffer.from(big), Buffer.from(':end')]), agent });
  assert.equal(chunked.status, 200);
  assert.equal(json(chunked.body).body, `start:${big}:end`);
  await eventually(() => bodies.shadow!.includes(`start:${big}:end`), 5000, 'the mirrored chunked body');
});

test('a mirror that is down changes nothing for the client', async () => {
  await shadow.close();
  try {
    for (let i = 0; i < 5; i++) {
      const r = await get('/mirror/x');
      assert.equal(r.status, 200);
      assert.equal(json(r.body).version, 'v1');
    }
  } finally {
    shadow = await upstream(echo('shadow'), { ip: shadow.ip, port: 8080 });
  }
});

test('RequestRedirect answers with the Location; URLRewrite and header modifiers reach the backend', async () => {
  const moved = await get('/old?x=1');
  assert.equal(moved.status, 301);
  assert.equal(moved.headers.location, 'http://pod-service/new?x=1');
  const api = await get('/api/items/7?q=a', { 'x-secret': 'drop me' });
  assert.equal(api.status, 200);
  const seen = json(api.body);
  assert.equal(seen.path, '/items/7?q=a');
  assert.equal(seen.headers.host, 'api.internal');
  assert.equal(seen.headers['x-routed'], 'api');
  assert.equal(seen.headers['x-secret'], undefined);
  assert.equal(api.headers['x-route'], 'api');
});

test('no matching rule: 404 no-route; a backend Service that does not exist: 500 invalid-backend', async () => {
  const missing = await get('/elsewhere', {}, 'strict-service');
  assert.equal(missing.status, 404);
  assert.equal(missing.headers['x-tsmesh-error'], 'no-route');
  assert.equal(json((await get('/only', {}, 'strict-service')).body).version, 'v2');
  const broken = await get('/broken');
  assert.equal(broken.status, 500);
  assert.equal(broken.headers['x-tsmesh-error'], 'invalid-backend');
  const line = client.logs.find((l) => l.type === 'access' && l.path === '/broken');
  assert.equal(line?.route_parent, 'pod-service.default');
  assert.equal(line?.route, 'HTTPRoute/default/canary');
});

test('timeouts.request is the deadline (504 timeout), in place of the backend\'s 15 s', async () => {
  const r = await get('/hang', {}, 'slow-service');
  assert.equal(r.status, 504);
  assert.equal(r.headers['x-tsmesh-error'], 'timeout');
});

test('a changed registry file applies to the next requests; an invalid route keeps the last good view', async () => {
  const version = client.sidecar.registry.view.version;
  const allV2 = structuredClone(canary);
  allV2.spec.rules[1] = { backendRefs: [backend('pod-service-v2')] };
  await write([allV2, strict]);
  await eventually(() => client.sidecar.registry.view.version > version, 20_000, 'the registry to reload');
  for (let i = 0; i < 10; i++) assert.equal(json((await get('/split')).body).version, 'v2');
  const errors = client.logs.length;
  await write([{ ...strict, spec: { parentRefs: parentRef('strict-service'), rules: [{ backendRefs: [{ name: 'x' }] }] } }]);
  await eventually(() => client.logs.slice(errors).some((l) => l.code === 'TSMESH_CONFIG_INVALID'), 20_000, 'the invalid file to be reported');
  const report = client.logs.slice(errors).find((l) => l.code === 'TSMESH_CONFIG_INVALID')!;
  assert.match(String(report.msg), /routes\[0\] \(strict\)\.spec\.rules\[0\]\.backendRefs\[0\]\.port: a Service backend needs a port/);
  assert.equal(json((await get('/split')).body).version, 'v2', 'the last good routes stay');
  await write([]);
  await eventually(() => client.sidecar.registry.view.routes.length === 0, 20_000, 'the routes to go');
  const r = await get('/split');
  assert.equal(r.status, 200);
  await eventually(() => client.logs.some((l) => l.type === 'access' && l.path === '/split' && l.upstream_service === 'pod-service.default'), 5000, 'the access line');
  const line = client.logs.findLast((l) => l.type === 'access' && l.path === '/split')!;
  assert.equal(line.upstream_service, 'pod-service.default', 'without routes the request goes to pod-service itself');
  assert.equal(line.route_parent, undefined);
});
