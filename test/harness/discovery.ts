// Discovery end to end, the harness: `tsmesh injector` (webhook, CA, discovery) against the
// stand-in API server, and real sidecars in this process connected to it with their mesh
// certificates (the control plane's Service name resolved to loopback, as cluster DNS would).
import { Writable } from 'node:stream';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import { request as httpsRequest } from 'node:https';
import type { LookupFunction } from 'node:net';
import type { KubeStandin } from './kube-standin.ts';
import { eventually, loopbackIP, type LogLine } from './mesh.ts';
import { runInjector, type RunningInjector } from '../../injector/main.ts';
import { discoveryComponent, type DiscoveryOptions } from '../../injector/discovery/index.ts';
import { startSidecar, type Sidecar } from '../../src/sidecar.ts';
import { settingsFromEnv } from '../../src/config/settings.ts';
import { formatPodInfo } from '../../src/config/podinfo.ts';

export const SERVICE_HOST = 'tsmesh-injector.tsmesh-system.svc';

/** Resolves the control plane's Service name to loopback, as cluster DNS would to its ClusterIP. */
export const lookup = ((hostname: string, options: { all?: boolean }, callback: (...args: unknown[]) => void) => {
  if (hostname !== SERVICE_HOST) return callback(Object.assign(new Error(`unknown host ${hostname}`), { code: 'ENOTFOUND' }));
  if (options?.all) callback(null, [{ address: '127.0.0.1', family: 4 }]);
  else callback(null, '127.0.0.1', 4);
}) as unknown as LookupFunction;

export function capture(): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _e, cb) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as LogLine);
      cb();
    },
  });
  return { logger: pino({ level: 'debug', formatters: { level: (label) => ({ level: label }) } }, sink), lines };
}

export interface DiscoSidecar {
  readonly sidecar: Sidecar;
  readonly logs: LogLine[];
  readonly ip: string;
  readonly outboundURL: string;
  readonly adminURL: string;
  close(): Promise<void>;
}

export async function discoverySidecar(o: { name: string; ip?: string; app: string; controlPlanePort: number; tlsDir: string; dir: string; idleMs?: number }): Promise<DiscoSidecar> {
  const ip = o.ip ?? loopbackIP();
  await writeFile(join(o.dir, `${o.name}.annotations`), formatPodInfo({}));
  await writeFile(join(o.dir, `${o.name}.labels`), formatPodInfo({ app: o.app }));
  const env = {
    POD_NAME: o.name,
    POD_NAMESPACE: 'default',
    POD_IP: ip,
    SERVICE_ACCOUNT: o.name,
    TSMESH_BIND_ADDRESS: ip,
    TSMESH_OUTBOUND_PORT: '0',
    TSMESH_ADMIN_PORT: '0',
    TSMESH_CONTROL_PLANE: `https://${SERVICE_HOST}:${o.controlPlanePort}`,
    TSMESH_TLS_DIR: o.tlsDir,
    TSMESH_ANNOTATIONS: join(o.dir, `${o.name}.annotations`),
    TSMESH_LABELS: join(o.dir, `${o.name}.labels`),
    TSMESH_WATCH_INTERVAL: '50ms',
    TSMESH_DRAIN_TIMEOUT: '2s',
  };
  const { logger, lines } = capture();
  const sidecar = await startSidecar(settingsFromEnv(env), logger, { env, discovery: { lookup, backoffInitialMs: 50, backoffMaxMs: 500, ...(o.idleMs ? { idleMs: o.idleMs } : {}) } });
  const adminURL = `http://${ip}:${sidecar.admin.port}`;
  await eventually(async () => (await fetch(`${adminURL}/healthz/ready`)).ok, 10_000, `${o.name}'s sidecar to be ready`);
  return { sidecar, logs: lines, ip, outboundURL: `http://${ip}:${sidecar.outbound.port}`, adminURL, close: () => sidecar.close() };
}

/** Starts `tsmesh injector` (webhook, CA, discovery) against the stand-in, on `port` (0: any). */
export async function controlPlane(kube: KubeStandin, port = 0, extra: Partial<Pick<DiscoveryOptions, 'routes'>> = {}): Promise<{ injector: RunningInjector; logs: LogLine[] }> {
  const { logger, lines } = capture();
  const injector = await runInjector({
    env: { TSMESH_INJECTOR_PORT: String(port) },
    kubeConfig: kube.kubeConfig(),
    logger,
    host: '127.0.0.1',
    routes: [discoveryComponent({ server: { pushDelayMs: 5, minPushIntervalMs: 20, concurrentSnapshots: 1 }, reflector: { backoffInitialMs: 50, backoffMaxMs: 500 }, ...extra })],
  });
  return { injector, logs: lines };
}

/** GET on the control plane, trusting the mesh root, by the Service name. */
export function controlPlaneGet(port: number, path: string, ca: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest({ host: SERVICE_HOST, port, path, ca, lookup, agent: false }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

