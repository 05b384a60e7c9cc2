// The processes of the discovery scale run (bench/scale/run.ts), one role each, driven over IPC:
//   standin        the stand-in Kubernetes API server (test/harness/kube-standin.ts) holding the
//                  cluster: services with their pods and EndpointSlices; makes the changes
//   control-plane  `tsmesh injector` (runInjector + discovery) watching the stand-in
//   clients        simulated sidecars: the discovery protocol over real TLS WebSockets, each
//                  subscribed to its services, acknowledging versions, timing arrivals
//   sidecar        one real sidecar (startSidecar, discovery on), for its memory
import { performance } from 'node:perf_hooks';
import type { LookupFunction } from 'node:net';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import { WebSocket } from 'ws';
import { KubeStandin, type KubeObject } from '../../test/harness/kube-standin.ts';
import { runInjector } from '../../injector/main.ts';
import { discoveryComponent } from '../../injector/discovery/index.ts';
import { startSidecar } from '../../src/sidecar.ts';
import { settingsFromEnv } from '../../src/config/settings.ts';
import { DISCOVERY_PATH, DISCOVERY_PROTOCOL } from '../../src/discovery/protocol.ts';

export const SERVICE_HOST = 'tsmesh-injector.tsmesh-system.svc';
export const ENDPOINTS_PER_SERVICE = 10;

const now = (): number => performance.timeOrigin + performance.now();
const send = (m: unknown): void => void process.send!(m);
const lookup = ((_host: string, options: { all?: boolean }, cb: (...a: unknown[]) => void) =>
  options?.all ? cb(null, [{ address: '127.0.0.1', family: 4 }]) : cb(null, '127.0.0.1', 4)) as unknown as LookupFunction;

function memory(): { rss: number; heapUsed: number; heapTotal: number; external: number; arrayBuffers: number } {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  gc?.();
  const m = process.memoryUsage();
  return { rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, arrayBuffers: m.arrayBuffers };
}

// ---- the cluster's shape ---------------------------------------------------------------------
export const clusterIP = (i: number): string => `10.96.${Math.floor(i / 250)}.${(i % 250) + 1}`;
export const podIP = (i: number, j: number): string => `10.${1 + Math.floor(i / 250)}.${i % 250}.${j + 1}`;

function serviceObjects(i: number): KubeObject[] {
  const name = `svc-${i}`;
  const objs: KubeObject[] = [
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name, namespace: 'bench', annotations: { 'tsmesh.io/retry-attempts': '2', 'kubectl.kubernetes.io/last-applied-configuration': '{"apiVersion":"v1","kind":"Service"}' } },
      spec: { clusterIP: clusterIP(i), selector: { app: name }, ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }] },
    },
  ];
  for (let j = 0; j < ENDPOINTS_PER_SERVICE; j++) {
    objs.push({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: `${name}-${j}`, namespace: 'bench', labels: { app: name, 'pod-template-hash': 'abcde' }, annotations: { 'tsmesh.io/status': '{"version":1}' } },
      spec: { serviceAccountName: name, containers: [{ name: 'app', image: 'example/app:1', ports: [{ containerPort: 8080 }] }, { name: 'tsmesh-proxy', image: 'tsmesh:dev' }] },
      status: { phase: 'Running', podIP: podIP(i, j), conditions: [{ type: 'Ready', status: 'True' }] },
    });
  }
  objs.push(sliceObject(i, Array.from({ length: ENDPOINTS_PER_SERVICE }, (_, j) => podIP(i, j))));
  return objs;
}

function sliceObject(i: number, ips: string[]): KubeObject {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: `svc-${i}-abcde`, namespace: 'bench', labels: { 'kubernetes.io/service-name': `svc-${i}` } },
    addressType: 'IPv4',
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
    endpoints: ips.map((ip, j) => ({ addresses: [ip], conditions: { ready: true }, targetRef: { kind: 'Pod', namespace: 'bench', name: `svc-${i}-${j}` } })),
  };
}

