// Test harness for the sidecar on loopback: pods are distinct 127.x addresses (Linux routes all
// of 127/8 to lo), so each pod's sidecar can use the contract's inbound port 15006 as in a
// cluster, and test files running in parallel do not collide.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { mkdtemp, writeFile, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { stringify } from 'yaml';
import { pino } from 'pino';
import { startSidecar, type Sidecar } from '../../src/sidecar.ts';
import { settingsFromEnv } from '../../src/config/settings.ts';
import { formatPodInfo } from '../../src/config/podinfo.ts';
import type { AddressInfo } from 'node:net';
import { createCA, writeWorkloadIdentity, type CA } from './identity.ts';

const used = new Set<string>();
/** A fresh loopback address for a test pod. */
export function loopbackIP(): string {
  for (;;) {
    const ip = `127.${1 + Math.floor(Math.random() * 250)}.${Math.floor(Math.random() * 255)}.${2 + Math.floor(Math.random() * 250)}`;
    if (!used.has(ip)) {
      used.add(ip);
      return ip;
    }
  }
}

export interface Upstream {
  readonly ip: string;
  readonly port: number;
  readonly server: Server;
  /** Every request the app received (headers as seen by the app). */
  readonly requests: IncomingMessage[];
  /** TCP connections the app accepted. */
  connections: number;
  close(): Promise<void>;
}

/** An app server on `ip` (a fresh loopback address by default) answering with `handler`. */
export async function upstream(handler: (req: IncomingMessage, res: ServerResponse) => void, options: { ip?: string; port?: number } = {}): Promise<Upstream> {
  const ip = options.ip ?? loopbackIP();
  const requests: IncomingMessage[] = [];
  const server = createServer((req, res) => {
    requests.push(req);
    handler(req, res);
  });
  const u = {
    ip,
    port: 0,
    server,
    requests,
    connections: 0,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
  server.on('connection', () => u.connections++);
  server.on('upgrade', () => undefined);
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, ip, resolve));
  u.port = (server.address() as AddressInfo).port;
  return u;
}

export interface LogLine {
  level: string;
  msg: string;
  [key: string]: unknown;
}

export interface TestSidecar {
  readonly sidecar: Sidecar;
  readonly logs: LogLine[];
  readonly outboundURL: string;
  readonly adminURL: string;
  readonly annotationsFile: string;
  setAnnotations(annotations: Record<string, string>): Promise<void>;
  close(): Promise<void>;
}

export interface PodDef {
  name: string;
  namespace?: string;
  ip: string;
  labels?: Record<string, string>;
  meshed?: boolean;
  ready?: boolean;
  serviceAccount?: string;
}

export interface ServiceDef {
  name: string;
  namespace?: string;
  clusterIP?: string;
  ports: { port: number; targetPort?: number; name?: string }[];
  selector: Record<string, string>;
  annotations?: Record<string, string>;
}

export async function tempDir(): Promise<{ path: string; remove(): Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), 'tsmesh-test-'));
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}

export async function writeRegistry(file: string, data: { services: ServiceDef[]; pods: PodDef[] }): Promise<void> {
  await writeFile(file, stringify(data));
}

