// One pipeline per direction (src/outbound/pipeline.ts, src/inbound/pipeline.ts): HTTP/1.1,
// HTTP/2 and WebSocket requests enter through adapters, so what a stage decides holds on every
// path. Through an mTLS pair of real sidecars, with real clients (node:http, node:http2, ws):
//   - the app sees the same identity headers on each protocol: x-forwarded-client-cert as the
//     server sidecar verified it (a forged one is dropped), x-forwarded-for/-proto/-host, the
//     trace context and x-tsmesh-attempt
//   - the access lines on both sidecars have the same fields, and the request metrics the same labels
//   - the allow-list refuses each protocol the same way: 403 forbidden, a TSMESH_FORBIDDEN warning
//     and an access line with the error (before, a WebSocket refused so had no warning)
//   - a WebSocket to an authority no Service has is answered, logged and counted as any other
//     request (before, it had no access line and no metric)
//   - a mesh route applies to a WebSocket upgrade as to any HTTP/1.1 request (before, routes
//     were skipped for upgrades)
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { connect as netConnect } from 'node:net';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { connect as h2Connect, createServer as createH2Server, type Http2Server, type IncomingHttpHeaders } from 'node:http2';
import { parse, stringify } from 'yaml';
import { WebSocket, WebSocketServer } from 'ws';
import { sidecarPair, eventually, type Pair, type LogLine } from './harness/mesh.ts';
import { send } from './harness/client.ts';

const FORGED = 'By=spiffe://evil/ns/x/sa/y;URI=spiffe://evil/ns/x/sa/admin';
const SAMPLED = { 'tsmesh.io/trace-sampling': '1' };

let pair: Pair;
let h2App: Http2Server;
let wss: WebSocketServer;
/** Request headers as the app saw them, per protocol. */
const seen: Record<string, IncomingHttpHeaders> = {};

before(async () => {
  pair = await sidecarPair(
    (req, res) => {
      seen[String(req.headers['x-proto'])] = req.headers;
      res.end('ok');
    },
    {
      mtls: true,
      annotations: { a: SAMPLED, b: SAMPLED },
      services: [
        { name: 'web-h2', ports: [{ port: 81, targetPort: 8081 }], selector: { app: 'web-app' } },
        { name: 'pod-service-direct', ports: [{ port: 80, targetPort: 8080 }], selector: { app: 'web-app' } },
      ],
    },
  );
  // the app's WebSocket side and its HTTP/2 (h2c) side, on pod-a
  wss = new WebSocketServer({ noServer: true });
  pair.app.server.on('upgrade', (req, socket, head) => {
    seen[String(req.headers['x-proto'])] = req.headers;
    wss.handleUpgrade(req, socket, head, (ws) => ws.on('message', (m) => ws.send(m)));
  });
  h2App = createH2Server();
  h2App.on('stream', (stream, headers) => {
    seen[String(headers['x-proto'])] = headers;
    stream.on('error', () => undefined);
    stream.respond({ ':status': 200 });
    stream.end('ok');
  });
  await new Promise<void>((r) => h2App.listen(8081, pair.pods.a.ip, r));
});
after(async () => {
  for (const ws of wss.clients) ws.terminate();
  wss.close();
  await new Promise<void>((r) => h2App.close(() => r()));
  await pair.close();
});

function http1(headers: Record<string, string>): Promise<{ status: number; error: string | undefined }> {
  return send(pair.proxyURL, { path: '/p', headers: { host: 'pod-service', ...headers } }).then((r) => ({ status: r.status, error: r.headers['x-tsmesh-error'] as string | undefined }));
}

function h2(headers: Record<string, string>): Promise<{ status: number; error: string | undefined }> {
  return new Promise((resolve, reject) => {
    const session = h2Connect(pair.proxyURL);
    session.on('error', reject);
    const req = session.request({ ':method': 'GET', ':path': '/p', ':authority': 'web-h2:81', ...headers });
    let head: IncomingHttpHeaders = {};
    req.on('response', (h) => (head = h));
    req.on('data', () => undefined);
    req.on('error', () => undefined);
    req.on('close', () => {
      session.close();
      resolve({ status: Number(head[':status'] ?? 0), error: head['x-tsmesh-error'] as string | undefined });
    });
  });
}