// ---- roles -------------------------------------------------------------------------------------
async function standin(): Promise<void> {
  const kube = await KubeStandin.start();
  kube.historyLimit = 50_000;
  kube.put({ apiVersion: 'admissionregistration.k8s.io/v1', kind: 'MutatingWebhookConfiguration', metadata: { name: 'tsmesh-injector' }, webhooks: [] });
  process.on('message', (m: { cmd: string; [k: string]: unknown }) => {
    if (m.cmd === 'root') {
      const root = m.root as { cert: string; key: string; ca: string };
      kube.put({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'tsmesh-ca', namespace: 'tsmesh-system' }, type: 'kubernetes.io/tls', data: { 'tls.crt': Buffer.from(root.cert).toString('base64'), 'tls.key': Buffer.from(root.key).toString('base64'), 'ca.crt': Buffer.from(root.ca).toString('base64') } });
      send({ cmd: 'root', ok: true });
    } else if (m.cmd === 'populate') {
      for (let i = m.from as number; i < (m.to as number); i++) for (const o of serviceObjects(i)) kube.put(o);
      send({ cmd: 'populate', ok: true, memory: memory() });
    } else if (m.cmd === 'change') {
      // One endpoint of the service replaced by a new address (a pod rescheduled).
      const i = m.service as number;
      const ips = Array.from({ length: ENDPOINTS_PER_SERVICE }, (_, j) => podIP(i, j));
      ips[0] = m.ip as string;
      const obj = sliceObject(i, ips);
      const t0 = now();
      kube.put(obj);
      send({ cmd: 'change', t0 });
    }
  });
  send({ cmd: 'ready', url: kube.url });
}

async function controlPlane(url: string): Promise<void> {
  const kc = new KubeConfig();
  kc.loadFromOptions({ clusters: [{ name: 's', server: url, skipTLSVerify: true }], users: [{ name: 's', token: 't' }], contexts: [{ name: 's', cluster: 's', user: 's' }], currentContext: 's' });
  const logger = pino({ level: 'warn' });
  const injector = await runInjector({ env: { TSMESH_INJECTOR_PORT: '0' }, kubeConfig: kc, logger, host: '127.0.0.1', routes: [discoveryComponent()] });
  process.on('message', (m: { cmd: string }) => {
    if (m.cmd === 'measure') send({ cmd: 'measure', memory: memory() });
  });
  send({ cmd: 'ready', port: injector.controlPlane.port, anchors: injector.ca.trustAnchors.join('') });
}

interface Expectation {
  key: string;
  ip: string;
  index: number[];
  detail: number[];
}

async function clients(o: { port: number; cert: string; key: string; ca: string; subscriptions: string[][] }): Promise<void> {
  let expect: Expectation | undefined;
  let snapshotBytes = 0;
  let connected = 0;
  let messages = 0;
  let bytes = 0;
  const sockets: WebSocket[] = [];
  const open = (i: number): Promise<void> =>
    new Promise((resolve, reject) => {
      const ws = new WebSocket(`wss://${SERVICE_HOST}:${o.port}${DISCOVERY_PATH}`, DISCOVERY_PROTOCOL, { ca: o.ca, cert: o.cert, key: o.key, lookup, perMessageDeflate: false, maxPayload: 512 * 1024 * 1024 });
      sockets.push(ws);
      ws.on('open', () => ws.send(JSON.stringify({ type: 'hello', pod: { name: `sim-${i}`, namespace: 'bench', ip: `10.200.${Math.floor(i / 250)}.${(i % 250) + 1}` }, subscribe: o.subscriptions[i] })));
      ws.on('error', reject);
      ws.on('message', (data: Buffer) => {
        const t = now();
        messages++;
        bytes += data.length;
        const m = JSON.parse(data.toString()) as { type: string; version: number; index?: { set: [string, string | null, number[], string[]][] }; services?: Record<string, { service: { endpoints?: { ip: string }[] } } | null> };
        if (m.type === 'snapshot') {
          snapshotBytes = data.length;
          connected++;
          resolve();
        }
        const e = expect;
        if (e && m.type === 'update') {
          if (m.index?.set.some((x) => x[0] === e.key && x[3].includes(e.ip))) e.index.push(t);
          const d = m.services?.[e.key];
          if (d?.service.endpoints?.some((x) => x.ip === e.ip)) e.detail.push(t);
        }
        ws.send(JSON.stringify({ type: 'ack', version: m.version }));
      });
    });
  // Connect in batches, as a rollout would, not all in the same millisecond.
  const start = now();
  for (let i = 0; i < o.subscriptions.length; i += 25) await Promise.all(Array.from({ length: Math.min(25, o.subscriptions.length - i) }, (_, k) => open(i + k)));
  send({ cmd: 'connected', count: connected, ms: now() - start, snapshotBytes });
  process.on('message', (m: { cmd: string; key?: string; ip?: string }) => {
    if (m.cmd === 'expect') {
      expect = { key: m.key!, ip: m.ip!, index: [], detail: [] };
      send({ cmd: 'expect' });
    } else if (m.cmd === 'collect') {
      send({ cmd: 'collect', index: expect?.index ?? [], detail: expect?.detail ?? [], messages, bytes });
    } else if (m.cmd === 'close') {
      for (const ws of sockets) ws.terminate();
      send({ cmd: 'close' });
    }
  });
}