/** Starts a sidecar in this process for `pod`, with the registry file and pod annotations given. */
export async function testSidecar(options: {
  pod: PodDef;
  registryFile: string;
  dir: string;
  annotations?: Record<string, string>;
  env?: Record<string, string>;
  /** the random source of trace ids (a seeded one makes sampling decisions repeatable) */
  random?: (into: Buffer) => void;
}): Promise<TestSidecar> {
  const { pod } = options;
  const annotationsFile = join(options.dir, `${pod.name}.annotations`);
  await writeFile(annotationsFile, formatPodInfo(options.annotations ?? {}));
  await writeFile(join(options.dir, `${pod.name}.labels`), formatPodInfo(pod.labels ?? {}));
  const env = {
    POD_NAME: pod.name,
    POD_NAMESPACE: pod.namespace ?? 'default',
    POD_IP: pod.ip,
    SERVICE_ACCOUNT: pod.serviceAccount ?? pod.name,
    TSMESH_BIND_ADDRESS: pod.ip,
    TSMESH_OUTBOUND_PORT: '0',
    TSMESH_ADMIN_PORT: '0',
    TSMESH_REGISTRY: options.registryFile,
    TSMESH_ANNOTATIONS: annotationsFile,
    TSMESH_LABELS: join(options.dir, `${pod.name}.labels`),
    TSMESH_WATCH_INTERVAL: '50ms',
    TSMESH_DRAIN_TIMEOUT: '2s',
    ...options.env,
  };
  const settings = settingsFromEnv(env);
  const logs: LogLine[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split('\n')) if (line) logs.push(JSON.parse(line) as LogLine);
      cb();
    },
  });
  const log = pino({ level: 'debug', formatters: { level: (label) => ({ level: label }) } }, sink);
  const sidecar = await startSidecar(settings, log, { env, ...(options.random ? { random: options.random } : {}) });
  const adminURL = `http://${pod.ip}:${sidecar.admin.port}`;
  await eventually(async () => (await fetch(`${adminURL}/healthz/ready`)).ok, 10_000, `${pod.name}'s sidecar to be ready`);
  return {
    sidecar,
    logs,
    outboundURL: `http://${pod.ip}:${sidecar.outbound.port}`,
    adminURL: `http://${pod.ip}:${sidecar.admin.port}`,
    annotationsFile,
    async setAnnotations(annotations) {
      // whole, as the kubelet updates downward API files (a new file swapped in): a write in
      // place can be read half-written (an empty file is a real, valid state: no annotations)
      await writeFile(`${annotationsFile}.next`, formatPodInfo(annotations));
      await rename(`${annotationsFile}.next`, annotationsFile);
    },
    close: () => sidecar.close(),
  };
}

export interface Pair {
  /** pod-a's app (the server, behind pod-service). */
  readonly app: Upstream;
  /** pod-b's sidecar: the client side. */
  readonly client: TestSidecar;
  /** pod-a's sidecar: the server side. */
  readonly server: TestSidecar;
  readonly registryFile: string;
  readonly pods: { a: PodDef; b: PodDef };
  /** the folder holding the registry and (with mTLS) the pods' certificate folders `<pod>-tls` */
  readonly dir: string;
  /** the CA that signed the pods' certificates (with mTLS) */
  readonly ca: CA | undefined;
  /** The client's sidecar outbound listener, e.g. to use as an HTTP proxy. */
  readonly proxyURL: string;
  close(): Promise<void>;
}

/**
 * DESIGN.md's example: pod-a (app on 8080, label app: web-app) behind Service pod-service
 * (80 -> 8080), pod-b the client, a sidecar in each.
 */
export async function sidecarPair(
  handler: (req: IncomingMessage, res: ServerResponse) => void,
  options: {
    annotations?: { a?: Record<string, string>; b?: Record<string, string> };
    services?: ServiceDef[];
    serviceAnnotations?: Record<string, string>;
    mtls?: boolean;
    /** settings of both sidecars; `podEnv` adds to one of them (e.g. a limit on the server side only) */
    env?: Record<string, string>;
    podEnv?: { a?: Record<string, string>; b?: Record<string, string> };
  } = {},
): Promise<Pair> {
  const dir = await tempDir();
  const a: PodDef = { name: 'pod-a', ip: loopbackIP(), labels: { app: 'web-app' }, meshed: true, serviceAccount: 'pod-a' };
  const b: PodDef = { name: 'pod-b', ip: loopbackIP(), labels: { app: 'client' }, meshed: true, serviceAccount: 'pod-b' };
  // mTLS: certificates from one embedded CA, as files (TSMESH_TLS_DIR)
  const tlsEnv: { a?: Record<string, string>; b?: Record<string, string> } = {};
  let ca: CA | undefined;
  if (options.mtls) {
    ca = await createCA({ trustDomain: 'cluster.local' });
    for (const [key, pod] of [['a', a], ['b', b]] as const) {
      tlsEnv[key] = { TSMESH_TLS_DIR: await writeWorkloadIdentity(ca!, join(dir.path, `${pod.name}-tls`), { namespace: 'default', serviceAccount: pod.serviceAccount! }) };
    }
  }
  const app = await upstream(handler, { ip: a.ip, port: 8080 });
  const registryFile = join(dir.path, 'registry.yaml');
  await writeRegistry(registryFile, {
    services: [{ name: 'pod-service', ports: [{ port: 80, targetPort: 8080 }], selector: { app: 'web-app' }, annotations: options.serviceAnnotations ?? {} }, ...(options.services ?? [])],
    pods: [a, b],
  });
  const server = await testSidecar({ pod: a, registryFile, dir: dir.path, annotations: options.annotations?.a ?? {}, env: { ...options.env, ...options.podEnv?.a, ...tlsEnv.a } });
  const client = await testSidecar({ pod: b, registryFile, dir: dir.path, annotations: options.annotations?.b ?? {}, env: { ...options.env, ...options.podEnv?.b, ...tlsEnv.b } });
  return {
    app,
    client,
    server,
    registryFile,
    pods: { a, b },
    dir: dir.path,
    ca,
    proxyURL: client.outboundURL,
    async close() {
      await Promise.all([client.close(), server.close()]);
      await app.close();
      await dir.remove();
    },
  };
}

