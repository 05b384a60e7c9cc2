// The hand-written schemas against the zod schemas they replaced (test/harness/zod-reference.ts):
// for valid documents and for seeded mutations of them (a field removed, given another type or
// value, an unknown key added, an array made too long), both give the same value, or the same
// problems in the same order with the same paths and messages. The messages reach users (route
// status conditions, start-up errors): a difference is a behaviour change.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isDeepStrictEqual } from 'node:util';
import type { z } from 'zod';
import * as v from './schema.ts';
import * as ref from '../../test/harness/zod-reference.ts';
import { registryFileSchema } from '../registry/model.ts';
import { routeSchema } from '../route/model.ts';
import { clientMessageSchema, serverMessageSchema, serviceDetailShape } from '../discovery/protocol.ts';
import { envSchema } from '../config/settings.ts';
import { probesSchema } from '../admin/app-probes.ts';

/** mulberry32: the same seed, the same cases. */
function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

type Json = unknown;
const clone = <T>(x: T): T => structuredClone(x);

const httpRoute = {
  apiVersion: 'gateway.networking.k8s.io/v1',
  kind: 'HTTPRoute',
  metadata: { name: 'web-split', namespace: 'default', creationTimestamp: '2026-12-01T10:00:00Z', generation: 3 },
  spec: {
    parentRefs: [{ group: '', kind: 'Service', name: 'web', namespace: 'default', port: 80 }, { name: 'gw', sectionName: 'http' }],
    hostnames: ['web.example'],
    rules: [
      {
        name: 'canary',
        matches: [
          { path: { type: 'PathPrefix', value: '/api' }, headers: [{ type: 'Exact', name: 'x-canary', value: '1' }], queryParams: [{ type: 'RegularExpression', name: 'v', value: '[0-9]+' }], method: 'GET' },
          { path: { type: 'Exact', value: '/' } },
        ],
        filters: [
          { type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'x-a', value: '1' }], add: [{ name: 'x-b', value: '2' }], remove: ['x-c'] } },
          { type: 'ResponseHeaderModifier', responseHeaderModifier: { add: [{ name: 'x-d', value: '3' }] } },
          { type: 'URLRewrite', urlRewrite: { hostname: 'web.internal', path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/v2' } } },
          { type: 'RequestMirror', requestMirror: { backendRef: { name: 'shadow', port: 80 }, fraction: { numerator: 1, denominator: 10 } } },
        ],
        backendRefs: [
          { name: 'web-v1', port: 80, weight: 90 },
          { group: '', kind: 'Service', name: 'web-v2', namespace: 'default', port: 80, weight: 10, filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'x-v', value: '2' }] } }] },
        ],
        timeouts: { request: '10s', backendRequest: '2s' },
      },
      { matches: [{ path: { type: 'RegularExpression', value: '/old/.*' } }], filters: [{ type: 'RequestRedirect', requestRedirect: { scheme: 'https', hostname: 'new.example', path: { type: 'ReplaceFullPath', replaceFullPath: '/new' }, port: 443, statusCode: 301 } }] },
    ],
  },
  status: { parents: [] },
};

const grpcRoute = {
  kind: 'GRPCRoute',
  metadata: { name: 'echo', namespace: 'grpc' },
  spec: {
    parentRefs: [{ group: '', kind: 'Service', name: 'echo' }],
    rules: [
      {
        matches: [{ method: { type: 'Exact', service: 'echo.Echo', method: 'Say' }, headers: [{ name: 'x-v', value: '2' }] }, { method: { type: 'RegularExpression', service: 'echo\\..*' } }],
        filters: [{ type: 'RequestMirror', requestMirror: { backendRef: { name: 'echo-shadow', port: 9000 }, percent: 5 } }],
        backendRefs: [{ name: 'echo', port: 9000 }],
      },
    ],
  },
};

const registryFile = {
  services: [
    { name: 'web', namespace: 'default', clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }], selector: { app: 'web' }, annotations: { 'tsmesh.io/retries': '2' }, endpoints: [{ ip: '10.1.0.1', ready: true, pod: 'web-1' }, { ip: 'fd00::2' }] },
    { name: 'api', ports: [{ port: 9000 }] },
  ],
  pods: [
    { name: 'web-1', namespace: 'default', ip: '10.1.0.1', labels: { app: 'web' }, serviceAccount: 'web', meshed: true, ready: true },
    { name: 'db.0', ip: '10.1.0.9' },
  ],
  routes: [httpRoute, grpcRoute],
};

