// The routing unit: validation naming fields, the Gateway API's precedence rules within and
// across routes, weights, filters, redirects, rewrites, timeouts, consumer and producer routes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RouteInvalid, validateRoute, type MeshRoute } from './model.ts';
import { RouteTable, modifyHeaders, modifyPath, type Decision, type RequestHead } from './table.ts';

const parent = { namespace: 'shop', name: 'web' };

function http(name: string, rules: unknown[], extra: { namespace?: string; createdAt?: string; parentRefs?: unknown[] } = {}): MeshRoute {
  return validateRoute({
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'HTTPRoute',
    metadata: { name, namespace: extra.namespace ?? 'shop', ...(extra.createdAt ? { creationTimestamp: extra.createdAt } : {}) },
    spec: { parentRefs: extra.parentRefs ?? [{ group: '', kind: 'Service', name: 'web', port: 80 }], rules },
  });
}

const to = (name: string, weight?: number) => ({ name, port: 80, ...(weight === undefined ? {} : { weight }) });

function head(path: string, o: Partial<RequestHead> = {}): RequestHead {
  return { method: 'GET', path, authority: 'web.shop:80', headers: {}, grpc: false, ...o };
}

function table(routes: MeshRoute[], caller = 'shop', port = 80): RouteTable {
  const t = RouteTable.build(routes, parent, port, caller);
  assert.ok(t, 'routes apply');
  return t;
}

const backendOf = (d: Decision): string => (d.type === 'forward' ? d.forward.backend.name : d.type);
const zero = () => 0;

function invalid(raw: unknown): readonly string[] {
  try {
    validateRoute(raw);
  } catch (err) {
    assert.ok(err instanceof RouteInvalid);
    return err.problems;
  }
  assert.fail('expected the route to be refused');
}

test('validation names the field of each problem', () => {
  const problems = invalid({
    kind: 'HTTPRoute',
    metadata: { name: 'r', namespace: 'shop' },
    spec: {
      parentRefs: [{ group: '', kind: 'Service', name: 'web' }],
      rules: [{ matches: [{ path: { type: 'Exact', value: '/a' }, headers: [{ name: 'bad header', value: 'x' }] }], backendRefs: [{ name: 'v1', port: 70000 }] }],
    },
  });
  assert.ok(problems.some((p) => p.startsWith('spec.rules[0].matches[0].headers[0].name:')), problems.join('\n'));
  assert.ok(problems.some((p) => p.startsWith('spec.rules[0].backendRefs[0].port:')), problems.join('\n'));
});