/** Polls `check` until it returns true (or throws after `timeoutMs`). */
export async function eventually(check: () => boolean | Promise<boolean>, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

export interface Backends {
  /** pod-b's sidecar, the client side */
  readonly client: TestSidecar;
  /** the apps behind pod-service, one per endpoint (unmeshed pods, reached directly) */
  readonly apps: Upstream[];
  readonly registryFile: string;
  /** rewrites pod-service's annotations in the registry file and waits for the sidecar to load it */
  setServiceAnnotations(annotations: Record<string, string>): Promise<void>;
  /** marks app `i`'s pod ready (an endpoint) or not, and waits for the sidecar to load it */
  setReady(i: number, ready: boolean): Promise<void>;
  close(): Promise<void>;
}

/**
 * A client sidecar and a service pod-service with one endpoint per handler (`ready`: which of
 * them start as endpoints, default all); `services`: more Services (e.g. selecting the same pods).
 */
export async function backends(
  handlers: ((req: IncomingMessage, res: ServerResponse) => void)[],
  options: { serviceAnnotations?: Record<string, string>; annotations?: Record<string, string>; ready?: boolean[]; services?: ServiceDef[] } = {},
): Promise<Backends> {
  const dir = await tempDir();
  const apps = await Promise.all(handlers.map((h) => upstream(h, { port: 8080 })));
  const b: PodDef = { name: 'pod-b', ip: loopbackIP(), labels: { app: 'client' }, meshed: true };
  const pods: PodDef[] = [b, ...apps.map((a, i) => ({ name: `pod-a${i}`, ip: a.ip, labels: { app: 'web-app' }, meshed: false, ready: options.ready?.[i] ?? true }))];
  const registryFile = join(dir.path, 'registry.yaml');
  let annotations = options.serviceAnnotations ?? {};
  const write = () =>
    writeRegistry(registryFile, { services: [{ name: 'pod-service', ports: [{ port: 80, targetPort: 8080 }], selector: { app: 'web-app' }, annotations }, ...(options.services ?? [])], pods });
  await write();
  const client = await testSidecar({ pod: b, registryFile, dir: dir.path, annotations: options.annotations ?? {} });
  const rewrite = async () => {
    const version = client.sidecar.registry.view.version;
    await write();
    await eventually(() => client.sidecar.registry.view.version > version, 5000, 'the registry to reload');
  };
  return {
    client,
    apps,
    registryFile,
    async setServiceAnnotations(next) {
      annotations = next;
      await rewrite();
    },
    async setReady(i, ready) {
      pods[i + 1]!.ready = ready;
      await rewrite();
    },
    async close() {
      await client.close();
      await Promise.all(apps.map((a) => a.close()));
      await dir.remove();
    },
  };
}