const serverMessages = [
  { type: 'snapshot', version: 4, stream: 's-1', index: [['default/web', '10.96.0.10', [80], ['10.1.0.1']], ['default/api', null, [], []]], services: { 'default/web': { service: registryFile.services[0], pods: registryFile.pods, routes: [httpRoute] }, 'default/gone': null } },
  { type: 'update', version: 5, index: { set: [['default/web', '10.96.0.10', [80, 81], ['10.1.0.1', '10.1.0.2']]], delete: ['default/api'] }, services: { 'default/web': null } },
  { type: 'update', version: 6 },
];

const clientMessages = [
  { type: 'hello', pod: { name: 'web-1', namespace: 'default', ip: '10.1.0.1' }, subscribe: ['default/web', 'default/api'] },
  { type: 'ack', version: 3, subscribe: ['default/db'], unsubscribe: ['default/web'] },
  { type: 'ack', version: 0 },
];

const serviceDetail = { service: registryFile.services[0], pods: registryFile.pods, routes: [httpRoute, grpcRoute] };

const probes = {
  '/app-health/web/readiness': { port: 8080, path: '/ready', scheme: 'HTTP', host: 'localhost', headers: [{ name: 'x-probe', value: '1' }] },
  '/app-health/web/liveness': { port: 8443, scheme: 'HTTPS' },
};

const env = {
  POD_NAME: 'web-1',
  POD_NAMESPACE: 'default',
  POD_IP: '10.1.0.1',
  SERVICE_ACCOUNT: 'web',
  TSMESH_CONTROL_PLANE: 'https://tsmesh-injector.tsmesh-system.svc:8443',
  TSMESH_REGISTRY: '/etc/registry.yaml',
  TSMESH_TRUST_DOMAIN: 'cluster.local',
  TSMESH_OUTBOUND_PORT: '15001',
  TSMESH_ADMIN_PORT: '0',
  TSMESH_BIND_ADDRESS: '0.0.0.0',
  TSMESH_DRAIN_TIMEOUT: '5s',
  TSMESH_MAX_CONNECTIONS: '100',
  TSMESH_MAX_REQUEST_BODY: '10Mi',
  TSMESH_HEADERS_TIMEOUT: '1m30s',
  PATH: '/usr/bin',
};

// Values a field may be given instead of its own: other types, edges of the ranges checked,
// strings near the patterns, the names the tagged unions choose by.
const VALUES: Json[] = [
  undefined, null, true, false, 0, -1, 1, 1.5, 80, 65535, 65536, 1_000_001, 1e20, -1e20, Number.NaN, Number.POSITIVE_INFINITY,
  '', 'x', 'X', 'web', 'Web', '-web', 'web.', 'a'.repeat(63), 'a'.repeat(64), 'a'.repeat(254), 'x'.repeat(4097), '/', '/x', 'x/', ' /x ',
  'http://a', ' https://b:8443 ', 'not a url', 'http://exa\tmple', '2020-01-01T00:00:00Z', '2021-02-29T00:00:00Z', '2024-02-29T23:59:59.5+01:00', '2020-01-01',
  'Exact', 'RegularExpression', 'PathPrefix', 'ReplaceFullPath', 'ReplacePrefixMatch', 'HTTPRoute', 'GRPCRoute', 'RequestMirror', 'URLRewrite', 'RequestRedirect',
  'RequestHeaderModifier', 'ResponseHeaderModifier', 'TCP', 'UDP', 'HTTP', 'HTTPS', 'GET', 'get', 301, 303, 304, 'snapshot', 'update', 'hello', 'ack',
  '10.0.0.1', '::1', '300.1.1.1', 'default/web', 'Default/web', '1s', '500ms', '1m30s', '1d', 'a\nb', 'x-ok', 'bad header', 'gateway.networking.k8s.io/v1beta1',
  [], {}, ['x'], [1], { a: 'b' }, { a: 1 }, [['default/web', null, [], []]],
];
const STRING_VALUES: Json[] = ['', 'abc', '0', '-1', '1.5', '65535', '65536', '0x10', '1e3', ' 12 ', '10s', '1m30s', '250', 'bad', '64Ki', '10Mi', '1.5Mi', '3G',
  'http://x', 'not a url', ' https://cp:8443 ', 'https://a\nb', '10.0.0.1', '::1', 'Cluster.Local', 'cluster.local', '9007199254740993', 'Infinity', '1e400'];