/** Opens a WebSocket through pod-b's sidecar, sends one message and closes; or reports the refusal. */
function ws(headers: Record<string, string>, host = 'pod-service'): Promise<{ status: number; error: string | undefined }> {
  return new Promise((resolve) => {
    const socket = new WebSocket(`ws://${host}/p`, { headers, createConnection: () => netConnect(pair.client.sidecar.outbound.port, pair.pods.b.ip) });
    socket.on('open', () => socket.send('hi'));
    socket.on('message', () => socket.close());
    socket.on('close', () => resolve({ status: 101, error: undefined }));
    socket.on('unexpected-response', (_req, res) => {
      resolve({ status: res.statusCode ?? 0, error: res.headers['x-tsmesh-error'] as string | undefined });
      res.resume();
      socket.terminate();
    });
    socket.on('error', () => undefined);
  });
}

const PROTOCOLS = { 'HTTP/1.1': http1, 'HTTP/2': h2, WebSocket: ws } as const;
type Name = keyof typeof PROTOCOLS;

const accessLines = (logs: LogLine[], proto?: Name) =>
  logs.filter((l) => l.type === 'access' && l.kind === 'http' && (proto === undefined || (proto === 'HTTP/2' ? l.protocol === 'HTTP/2' : l.protocol === 'HTTP/1.1' && (proto === 'WebSocket') === (l.path === '/p' && l.status === 101))));
/** A line's field names; the ones that vary with the request's values are left out. */
const fieldsOf = (l: LogLine | undefined) => Object.keys(l ?? {}).sort();

test('every protocol: the app sees the same identity headers, trace context and attempt header', async () => {
  for (const [name, call] of Object.entries(PROTOCOLS)) {
    const r = await call({ 'x-proto': name, 'x-forwarded-client-cert': FORGED });
    assert.equal(r.status, name === 'WebSocket' ? 101 : 200, name);
    const h = seen[name];
    assert.ok(h, `${name}: the app got the request`);
    assert.equal(h['x-forwarded-client-cert'], 'By=spiffe://cluster.local/ns/default/sa/pod-a;URI=spiffe://cluster.local/ns/default/sa/pod-b', `${name}: x-forwarded-client-cert`);
    assert.equal(String(h['x-forwarded-for']).split(', ').at(-1), pair.pods.b.ip, `${name}: x-forwarded-for`);
    assert.equal(h['x-forwarded-proto'], 'http', `${name}: x-forwarded-proto`);
    assert.equal(h['x-forwarded-host'], name === 'HTTP/2' ? 'web-h2:81' : 'pod-service', `${name}: x-forwarded-host`);
    assert.match(String(h.traceparent), /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/, `${name}: traceparent`);
    assert.equal(h['x-tsmesh-attempt'], '1', `${name}: x-tsmesh-attempt`);
  }
});

test('every protocol: the same access line fields on both sidecars, and the same request metric labels', async () => {
  for (const side of [pair.client, pair.server]) {
    await eventually(() => (['HTTP/1.1', 'HTTP/2', 'WebSocket'] as const).every((p) => accessLines(side.logs, p).length > 0), 5000, 'an access line per protocol');
    const [one, two, upgrade] = (['HTTP/1.1', 'HTTP/2', 'WebSocket'] as const).map((p) => accessLines(side.logs, p)[0]);
    assert.deepEqual(fieldsOf(two), fieldsOf(one), 'HTTP/2 line vs HTTP/1.1 line');
    assert.deepEqual(fieldsOf(upgrade), fieldsOf(one), 'WebSocket line vs HTTP/1.1 line');
    const metrics = await (await fetch(`${side.adminURL}/metrics`)).text();
    const series = metrics.split('\n').filter((l) => l.startsWith('tsmesh_requests_total{'));
    // the same peers on each protocol's series (the service and the code are the request's own)
    const peers = [['pod-service.default', '200'], ['web-h2.default', '200'], ['pod-service.default', '101']].map(([service, code]) => {
      const line = series.find((l) => l.includes(`destination_service="${service}"`) && l.includes(`response_code="${code}"`));
      assert.ok(line, `${service} ${code} in ${series.join('\n')}`);
      return line.replace(/destination_service="[^"]*"|response_code="[^"]*"|\} .*$/g, '');
    });
    assert.match(peers[0]!, /source_workload="client".*destination_workload="web-app".*mtls="true"/);
    assert.deepEqual(peers, Array(3).fill(peers[0]));
  }
});

