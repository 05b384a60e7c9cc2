// The demo's netns mode (root on Linux with iptables): DESIGN.md's example mesh with the real
// interception. Each pod is a network namespace (src/localcluster/netns.ts) where `tsmesh init`
// installed the iptables rules and a sidecar runs as UID 1337; pod-a's app (UID 1000) is a
// small web server on 8080; pod-b's app (UID 1000) is plain curl (or node's http when there is
// no curl) calling http://pod-service/, with no proxy settings: the rules send it through the
// sidecars. Service pod-service is a VIP that a kube-proxy stand-in forwards.
import { netnsCluster, onPath, APP_UID, type NetnsCluster, type PodProcess } from '../localcluster/netns.ts';
import { jsonLines, registryReloaded, type AccessLine, type DemoMesh, type DemoPod, type DemoReply } from './mesh.ts';
import { WEB_APP, FLAKY_SERVICE, CANARY } from './app.ts';

// pod-b's app when there is no curl: node's http, no agent, no proxy settings.
const NODE_CLIENT = `
import http from 'node:http';
const start = performance.now();
const done = (r) => console.log(JSON.stringify({ ...r, ms: performance.now() - start }));
const req = http.get(process.argv[1], { agent: false, timeout: 10000, headers: JSON.parse(process.argv[2] || '{}') }, (res) => {
  let body = '';
  res.setEncoding('utf8');
  res.on('data', (c) => (body += c));
  res.on('end', () => done({ status: res.statusCode, body }));
});
req.on('timeout', () => req.destroy(new Error('no answer within 10 s')));
req.on('error', (err) => done({ status: 0, body: '', error: err.message }));
`;

// GET on a sidecar's admin port from inside its pod.
const ADMIN_GET = `const r = await fetch(process.argv[1]); process.stdout.write(await r.text());`;

export interface NetnsMesh extends DemoMesh {
  readonly mode: 'netns';
  readonly cluster: NetnsCluster;
}

export interface NetnsOptions {
  readonly logLevel?: string;
  /** pod-b's client program (default: curl when it is on PATH, else node's http) */
  readonly client?: 'curl' | 'node';
}