/** Every path in `doc` (objects and arrays included), root first. */
function paths(doc: Json, at: (string | number)[] = [], out: (string | number)[][] = []): (string | number)[][] {
  out.push(at);
  if (Array.isArray(doc)) doc.forEach((x, i) => paths(x, [...at, i], out));
  else if (doc && typeof doc === 'object') for (const [k, x] of Object.entries(doc)) paths(x, [...at, k], out);
  return out;
}

function getAt(doc: Json, path: (string | number)[]): Json {
  let node = doc;
  for (const k of path) node = (node as Record<string | number, Json>)[k];
  return node;
}

/** One mutation of `doc` in place (the root may be replaced: the new root is returned). */
function mutate(doc: Json, rnd: () => number, strings: boolean): Json {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const all = paths(doc);
  const path = pick(all);
  const node = getAt(doc, path);
  const parent = path.length ? getAt(doc, path.slice(0, -1)) : undefined;
  const key = path[path.length - 1];
  const set = (value: Json): Json => {
    if (!path.length) return value;
    (parent as Record<string | number, Json>)[key!] = value;
    return doc;
  };
  const r = rnd();
  if (r < 0.15 && parent && typeof key === 'string') {
    delete (parent as Record<string, Json>)[key];
    return doc;
  }
  if (r < 0.22 && node && typeof node === 'object' && !Array.isArray(node)) {
    (node as Record<string, Json>)[pick(['retry', 'extra', 'name', 'type', 'x'])] = pick(VALUES);
    return doc;
  }
  if (r < 0.27 && Array.isArray(node) && node.length) {
    const n = pick([17, 33, 65, 1001]);
    return set(Array.from({ length: n }, (_, i) => clone(node[i % node.length])));
  }
  if (r < 0.32 && Array.isArray(node)) return set([]);
  if (r < 0.4 && typeof node === 'string') return set(pick([node.toUpperCase(), `${node}.`, `/${node}`, node.slice(1), node + node, ` ${node} `]));
  return set(clone(pick(strings ? STRING_VALUES : VALUES)));
}

/** What a parse gives, in a form both libraries share: the value, or [path, message] per problem. */
function outcome(r: { success: true; data: unknown } | { success: false; error: { issues: readonly { path: readonly PropertyKey[]; message: string }[] } }): unknown {
  return r.success ? { value: r.data } : { issues: r.error.issues.map((i) => [i.path.map((p) => (typeof p === 'symbol' ? String(p) : p)), i.message]) };
}

function compare(name: string, mine: v.Schema<unknown>, theirs: z.ZodType, seeds: readonly Json[], cases: number, strings = false): void {
  const rnd = seeded(17);
  const inputs: Json[] = seeds.map(clone);
  for (let i = 0; i < cases; i++) {
    let doc = clone(seeds[i % seeds.length]);
    const n = 1 + Math.floor(rnd() * 3);
    for (let j = 0; j < n; j++) doc = mutate(doc, rnd, strings);
    inputs.push(doc);
  }
  let failures = 0;
  for (const input of inputs) {
    const want = outcome(theirs.safeParse(clone(input)) as Parameters<typeof outcome>[0]);
    const got = outcome(mine.safeParse(clone(input)));
    // the message (the input, up to 2000 characters) is made only for a case that differs
    if (!isDeepStrictEqual(got, want)) assert.deepStrictEqual(got, want, `${name}: ${JSON.stringify(input)?.slice(0, 2000)}`);
    if ('issues' in (want as object)) failures++;
  }
  // the cases reach both sides: some refused, some accepted
  assert.ok(failures > cases / 50 && failures < inputs.length, `${name}: ${failures} of ${inputs.length} refused`);
}

test('the seeds are valid for both', () => {
  for (const [mine, theirs, seed] of [
    [registryFileSchema, ref.registry.registryFileSchema, registryFile],
    [routeSchema, ref.route.routeSchema, httpRoute],
    [routeSchema, ref.route.routeSchema, grpcRoute],
    [serviceDetailShape, ref.discovery.serviceDetailShape, serviceDetail],
    [probesSchema, ref.appProbes.probesSchema, probes],
    [envSchema, ref.settings.envSchema, env],
  ] as const) {
    const r = (mine as v.Schema<unknown>).safeParse(clone(seed));
    assert.ok(r.success, JSON.stringify(r));
    assert.deepStrictEqual(r.data, (theirs as z.ZodType).parse(clone(seed)));
  }
  for (const m of serverMessages) assert.ok(serverMessageSchema.safeParse(m).success);
  for (const m of clientMessages) assert.ok(clientMessageSchema.safeParse(m).success);
});