test('every protocol: the allow-list refuses the same way (403 forbidden, a warning, an access line)', async () => {
  await pair.server.setAnnotations({ ...SAMPLED, 'tsmesh.io/allow': 'ns/default/sa/nobody' });
  await eventually(async () => (await http1({ 'x-proto': 'probe' })).status === 403, 5000, 'the allow-list to apply');
  const before = pair.server.logs.length;
  for (const [name, call] of Object.entries(PROTOCOLS)) {
    const r = await call({ 'x-proto': name });
    assert.deepEqual(r, { status: 403, error: 'forbidden' }, name);
  }
  const logs = pair.server.logs.slice(before);
  await eventually(() => pair.server.logs.slice(before).filter((l) => l.code === 'TSMESH_FORBIDDEN').length >= 3, 5000, 'a warning per protocol');
  assert.deepEqual(
    pair.server.logs.slice(before).filter((l) => l.code === 'TSMESH_FORBIDDEN').map((l) => l.peer),
    Array(3).fill('spiffe://cluster.local/ns/default/sa/pod-b'),
  );
  const refused = accessLines(logs).filter((l) => l.error === 'forbidden');
  assert.deepEqual(refused.map((l) => l.protocol).sort(), ['HTTP/1.1', 'HTTP/1.1', 'HTTP/2']);
  await pair.server.setAnnotations(SAMPLED);
  await eventually(async () => (await http1({ 'x-proto': 'probe' })).status === 200, 5000, 'the allow-list to go');
});

test('a WebSocket to an authority no Service has: 503, an access line and a metric, as any request', async () => {
  const r = await ws({}, 'nowhere.default');
  assert.deepEqual(r, { status: 503, error: 'no-healthy-endpoints' });
  await eventually(() => pair.client.logs.some((l) => l.type === 'access' && l.authority === 'nowhere.default' && l.error === 'no-healthy-endpoints'), 5000, 'the access line');
  const metrics = await (await fetch(`${pair.client.adminURL}/metrics`)).text();
  assert.match(metrics, /tsmesh_requests_total\{direction="outbound",source_workload="client"[^}]*destination_service="unknown"[^}]*response_code="503"\} 1/);
});

test('a mesh route applies to a WebSocket upgrade as to an HTTP/1.1 request (backend, request filters)', async () => {
  const registry = parse(await readFile(pair.registryFile, 'utf8')) as Record<string, unknown>;
  registry.routes = [
    {
      kind: 'HTTPRoute',
      metadata: { name: 'direct', namespace: 'default' },
      spec: {
        parentRefs: [{ group: '', kind: 'Service', name: 'pod-service', port: 80 }],
        rules: [{ filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'x-routed', value: 'direct' }] } }], backendRefs: [{ name: 'pod-service-direct', port: 80 }] }],
      },
    },
  ];
  const version = pair.client.sidecar.registry.view.version;
  await writeFile(`${pair.registryFile}.new`, stringify(registry));
  await rename(`${pair.registryFile}.new`, pair.registryFile);
  await eventually(() => pair.client.sidecar.registry.view.version > version, 5000, 'the registry to reload');
  for (const name of ['HTTP/1.1', 'WebSocket'] as const) {
    const proto = `${name} routed`;
    const r = await PROTOCOLS[name]({ 'x-proto': proto });
    assert.equal(r.status, name === 'WebSocket' ? 101 : 200, proto);
    assert.equal(seen[proto]?.['x-routed'], 'direct', `${proto}: the route's request filter`);
  }
  await eventually(() => accessLines(pair.client.logs).filter((l) => l.route === 'HTTPRoute/default/direct').length === 2, 5000, 'both access lines');
  for (const l of accessLines(pair.client.logs).filter((l) => l.route === 'HTTPRoute/default/direct')) {
    assert.equal(l.route_parent, 'pod-service.default');
    assert.equal(l.upstream_service, 'pod-service-direct.default');
  }
});