async function sidecar(o: { port: number; tlsDir: string; ip: string; name: string; dir: string }): Promise<void> {
  writeFileSync(join(o.dir, `${o.name}.annotations`), '');
  writeFileSync(join(o.dir, `${o.name}.labels`), `app="${o.name}"\n`);
  const env = {
    POD_NAME: o.name,
    POD_NAMESPACE: 'bench',
    POD_IP: o.ip,
    SERVICE_ACCOUNT: o.name,
    TSMESH_BIND_ADDRESS: o.ip,
    TSMESH_OUTBOUND_PORT: '0',
    TSMESH_INBOUND_PORT: '0',
    TSMESH_ADMIN_PORT: '0',
    TSMESH_CONTROL_PLANE: `https://${SERVICE_HOST}:${o.port}`,
    TSMESH_TLS_DIR: o.tlsDir,
    TSMESH_ANNOTATIONS: join(o.dir, `${o.name}.annotations`),
    TSMESH_LABELS: join(o.dir, `${o.name}.labels`),
  };
  const sc = await startSidecar(settingsFromEnv(env), pino({ level: 'warn' }), { env, discovery: { lookup } });
  while (!sc.registry.loaded) await new Promise((r) => setTimeout(r, 20));
  const status = async () => (await (await fetch(`http://${o.ip}:${sc.admin.port}/config`)).json()) as { registry: { services: number; discovery: { indexedServices: number } } };
  process.on('message', (m: { cmd: string; services?: string[]; indexed?: number }) => {
    void (async () => {
      if (m.cmd === 'subscribe') {
        for (const s of m.services!) await sc.registry.ensureAuthority(s, 'bench');
        send({ cmd: 'subscribe', loaded: sc.registry.view.services.length });
      } else if (m.cmd === 'wait-index') {
        while ((await status()).registry.discovery.indexedServices < m.indexed!) await new Promise((r) => setTimeout(r, 100));
        send({ cmd: 'wait-index' });
      } else if (m.cmd === 'measure') {
        const s = await status();
        send({ cmd: 'measure', memory: memory(), services: s.registry.services, indexed: s.registry.discovery.indexedServices, rssKiB: Number(/VmRSS:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1]) });
      }
    })();
  });
  send({ cmd: 'ready' });
}

const role = process.argv[2];
process.once('message', (first: { cmd: 'start'; [k: string]: unknown }) => {
  const run =
    role === 'standin' ? standin()
    : role === 'control-plane' ? controlPlane(first.url as string)
    : role === 'clients' ? clients(first as unknown as Parameters<typeof clients>[0])
    : role === 'sidecar' ? sidecar(first as unknown as Parameters<typeof sidecar>[0])
    : Promise.reject(new Error(`unknown role ${role}`));
  run.catch((err: Error) => {
    send({ cmd: 'error', message: err.stack ?? err.message });
    process.exit(1);
  });
});