test('registry file: same value or same problems as zod', () => compare('registry', registryFileSchema, ref.registry.registryFileSchema, [registryFile], 10_000));
test('routes: same value or same problems as zod', () => compare('route', routeSchema, ref.route.routeSchema, [httpRoute, grpcRoute], 20_000));
test('discovery messages: same value or same problems as zod', () => {
  compare('server message', serverMessageSchema, ref.discovery.serverMessageSchema, serverMessages, 5_000);
  compare('client message', clientMessageSchema, ref.discovery.clientMessageSchema, clientMessages, 5_000);
  compare('service detail', serviceDetailShape, ref.discovery.serviceDetailShape, [serviceDetail], 3_000);
});
test('TSMESH_APP_PROBES: same value or same problems as zod', () => compare('probes', probesSchema, ref.appProbes.probesSchema, [probes], 10_000));
test('environment: same value or same problems as zod', () => compare('env', envSchema, ref.settings.envSchema, [env], 10_000, true));

test('sizes: an oversized array alone, a size check after a wrong item or type, lengths in code points', async () => {
  const { z } = await import('zod');
  const pairs: [v.Schema<unknown>, z.ZodType][] = [
    [v.array(v.string().max(1)).min(2, 'two at least').max(3), z.array(z.string().max(1)).min(2, 'two at least').max(3)],
    [v.array(v.number().int()).min(2), z.array(z.number().int()).min(2)],
    [v.string().min(2).max(3).regex(/^a+$/, 'only a'), z.string().min(2).max(3).regex(/^a+$/, 'only a')],
  ];
  const inputs = [['aa', 'bb', 'cc', 'dd'], [1], ['aa'], [1.5], [1e20], 'xxxx', 'x', '😀😀', '😀😀😀😀', 'aaaa', ['a', 'a', 'a', 'a'], null, 5, { length: 9 }];
  for (const [mine, theirs] of pairs) {
    for (const input of inputs) assert.deepStrictEqual(outcome(mine.safeParse(input)), outcome(theirs.safeParse(input) as Parameters<typeof outcome>[0]), JSON.stringify(input));
  }
});

test('a default is a fresh copy per parse', () => {
  const s = v.object({ list: v.array(v.string()).default([]) });
  const parse = (input: unknown) => {
    const r = s.safeParse(input);
    assert.ok(r.success);
    return r.data;
  };
  const a = parse({});
  a.list.push('x');
  assert.deepEqual(parse({}).list, []);
});

test('records with a __proto__ key (JSON from TSMESH_APP_PROBES or the control plane): kept as data, checked like any key, no prototype set', () => {
  // zod assigns such a key (its result then has that object as prototype); ours defines it
  const probesProto = JSON.parse(`{"__proto__": ${JSON.stringify(probes['/app-health/web/liveness'])}, "/app-health/web/readiness": ${JSON.stringify(probes['/app-health/web/readiness'])}}`) as unknown;
  const got = probesSchema.safeParse(probesProto);
  assert.ok(got.success, JSON.stringify(got));
  assert.equal(Object.getPrototypeOf(got.data), Object.prototype, 'the result is a plain object');
  assert.deepEqual(Object.keys(got.data).sort(), ['/app-health/web/readiness', '__proto__'], 'the key is an own property');
  assert.equal(Object.getOwnPropertyDescriptor(got.data, '__proto__')?.value.port, 8443);

  const bad = probesSchema.safeParse(JSON.parse('{"__proto__": {"port": "eighty"}}'));
  assert.ok(!bad.success);
  assert.deepEqual(bad.error.issues.map((x) => x.path), [['__proto__', 'port']], 'checked, and named, as any other key');

  const selector = JSON.parse('{"__proto__": "x", "app": "web"}') as unknown;
  const reg = registryFileSchema.safeParse({ ...registryFile, services: [{ ...registryFile.services[0]!, selector }] });
  assert.ok(reg.success, JSON.stringify(reg));
  const parsed = reg.data.services[0]!.selector!;
  assert.equal(Object.getPrototypeOf(parsed), Object.prototype);
  assert.equal(Object.getOwnPropertyDescriptor(parsed, '__proto__')?.value, 'x');
  assert.equal(({} as Record<string, unknown>)['port'], undefined, 'Object.prototype untouched');
});