export async function startNetnsMesh(options: NetnsOptions = {}): Promise<NetnsMesh> {
  // every demo request is traced (the default samples 1% of new traces): the demo shows its trace
  const annotations = { 'tsmesh.io/log-level': options.logLevel ?? 'info', 'tsmesh.io/trace-sampling': '1' };
  const cluster = await netnsCluster({
    pods: [
      { name: 'pod-a', labels: { app: 'web-app' }, sidecar: true, annotations },
      { name: 'pod-b', labels: { app: 'client' }, sidecar: true, annotations },
      { name: CANARY.pod.name, labels: { ...CANARY.pod.labels }, sidecar: true, annotations },
    ],
    services: [
      { name: 'pod-service', ports: [{ name: 'http', port: 80, targetPort: 8080 }], selector: { app: 'web-app' } },
      { name: FLAKY_SERVICE.name, ports: [{ name: 'http', port: 80, targetPort: 8080 }], selector: { app: 'web-app' }, annotations: FLAKY_SERVICE.annotations },
      ...CANARY.services.map((svc) => ({ ...svc, selector: { ...svc.selector }, ports: [...svc.ports] })),
    ],
    sidecarEnv: () => ({ TSMESH_DRAIN_TIMEOUT: '1s' }),
    mtls: true, // certificates from an embedded CA (TSMESH_TLS_DIR)
  });
  const closeAll = () => cluster.close();
  let app: PodProcess;
  let useCurl: boolean;
  try {
    app = cluster.spawn('pod-a', [cluster.nodeBinary, '--input-type=module', '-e', WEB_APP], { uid: APP_UID });
    const v2 = cluster.spawn(CANARY.pod.name, [cluster.nodeBinary, '--input-type=module', '-e', WEB_APP], { uid: APP_UID, env: { VERSION: 'v2' } });
    await app.waitForLine(/pod-a app listening/, 15_000);
    await v2.waitForLine(/pod-a app listening/, 15_000);
    useCurl = options.client ? options.client === 'curl' : await onPath('curl');
  } catch (err) {
    await closeAll();
    throw err;
  }
  const appLines = () => jsonLines(app.output()).filter((l) => l.type === 'app');

  const a = cluster.pod('pod-a');
  const b = cluster.pod('pod-b');
  const service = cluster.service('pod-service');
  const pods: { a: DemoPod; b: DemoPod } = { a: { name: a.name, ip: a.ip, labels: a.labels }, b: { name: b.name, ip: b.ip, labels: b.labels } };
  const sidecarOf = (pod: 'a' | 'b') => (pod === 'a' ? a : b).sidecar;

  const get = async (url: string, headers: Record<string, string> = {}): Promise<DemoReply> => {
    if (useCurl) {
      const h = Object.entries(headers).flatMap(([k, v]) => ['-H', `${k}: ${v}`]);
      const r = await cluster.exec('pod-b', ['curl', '-sS', '--max-time', '10', ...h, '-w', '\n%{http_code} %{time_total}', url], { uid: APP_UID, timeoutMs: 15_000 });
      const at = r.stdout.lastIndexOf('\n');
      const [code, total] = r.stdout.slice(at + 1).split(' ');
      const status = Number(code) || 0;
      return { status, body: r.stdout.slice(0, Math.max(at, 0)), ms: Number(total) * 1000, client: 'curl', ...(status === 0 ? { error: r.stderr.trim() || `curl exited ${r.code}` } : {}) };
    }
    const r = await cluster.node('pod-b', NODE_CLIENT, { uid: APP_UID, args: [url, JSON.stringify(headers)], timeoutMs: 15_000 });
    const line = jsonLines(r.stdout)[0] as Omit<DemoReply, 'client'> | undefined;
    return line ? { ...line, client: 'node http' } : { status: 0, body: '', ms: 0, client: 'node http', error: r.stderr.trim() || `exited ${r.code}` };
  };

  return {
    mode: 'netns',
    cluster,
    description: [
      `mode: network namespaces with iptables interception (pods are namespaces ${a.netns} and ${b.netns}, the app knows nothing of the mesh)`,
      `started pod-a (${a.ip}) with its app on 8080 as UID ${APP_UID}, pod-b (${b.ip}), Service pod-service at ${service.clusterIP}:80 -> 8080;`,
      `tsmesh init and a sidecar (UID 1337, certificate from an embedded CA) in each pod; pod-b's app is plain ${useCurl ? 'curl' : 'node http'} with no proxy settings (registry: ${cluster.registryFile})`,
      `(and pod-a's version 2, ${CANARY.pod.name} (${cluster.pod(CANARY.pod.name).ip}), for the canary scene)`,
    ],
    pods,
    entry: { from: 'pod-b app -> iptables', where: `${service.clusterIP}:80 -> outbound 127.0.0.1:15001` },
    route: "pod-b -> iptables -> its sidecar -> pod-a's sidecar -> pod-a's app and back",
    get,
    async setRoutes(routes) {
      const lines = () => jsonLines(sidecarOf('b')?.output() ?? '');
      const seen = lines().length;
      await cluster.setRoutes(routes);
      await registryReloaded(lines, seen);
    },
    accessLines: (pod) => jsonLines(sidecarOf(pod)?.output() ?? '').filter((l): l is AccessLine => l.type === 'access'),
    logLines: (pod) => jsonLines(sidecarOf(pod)?.output() ?? ''),
    appTime: (path) => {
      const line = appLines().find((l) => l.path === path);
      return typeof line?.ms === 'number' ? line.ms : undefined;
    },
    appRequests: (path) => appLines().filter((l) => l.path === path) as unknown as { status: number; attempt: number }[],
    admin: async (pod, path) => (await cluster.node(pod === 'a' ? 'pod-a' : 'pod-b', ADMIN_GET, { args: [`http://127.0.0.1:15020${path}`], timeoutMs: 10_000 })).stdout,
    // the namespaces reach nothing on the host, so a collector there is out of reach
    traceExport: { none: 'the pods are network namespaces, which cannot reach a collector on the host (run with --mode loopback to export)' },
    tryIt: () => [
      `ip netns exec ${b.netns} curl http://pod-service/`,
      `ip netns exec ${b.netns} curl http://${a.ip}:8080/        (a pod IP: intercepted too)`,
      `ip netns exec ${a.netns} curl http://127.0.0.1:15020/metrics`,
      `ip netns exec ${b.netns} iptables -t nat -S              (the rules tsmesh init installed)`,
    ],
    close: closeAll,
  };
}