test('validation: semantic problems are reported with their field', () => {
  const base = { kind: 'HTTPRoute', metadata: { name: 'r' }, spec: { parentRefs: [{ group: '', kind: 'Service', name: 'web' }] } };
  const withRules = (rules: unknown[]) => ({ ...base, spec: { ...base.spec, rules } });
  assert.match(invalid(withRules([{ backendRefs: [{ name: 'v1' }] }])).join(), /spec\.rules\[0\]\.backendRefs\[0\]\.port: a Service backend needs a port/);
  assert.match(invalid(withRules([{ matches: [{ path: { type: 'RegularExpression', value: '(' } }] }])).join(), /spec\.rules\[0\]\.matches\[0\]\.path\.value: not a valid regular expression/);
  assert.match(invalid(withRules([{ matches: [{ path: { type: 'Exact', value: 'a' } }] }])).join(), /spec\.rules\[0\]\.matches\[0\]\.path\.value: must start with \//);
  assert.match(
    invalid(withRules([{ matches: [{ path: { type: 'Exact', value: '/a' } }], filters: [{ type: 'URLRewrite', urlRewrite: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/b' } } }], backendRefs: [to('v1')] }])).join(),
    /replacePrefixMatch: needs every match of the rule to be a PathPrefix/,
  );
  assert.match(invalid(withRules([{ timeouts: { request: '1s', backendRequest: '2s' }, backendRefs: [to('v1')] }])).join(), /spec\.rules\[0\]\.timeouts\.backendRequest: must not be longer/);
  assert.match(invalid(withRules([{ timeouts: { request: 'soon' } }])).join(), /spec\.rules\[0\]\.timeouts\.request: must be a Gateway API duration/);
  assert.match(invalid(withRules([{ filters: [{ type: 'ExtensionRef', extensionRef: {} }] }])).join(), /spec\.rules\[0\]\.filters\[0\]/);
  assert.match(invalid(withRules([{ retry: { attempts: 2 } }])).join(), /spec\.rules\[0\]: Unrecognized key/);
  assert.match(invalid({ ...base, spec: { parentRefs: [] } }).join(), /spec\.parentRefs: a route needs a parentRef/);
  assert.match(invalid({ ...base, kind: 'TCPRoute' }).join(), /kind/);
});

test('a parentRef to a Gateway is not the mesh: the route attaches to no Service', () => {
  const r = http('gw', [{ backendRefs: [to('v1')] }], { parentRefs: [{ name: 'my-gateway' }] });
  assert.equal(r.parents.length, 0);
  assert.equal(RouteTable.build([r], parent, 80, 'shop'), undefined);
});

test('parentRef port limits the route to that Service port', () => {
  const r = http('p', [{ backendRefs: [to('v2')] }]);
  assert.ok(RouteTable.build([r], parent, 80, 'shop'));
  assert.equal(RouteTable.build([r], parent, 8080, 'shop'), undefined);
  const any = http('any', [{ backendRefs: [to('v2')] }], { parentRefs: [{ group: '', kind: 'Service', name: 'web' }] });
  assert.ok(RouteTable.build([any], parent, 8080, 'shop'));
});

test('precedence: Exact > RegularExpression > longer PathPrefix > shorter, whatever the order of rules', () => {
  const t = table([
    http('r', [
      { matches: [{ path: { type: 'PathPrefix', value: '/' } }], backendRefs: [to('root')] },
      { matches: [{ path: { type: 'PathPrefix', value: '/api' } }], backendRefs: [to('api')] },
      { matches: [{ path: { type: 'PathPrefix', value: '/api/v2/' } }], backendRefs: [to('api-v2')] },
      { matches: [{ path: { type: 'RegularExpression', value: '/api/v[0-9]+/items/[0-9]+' } }], backendRefs: [to('regex')] },
      { matches: [{ path: { type: 'Exact', value: '/api/v2/items/7' } }], backendRefs: [to('exact')] },
    ]),
  ]);
  assert.equal(backendOf(t.decide(head('/api/v2/items/7'), zero)), 'exact');
  assert.equal(backendOf(t.decide(head('/api/v2/items/8'), zero)), 'regex');
  assert.equal(backendOf(t.decide(head('/api/v2/list?x=1'), zero)), 'api-v2');
  assert.equal(backendOf(t.decide(head('/api/v2'), zero)), 'api-v2', 'a prefix matches the path itself, trailing slash or not');
  assert.equal(backendOf(t.decide(head('/api/v1'), zero)), 'api');
  assert.equal(backendOf(t.decide(head('/apiary'), zero)), 'root', 'prefixes match whole path elements');
  assert.equal(backendOf(t.decide(head('/'), zero)), 'root');
});

test('precedence: method, then more headers, then more query parameters', () => {
  const t = table([
    http('r', [
      { matches: [{ path: { value: '/x' }, queryParams: [{ name: 'a', value: '1' }, { name: 'b', value: '2' }] }], backendRefs: [to('two-queries')] },
      { matches: [{ path: { value: '/x' }, headers: [{ name: 'x-one', value: '1' }] }], backendRefs: [to('one-header')] },
      { matches: [{ path: { value: '/x' }, headers: [{ name: 'x-one', value: '1' }, { name: 'X-Two', value: '2' }] }], backendRefs: [to('two-headers')] },
      { matches: [{ path: { value: '/x' }, method: 'POST' }], backendRefs: [to('post')] },
      { matches: [{ path: { value: '/x' }, queryParams: [{ name: 'a', value: '1' }] }], backendRefs: [to('one-query')] },
    ]),
  ]);
  const all = { 'x-one': '1', 'x-two': '2' };
  assert.equal(backendOf(t.decide(head('/x?a=1&b=2', { method: 'POST', headers: all }), zero)), 'post');
  assert.equal(backendOf(t.decide(head('/x?a=1&b=2', { headers: all }), zero)), 'two-headers');
  assert.equal(backendOf(t.decide(head('/x?a=1&b=2', { headers: { 'x-one': '1' } }), zero)), 'one-header');
  assert.equal(backendOf(t.decide(head('/x?a=1&b=2'), zero)), 'two-queries');
  assert.equal(backendOf(t.decide(head('/x?b=2&a=1'), zero)), 'two-queries');
  assert.equal(backendOf(t.decide(head('/x?a=1'), zero)), 'one-query');
  assert.deepEqual(t.decide(head('/x?a=2'), zero), { type: 'no-match' });
  assert.deepEqual(t.decide(head('/y'), zero), { type: 'no-match' }, 'routes apply and none matches: 404');
});

test('header values: Exact is case-sensitive, names are not; RegularExpression matches the whole value', () => {
  const t = table([
    http('r', [
      { matches: [{ headers: [{ name: 'X-Canary', value: '1' }] }], backendRefs: [to('canary')] },
      { matches: [{ headers: [{ type: 'RegularExpression', name: 'user-agent', value: 'curl/[0-9.]+' }] }], backendRefs: [to('curl')] },
      { backendRefs: [to('stable')] },
    ]),
  ]);
  assert.equal(backendOf(t.decide(head('/', { headers: { 'x-canary': '1' } }), zero)), 'canary');
  assert.equal(backendOf(t.decide(head('/', { headers: { 'x-canary': 'yes' } }), zero)), 'stable');
  assert.equal(backendOf(t.decide(head('/', { headers: { 'user-agent': 'curl/8.5.0' } }), zero)), 'curl');
  assert.equal(backendOf(t.decide(head('/', { headers: { 'user-agent': 'not curl/8.5.0' } }), zero)), 'stable');
});

test('across routes: the older route wins a tie, then namespace/name alphabetically', () => {
  const newer = http('a-newer', [{ matches: [{ path: { value: '/p' } }], backendRefs: [to('newer')] }], { createdAt: '2026-01-02T00:00:00Z' });
  const older = http('z-older', [{ matches: [{ path: { value: '/p' } }], backendRefs: [to('older')] }], { createdAt: '2026-01-01T00:00:00Z' });
  assert.equal(backendOf(table([newer, older]).decide(head('/p'), zero)), 'older');
  const b = http('b', [{ backendRefs: [to('b')] }]);
  const a = http('a', [{ backendRefs: [to('a')] }]);
  assert.equal(backendOf(table([b, a]).decide(head('/'), zero)), 'a');
  // a more specific match in the newer route still wins: age only breaks ties
  const specific = http('specific', [{ matches: [{ path: { value: '/p/q' } }], backendRefs: [to('specific')] }], { createdAt: '2026-02-01T00:00:00Z' });
  assert.equal(backendOf(table([older, specific]).decide(head('/p/q'), zero)), 'specific');
});

test('within a rule the first matching rule of equal precedence wins', () => {
  const t = table([http('r', [{ backendRefs: [to('first')] }, { backendRefs: [to('second')] }])]);
  assert.equal(backendOf(t.decide(head('/'), zero)), 'first');
});

test('weights: shares follow the weights, weight 0 is never chosen', () => {
  const t = table([http('split', [{ backendRefs: [to('v1', 90), to('v2', 10), to('never', 0)] }])]);
  const counts: Record<string, number> = {};
  for (let i = 0; i < 1000; i++) {
    const d = t.decide(head('/'), () => i / 1000);
    counts[backendOf(d)] = (counts[backendOf(d)] ?? 0) + 1;
  }
  assert.deepEqual(counts, { v1: 900, v2: 100 });
});

test('no usable backend: 500 (no backendRefs, all weight 0, not a Service, another namespace)', () => {
  assert.equal(table([http('r', [{}])]).decide(head('/'), zero).type, 'invalid-backend');
  assert.equal(table([http('r', [{ backendRefs: [to('a', 0), to('b', 0)] }])]).decide(head('/'), zero).type, 'invalid-backend');
  const foreign = table([http('r', [{ backendRefs: [{ name: 'x', namespace: 'other', port: 80 }] }])]).decide(head('/'), zero);
  assert.equal(foreign.type, 'invalid-backend');
  assert.match((foreign as { message: string }).message, /ReferenceGrant/);
  const notService = table([http('r', [{ backendRefs: [{ group: 'example.com', kind: 'Bucket', name: 'x', port: 80 }] }])]).decide(head('/'), zero);
  assert.equal(notService.type, 'invalid-backend');
  // half the weight on an invalid backend: that half gets 500, the rest goes through
  const half = table([http('r', [{ backendRefs: [to('ok', 1), { name: 'x', namespace: 'other', port: 80, weight: 1 }] }])]);
  assert.equal(half.decide(head('/'), () => 0.2).type, 'forward');
  assert.equal(half.decide(head('/'), () => 0.7).type, 'invalid-backend');
});

test('filters: request and response header modifiers (rule, then backend), in order set, add, remove', () => {
  const t = table([
    http('r', [
      {
        filters: [
          { type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'X-Set', value: 's' }], add: [{ name: 'x-add', value: 'b' }], remove: ['x-drop'] } },
          { type: 'ResponseHeaderModifier', responseHeaderModifier: { add: [{ name: 'x-served-by', value: 'route' }] } },
        ],
        backendRefs: [{ ...to('v1'), filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'x-backend', value: 'v1' }] } }] }],
      },
    ]),
  ]);
  const d = t.decide(head('/'), zero);
  assert.equal(d.type, 'forward');
  const headers: Record<string, string | string[] | undefined> = { 'x-set': 'old', 'x-add': 'a', 'x-drop': 'gone', keep: 'k' };
  modifyHeaders(headers, d.forward.requestHeaders);
  assert.deepEqual(headers, { 'x-set': 's', 'x-add': 'a,b', keep: 'k', 'x-backend': 'v1' });
  assert.equal(d.forward.responseHeaders.length, 1);
});

