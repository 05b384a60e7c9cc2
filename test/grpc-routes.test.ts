// GRPCRoute in local mode through a real sidecar: a real @grpc/grpc-js client in pod-b (its
// channel to the sidecar's outbound listener, :authority naming the Service) and real grpc-js
// servers as the backends. Service/method and header matches, weights, mirror over HTTP/2,
// and the gRPC status a call gets when no rule matches (UNIMPLEMENTED, x-tsmesh-error no-route).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { stringify } from 'yaml';
import { writeFile } from 'node:fs/promises';
import { eventually, loopbackIP, tempDir, testSidecar, type PodDef, type TestSidecar } from './harness/mesh.ts';

type Msg = { n: number; version?: string };
const ser = (v: Msg) => Buffer.from(JSON.stringify(v));
const de = (b: Buffer) => JSON.parse(b.toString()) as Msg;
const unaryMethod = (service: string, name: string) => ({ path: `/${service}/${name}`, requestStream: false, responseStream: false, requestSerialize: ser, requestDeserialize: de, responseSerialize: ser, responseDeserialize: de, originalName: name });
const CART = { add: unaryMethod('shop.Cart', 'Add'), checkout: unaryMethod('shop.Cart', 'Checkout') };
const ADMIN = { wipe: unaryMethod('shop.Admin', 'Wipe') };
const CartClient = grpc.makeGenericClientConstructor(CART, 'Cart');
const AdminClient = grpc.makeGenericClientConstructor(ADMIN, 'Admin');
type Stub = Record<string, (req: Msg, md: grpc.Metadata, cb: (err: grpc.ServiceError | null, res: Msg) => void) => unknown>;

const received: Record<string, string[]> = { v1: [], v2: [], shadow: [] };

async function server(version: string, ip: string): Promise<grpc.Server> {
  const s = new grpc.Server();
  const answer = (name: string) => (call: grpc.ServerUnaryCall<Msg, Msg>, cb: grpc.sendUnaryData<Msg>) => {
    received[version]!.push(name);
    cb(null, { n: call.request.n + 1, version });
  };
  s.addService(CART, { add: answer('Add'), checkout: answer('Checkout') });
  s.addService(ADMIN, { wipe: answer('Wipe') });
  await new Promise<void>((resolve, reject) => s.bindAsync(`${ip}:8080`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())));
  return s;
}

const route = {
  apiVersion: 'gateway.networking.k8s.io/v1',
  kind: 'GRPCRoute',
  metadata: { name: 'cart', namespace: 'default' },
  spec: {
    parentRefs: [{ group: '', kind: 'Service', name: 'cart', port: 80 }],
    rules: [
      { matches: [{ method: { service: 'shop.Cart', method: 'Checkout' } }], backendRefs: [{ name: 'cart-v2', port: 80 }], filters: [{ type: 'RequestMirror', requestMirror: { backendRef: { name: 'shadow', port: 80 } } }] },
      { matches: [{ method: { service: 'shop.Cart' }, headers: [{ name: 'x-canary', value: '1' }] }], backendRefs: [{ name: 'cart-v2', port: 80 }] },
      { matches: [{ method: { service: 'shop.Cart' } }], backendRefs: [{ name: 'cart-v1', port: 80, weight: 1 }, { name: 'cart-v2', port: 80, weight: 0 }] },
    ],
  },
};

let dir: { path: string; remove(): Promise<void> };
let client: TestSidecar;
const servers: grpc.Server[] = [];
let cart: Stub;
let admin: Stub;

before(async () => {
  dir = await tempDir();
  const ips = { v1: loopbackIP(), v2: loopbackIP(), shadow: loopbackIP() };
  for (const [v, ip] of Object.entries(ips)) servers.push(await server(v, ip));
  const b: PodDef = { name: 'pod-b', ip: loopbackIP(), labels: { app: 'client' }, meshed: true };
  const pods: PodDef[] = [b, ...Object.entries(ips).map(([v, ip]) => ({ name: `cart-${v}`, ip, labels: { app: 'cart', version: v }, meshed: false }))];
  const svc = (name: string, selector: Record<string, string>) => ({ name, ports: [{ name: 'grpc', port: 80, targetPort: 8080 }], selector });
  const registryFile = join(dir.path, 'registry.yaml');
  await writeFile(
    registryFile,
    stringify({ services: [svc('cart', { app: 'cart' }), svc('cart-v1', { version: 'v1' }), svc('cart-v2', { version: 'v2' }), svc('shadow', { version: 'shadow' })], pods, routes: [route] }),
  );
  client = await testSidecar({ pod: b, registryFile, dir: dir.path });
  const { host } = new URL(client.outboundURL);
  const options = { 'grpc.default_authority': 'cart', 'grpc.enable_http_proxy': 0 };
  cart = new CartClient(host, grpc.credentials.createInsecure(), options) as unknown as Stub;
  admin = new AdminClient(host, grpc.credentials.createInsecure(), options) as unknown as Stub;
});

after(async () => {
  (cart as unknown as grpc.Client).close();
  (admin as unknown as grpc.Client).close();
  await client.close();
  for (const s of servers) s.forceShutdown();
  await dir.remove();
});

const call = (stub: Stub, method: string, md: Record<string, string> = {}) =>
  new Promise<{ res?: Msg; err?: grpc.ServiceError }>((resolve) => {
    const metadata = new grpc.Metadata();
    for (const [k, v] of Object.entries(md)) metadata.set(k, v);
    stub[method]!({ n: 1 }, metadata, (err, res) => resolve(err ? { err } : { res }));
  });

test('GRPCRoute: method and header matches choose the backend; weight 0 is never used', async () => {
  for (let i = 0; i < 10; i++) assert.equal((await call(cart, 'add')).res?.version, 'v1');
  assert.equal((await call(cart, 'add', { 'x-canary': '1' })).res?.version, 'v2');
  const checkout = await call(cart, 'checkout');
  assert.deepEqual(checkout.res, { n: 2, version: 'v2' });
});

test('GRPCRoute: RequestMirror sends a copy of the call over HTTP/2; the caller gets the real answer', async () => {
  const before = received.shadow!.length;
  assert.equal((await call(cart, 'checkout')).res?.version, 'v2');
  await eventually(() => received.shadow!.length > before, 5000, 'the mirrored call');
  assert.equal(received.shadow!.at(-1), 'Checkout');
});

test('GRPCRoute: a call no rule matches gets UNIMPLEMENTED from the sidecar (no-route)', async () => {
  const { err } = await call(admin, 'wipe');
  assert.equal(err?.code, grpc.status.UNIMPLEMENTED);
  assert.match(err?.details ?? '', /no-route/);
  assert.equal(received.v1!.includes('Wipe') || received.v2!.includes('Wipe'), false);
});
