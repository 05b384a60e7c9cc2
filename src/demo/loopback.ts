// The demo's loopback mode (any machine): DESIGN.md's example mesh without Kubernetes or
// interception. Pods are loopback addresses (pod-a 127.0.0.10, pod-b 127.0.0.11), each with
// its own `tsmesh proxy` process; pod-b's client uses its sidecar as HTTP proxy, as HTTP_PROXY
// clients do; a registry file stands in for the API server.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { jsonLines, registryReloaded, type AccessLine, type DemoMesh, type DemoPod } from './mesh.ts';
import { get } from './client.ts';
import { WEB_APP, FLAKY_SERVICE, CANARY } from './app.ts';
import { createCA, writeWorkloadIdentity } from '../localcluster/identity.ts';

export interface SidecarProcess {
  readonly pod: DemoPod;
  readonly child: ChildProcess;
  readonly access: AccessLine[];
  readonly lines: Record<string, unknown>[];
  readonly adminURL: string;
  readonly outboundURL: string;
}

/** DESIGN.md's pods; `subnet` picks another 127.0.X.0 when a demo already runs on 127.0.0.x. */
export function demoPods(subnet = 0): { a: DemoPod; b: DemoPod; a2: DemoPod } {
  return {
    a: { name: 'pod-a', ip: `127.0.${subnet}.10`, labels: { app: 'web-app' } },
    b: { name: 'pod-b', ip: `127.0.${subnet}.11`, labels: { app: 'client' } },
    // pod-a's version 2, for the canary scene
    a2: { name: CANARY.pod.name, ip: `127.0.${subnet}.12`, labels: { ...CANARY.pod.labels } },
  };
}
const TSMESH = fileURLToPath(new URL('../../bin/tsmesh.js', import.meta.url));

export interface LoopbackMesh extends DemoMesh {
  readonly mode: 'loopback';
  readonly dir: string;
  readonly sidecars: { a: SidecarProcess; b: SidecarProcess; a2: SidecarProcess };
}

export interface LoopbackOptions {
  readonly logLevel?: string;
  /** why the demo runs in this mode, for its first line (e.g. why not network namespaces) */
  readonly why?: string;
}

export async function startLoopbackMesh(options: LoopbackOptions = {}): Promise<LoopbackMesh> {
  for (let subnet = 0; ; subnet++) {
    try {
      return await startOn(demoPods(subnet), options);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || subnet >= 9) throw err;
    }
  }
}