test('URLRewrite: ReplacePrefixMatch as the spec tabulates it, ReplaceFullPath, hostname; the query stays', () => {
  const prefix = (value: string) => ({ path: { type: 'PathPrefix' as const, value, re: undefined }, method: undefined, headers: [], query: [], grpc: undefined });
  const cases: [string, string, string, string][] = [
    ['/foo/bar', '/foo', '/xyz', '/xyz/bar'],
    ['/foo/bar', '/foo', '/xyz/', '/xyz/bar'],
    ['/foo', '/foo', '/xyz', '/xyz'],
    ['/foo/', '/foo', '/xyz', '/xyz/'],
    ['/foo/bar', '/foo', '', '/bar'],
    ['/foo/', '/foo', '', '/'],
    ['/foo', '/foo', '', '/'],
    ['/foo', '/foo', '/', '/'],
    ['/bar', '/', '/xyz', '/xyz/bar'],
  ];
  for (const [path, p, replace, want] of cases) assert.equal(modifyPath({ type: 'ReplacePrefixMatch', value: replace }, path, prefix(p)), want, `${path} ${p} -> ${replace}`);
  const t = table([
    http('r', [{ matches: [{ path: { value: '/old/' } }], filters: [{ type: 'URLRewrite', urlRewrite: { hostname: 'new.example', path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/new' } } }], backendRefs: [to('v1')] }]),
  ]);
  const d = t.decide(head('/old/a/b?q=1'), zero);
  assert.equal(d.type, 'forward');
  assert.equal(d.forward.path, '/new/a/b?q=1');
  assert.equal(d.forward.authority, 'new.example');
});

test('RequestRedirect: Location from the filter and the request, status code', () => {
  const redirect = (requestRedirect: object, matches: object[] = []) => table([http('r', [{ matches, filters: [{ type: 'RequestRedirect', requestRedirect }] }])]);
  const loc = (t: RouteTable, path: string, authority = 'web.shop:8080') => {
    const d = t.decide(head(path, { authority }), zero);
    assert.equal(d.type, 'redirect');
    return [d.status, d.location];
  };
  assert.deepEqual(loc(redirect({}), '/a?b=1'), [302, 'http://web.shop:8080/a?b=1']);
  assert.deepEqual(loc(redirect({ scheme: 'https', statusCode: 301 }), '/a'), [301, 'https://web.shop/a'], 'a scheme without a port: its well-known port');
  assert.deepEqual(loc(redirect({ hostname: 'other.shop', port: 80 }), '/a'), [302, 'http://other.shop/a']);
  assert.deepEqual(loc(redirect({ port: 9090 }), '/a', 'web'), [302, 'http://web:9090/a']);
  assert.deepEqual(loc(redirect({ path: { type: 'ReplaceFullPath', replaceFullPath: '/moved' } }), '/a?x'), [302, 'http://web.shop:8080/moved?x']);
  assert.deepEqual(loc(redirect({ path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/v2' } }, [{ path: { value: '/v1' } }]), '/v1/items'), [302, 'http://web.shop:8080/v2/items']);
});

test('RequestMirror: sampled by its share; timeouts map to the deadline and the per-try timeout', () => {
  const t = table([
    http('r', [
      {
        filters: [
          { type: 'RequestMirror', requestMirror: { backendRef: { name: 'shadow', port: 80 } } },
          { type: 'RequestMirror', requestMirror: { backendRef: { name: 'tenth', port: 80 }, fraction: { numerator: 1, denominator: 10 } } },
        ],
        backendRefs: [to('v1')],
        timeouts: { request: '2s', backendRequest: '500ms' },
      },
    ]),
  ]);
  const a = t.decide(head('/'), () => 0.05);
  const b = t.decide(head('/'), () => 0.5);
  assert.ok(a.type === 'forward' && b.type === 'forward');
  assert.deepEqual(a.forward.mirrors.map((m) => m.name), ['shadow', 'tenth']);
  assert.deepEqual(b.forward.mirrors.map((m) => m.name), ['shadow']);
  assert.equal(a.forward.requestTimeoutMs, 2000);
  assert.equal(a.forward.backendTimeoutMs, 500);
  const off = table([http('r', [{ backendRefs: [to('v1')], timeouts: { request: '0s' } }])]).decide(head('/'), zero);
  assert.equal(off.type === 'forward' && off.forward.requestTimeoutMs, null, '0s: no deadline');
});

test('consumer routes in the caller namespace replace the producer routes for that caller only', () => {
  const producer = http('producer', [{ backendRefs: [to('producer-backend')] }]);
  const consumer = http('consumer', [{ backendRefs: [{ name: 'consumer-backend', port: 80 }] }], { namespace: 'client', parentRefs: [{ group: '', kind: 'Service', name: 'web', namespace: 'shop' }] });
  const third = http('third', [{ backendRefs: [{ name: 'x', port: 80 }] }], { namespace: 'elsewhere', parentRefs: [{ group: '', kind: 'Service', name: 'web', namespace: 'shop' }] });
  assert.equal(backendOf(table([producer, consumer, third], 'client').decide(head('/'), zero)), 'consumer-backend');
  assert.equal(backendOf(table([producer, consumer, third], 'shop').decide(head('/'), zero)), 'producer-backend');
  assert.equal(backendOf(table([producer, consumer, third], 'other').decide(head('/'), zero)), 'producer-backend');
  assert.equal(RouteTable.build([consumer, third], parent, 80, 'other'), undefined, 'only routes of a third namespace: none apply');
});

test('GRPCRoute: service and method matching and precedence; HTTPRoutes route gRPC calls when there is no GRPCRoute', () => {
  const grpc = validateRoute({
    kind: 'GRPCRoute',
    metadata: { name: 'g', namespace: 'shop' },
    spec: {
      parentRefs: [{ group: '', kind: 'Service', name: 'web', port: 80 }],
      rules: [
        { matches: [{ method: { service: 'shop.Cart' } }], backendRefs: [to('cart')] },
        { matches: [{ method: { service: 'shop.Cart', method: 'Checkout' } }], backendRefs: [to('checkout')] },
        { matches: [{ method: { type: 'RegularExpression', service: 'shop\\..*', method: 'Get.*' } }], backendRefs: [to('getters')] },
        { backendRefs: [to('rest')] },
      ],
    },
  });
  const web = http('web', [{ backendRefs: [to('http-backend')] }]);
  const t = table([grpc, web]);
  const call = (path: string) => backendOf(t.decide(head(path, { method: 'POST', grpc: true }), zero));
  assert.equal(call('/shop.Cart/Checkout'), 'checkout');
  assert.equal(call('/shop.Cart/Add'), 'cart');
  assert.equal(call('/shop.Catalog/GetItem'), 'getters');
  assert.equal(call('/other.Svc/Do'), 'rest');
  assert.equal(backendOf(t.decide(head('/index.html'), zero)), 'http-backend', 'a plain request goes by the HTTPRoutes');
  const onlyHttp = table([web]);
  assert.equal(backendOf(onlyHttp.decide(head('/shop.Cart/Add', { grpc: true }), zero)), 'http-backend');
  const onlyGrpc = table([grpc]);
  assert.equal(onlyGrpc.decide(head('/index.html'), zero).type, 'none', 'no HTTPRoute: a plain request goes to the Service');
  assert.match(
    invalid({ kind: 'GRPCRoute', metadata: { name: 'g' }, spec: { parentRefs: [{ group: '', kind: 'Service', name: 'web' }], rules: [{ matches: [{ method: { type: 'Exact' } }] }] } }).join(),
    /spec\.rules\[0\]\.matches\[0\]\.method: needs a service or a method/,
  );
});