async function startOn(pods: { a: DemoPod; b: DemoPod; a2: DemoPod }, options: LoopbackOptions): Promise<LoopbackMesh> {
  const { a: POD_A, b: POD_B, a2: POD_A2 } = pods;
  const dir = await mkdtemp(join(tmpdir(), 'tsmesh-demo-'));
  const registryFile = join(dir, 'registry.yaml');
  const port = [{ name: 'http', port: 80, targetPort: 8080 }];
  const registry = {
    services: [
      { name: 'pod-service', namespace: 'default', ports: port, selector: { app: 'web-app' } },
      { name: FLAKY_SERVICE.name, namespace: 'default', ports: port, selector: { app: 'web-app' }, annotations: FLAKY_SERVICE.annotations },
      ...CANARY.services.map((s) => ({ ...s, namespace: 'default' })),
    ],
    pods: [POD_A, POD_B, POD_A2].map((p) => ({ ...p, namespace: 'default', serviceAccount: p.name, meshed: true })),
  };
  await writeFile(registryFile, stringify(registry));

  // pod-a's app (and its version 2's): its own process on the pod's address, port 8080.
  const apps: AppProcess[] = [];
  const stopApps = () => Promise.all(apps.map((a) => a.stop()));
  try {
    apps.push(await startApp(POD_A.ip));
    apps.push(await startApp(POD_A2.ip, 'v2'));
  } catch (err) {
    await stopApps();
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  const appLines = () => jsonLines(apps[0]!.output()).filter((l) => l.type === 'app');

  const started: SidecarProcess[] = [];
  const close = async () => {
    for (const s of started) s.child.kill('SIGTERM');
    await Promise.all(started.map((s) => (s.child.exitCode === null ? new Promise((r) => s.child.once('exit', r)) : undefined)));
    await stopApps();
    await rm(dir, { recursive: true, force: true });
  };
  try {
    // mTLS: an embedded CA issues each pod's certificate into a folder (TSMESH_TLS_DIR)
    const ca = await createCA({ trustDomain: 'cluster.local' });
    for (const pod of [POD_A, POD_B, POD_A2]) {
      const tlsDir = await writeWorkloadIdentity(ca, join(dir, `${pod.name}-tls`), { namespace: 'default', serviceAccount: pod.name });
      started.push(await startSidecar(pod, dir, registryFile, tlsDir, options.logLevel));
    }
    await Promise.all(started.map(waitReady));
  } catch (err) {
    await close();
    throw err;
  }
  const sidecars = { a: started[0]!, b: started[1]!, a2: started[2]! };
  return {
    mode: 'loopback',
    description: [
      `mode: loopback: pods are addresses on this machine (pod-a ${POD_A.ip}, pod-b ${POD_B.ip}); the client uses its sidecar as HTTP proxy.`,
      `      (${options.why ?? 'Network namespaces with the real iptables interception need root on Linux.'})`,
      `started pod-a's app on ${POD_A.ip}:8080 (and its version 2, pod-a-v2, on ${POD_A2.ip}:8080) and a sidecar for each pod, with certificates from an embedded CA (registry: ${registryFile})`,
    ],
    pods,
    entry: { from: 'pod-b app', where: `outbound ${sidecars.b.outboundURL.slice('http://'.length)}` },
    route: "pod-b -> its sidecar -> pod-a's sidecar -> pod-a's app and back",
    get: (url, headers) => get(sidecars.b.outboundURL, url, POD_B.ip, headers),
    async setRoutes(routes) {
      const seen = sidecars.b.lines.length;
      await writeFile(`${registryFile}.next`, stringify({ ...registry, routes }));
      await rename(`${registryFile}.next`, registryFile); // whole: a sidecar never reads half a file
      await registryReloaded(() => sidecars.b.lines, seen);
    },
    accessLines: (pod) => sidecars[pod].access,
    logLines: (pod) => sidecars[pod].lines,
    appTime: (path) => {
      const line = appLines().find((l) => l.path === path);
      return typeof line?.ms === 'number' ? line.ms : undefined;
    },
    appRequests: (path) => appLines().filter((l) => l.path === path) as unknown as { status: number; attempt: number }[],
    admin: async (pod, path) => (await fetch(`${sidecars[pod].adminURL}${path}`)).text(),
    traceExport: process.env.OTEL_EXPORTER_OTLP_ENDPOINT ? { endpoint: process.env.OTEL_EXPORTER_OTLP_ENDPOINT } : { none: 'OTEL_EXPORTER_OTLP_ENDPOINT is not set' },
    tryIt: () => [`curl -x ${sidecars.b.outboundURL} http://pod-service/`, `curl ${sidecars.b.adminURL}/config`, `curl ${sidecars.a.adminURL}/metrics`],
    dir,
    sidecars,
    close,
  };
}

interface AppProcess {
  output(): string;
  stop(): Promise<void>;
}

/** pod-a's web app (src/demo/app.ts) on `ip`:8080, as VERSION `version`; resolves once it listens. */
async function startApp(ip: string, version?: string): Promise<AppProcess> {
  const app = spawn(process.execPath, ['--input-type=module', '-e', WEB_APP], { env: { ...process.env, HOST: ip, ...(version ? { VERSION: version } : {}) }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  app.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  app.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
  const handle: AppProcess = {
    output: () => out,
    async stop() {
      if (app.exitCode === null && app.signalCode === null) {
        app.kill('SIGTERM');
        await new Promise((r) => app.once('exit', r));
      }
    },
  };
  try {
    await new Promise<void>((resolve, reject) => {
      const check = setInterval(() => {
        if (out.includes('pod-a app listening')) done(undefined);
        else if (/EADDRINUSE/.test(out)) done(Object.assign(new Error(`cannot start pod-a's app on ${ip}:8080: EADDRINUSE`), { code: 'EADDRINUSE' }));
        else if (/EADDRNOTAVAIL/.test(out)) done(Object.assign(new Error(`cannot use ${ip}: this system does not route 127.0.0.0/8 to loopback (Linux does)`), { code: 'EADDRNOTAVAIL' }));
        else if (app.exitCode !== null) done(new Error(`pod-a's app exited: ${out}`));
      }, 20);
      const done = (err: Error | undefined) => {
        clearInterval(check);
        if (err) reject(err);
        else resolve();
      };
    });
  } catch (err) {
    await handle.stop();
    throw err;
  }
  return handle;
}

async function startSidecar(pod: DemoPod, dir: string, registryFile: string, tlsDir: string, logLevel = 'info'): Promise<SidecarProcess> {
  const annotations = join(dir, `${pod.name}.annotations`);
  // every demo request is traced (the default samples 1% of new traces): the demo shows its trace
  await writeFile(annotations, `tsmesh.io/log-level="${logLevel}"\ntsmesh.io/trace-sampling="1"\n`);
  await writeFile(join(dir, `${pod.name}.labels`), Object.entries(pod.labels).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join('\n'));
  const child = spawn(process.execPath, [TSMESH, 'proxy'], {
    env: {
      ...process.env,
      POD_NAME: pod.name,
      POD_NAMESPACE: 'default',
      POD_IP: pod.ip,
      SERVICE_ACCOUNT: pod.name,
      TSMESH_BIND_ADDRESS: pod.ip,
      TSMESH_REGISTRY: registryFile,
      TSMESH_ANNOTATIONS: annotations,
      TSMESH_LABELS: join(dir, `${pod.name}.labels`),
      TSMESH_TLS_DIR: tlsDir,
      TSMESH_DRAIN_TIMEOUT: '2s',
      OTEL_BSP_SCHEDULE_DELAY: process.env.OTEL_BSP_SCHEDULE_DELAY ?? '200',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const s: SidecarProcess = { pod, child, access: [], lines: [], adminURL: `http://${pod.ip}:15020`, outboundURL: `http://${pod.ip}:15001` };
  let stderr = '';
  child.stderr!.on('data', (c) => (stderr += c));
  createInterface({ input: child.stdout! }).on('line', (line) => {
    try {
      const entry = JSON.parse(line) as Record<string, unknown>;
      s.lines.push(entry);
      if (entry.type === 'access') s.access.push(entry as AccessLine);
    } catch {
      /* not a log line */
    }
  });
  child.once('exit', (code) => {
    if (code) process.stderr.write(`${pod.name}'s sidecar exited with code ${code}\n${stderr}`);
  });
  return s;
}

async function waitReady(s: SidecarProcess): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (s.child.exitCode !== null) throw new Error(`${s.pod.name}'s sidecar exited (code ${s.child.exitCode}) before it was ready`);
    try {
      if ((await fetch(`${s.adminURL}/healthz/ready`)).ok) return;
    } catch {
      /* not listening yet */
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${s.pod.name}'s sidecar was not ready within 15 s`);
}
