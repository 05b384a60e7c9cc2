// `tsmesh injector`: the control plane's composition, the only place that constructs things.
// Settings from the environment -> Kubernetes client -> the mesh CA (root in the Secret tsmesh-ca)
// -> serving certificate issued by that CA (Secret tsmesh-injector-tls + caBundle), or files ->
// trust anchors kept in every meshed namespace -> routes (POST /inject, POST /v1/certificate,
// and whatever other components mount) -> HTTPS on 8443. One root: the API server (caBundle)
// and the sidecars (/etc/tsmesh/trust/ca.crt) trust the same anchors.
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { KubeConfig } from '@kubernetes/client-node';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { z } from 'zod';
import { ConfigError } from '../src/errors/errors.ts';
import { describeError } from '../src/errors/describe.ts';
import { apiServerOf, loadKubeConfig } from './kube/config.ts';
import { KubeApiError } from './kube/errors.ts';
import { createLogger, LOG_LEVELS, type Logger } from '../src/log/log.ts';
import { injectorSettingsFromEnv, type InjectorSettings } from './inject/settings.ts';
import { startControlPlane, type ControlPlane, type RouteHandler, type TlsPair } from './server/server.ts';
import { readTlsDir, watchTlsDir } from './server/tlsdir.ts';
import { ensureCaBundle, ensureServingCertificate, startServingCertLoop, type ServingCertOptions, type ServingCertificate } from './servingcert/kube.ts';
import { untrustedBy } from './servingcert/cert.ts';
import { CERTIFICATE_PATH, startClusterCA, startTrustAnchorSync, type CA } from './ca/index.ts';
import { INJECT_PATH, webhookRoute } from './webhook/route.ts';
import { webhookMetrics } from './webhook/metrics.ts';
import { kubeNamespaceLookup } from './webhook/namespaces.ts';
import type { NamespaceLookup } from './webhook/admission.ts';

const envSchema = z.object({
  TSMESH_INJECTOR_PORT: z.coerce.number().int().min(0).max(65535).default(8443),
  TSMESH_INJECTOR_TLS_DIR: z.string().optional(),
  TSMESH_INJECTOR_SERVICE: z.string().default('tsmesh-injector'),
  TSMESH_INJECTOR_SECRET: z.string().default('tsmesh-injector-tls'),
  TSMESH_WEBHOOK_CONFIG: z.string().default('tsmesh-injector'),
  TSMESH_CERT_CHECK_INTERVAL: z.coerce.number().int().min(1).default(60),
  TSMESH_LOG_LEVEL: z.enum(LOG_LEVELS).default('info'),
});

export interface InjectorServerSettings {
  readonly port: number;
  readonly tlsDir: string | undefined;
  readonly serviceName: string;
  readonly secretName: string;
  readonly webhookConfigName: string;
  readonly certCheckIntervalMs: number;
  readonly logLevel: (typeof LOG_LEVELS)[number];
}

export const INJECTOR_SERVER_ENV = Object.keys(envSchema.shape);

export function injectorServerSettingsFromEnv(env: NodeJS.ProcessEnv = process.env): InjectorServerSettings {
  const present = Object.fromEntries(Object.entries(env).filter(([k, v]) => INJECTOR_SERVER_ENV.includes(k) && v !== undefined && v !== ''));
  const r = envSchema.safeParse(present);
  if (!r.success) throw new ConfigError('environment', r.error.issues.map((i) => `${i.path.join('.')}=${JSON.stringify(present[String(i.path[0])] ?? '')}: ${i.message}`));
  const e = r.data;
  return {
    port: e.TSMESH_INJECTOR_PORT,
    tlsDir: e.TSMESH_INJECTOR_TLS_DIR,
    serviceName: e.TSMESH_INJECTOR_SERVICE,
    secretName: e.TSMESH_INJECTOR_SECRET,
    webhookConfigName: e.TSMESH_WEBHOOK_CONFIG,
    certCheckIntervalMs: e.TSMESH_CERT_CHECK_INTERVAL * 1000,
    logLevel: e.TSMESH_LOG_LEVEL,
  };
}

/** What a component gets to build its routes: the shared logger, metrics registry and API client. */
export interface InjectorContext {
  readonly logger: Logger;
  readonly registry: Registry;
  readonly kubeConfig: KubeConfig;
  readonly settings: InjectorSettings;
  readonly server: InjectorServerSettings;
}

/** Takes over a connection that asked for an HTTP upgrade (discovery's WebSocket). */
export type UpgradeHandler = (req: IncomingMessage, socket: Duplex, head: Buffer) => void;

/** What a component mounts: routes, upgrade paths, and what to stop when the control plane closes. */
export interface Component {
  readonly routes?: ReadonlyMap<string, RouteHandler>;
  readonly upgrades?: ReadonlyMap<string, UpgradeHandler>;
  close?(): void | Promise<void>;
}

/** A component that mounts routes on the control plane server (discovery; the CA is built in). */
export type RouteFactory = (ctx: InjectorContext) => ReadonlyMap<string, RouteHandler> | Component | Promise<ReadonlyMap<string, RouteHandler> | Component>;

export interface RunInjectorOptions {
  readonly env?: NodeJS.ProcessEnv;
  /** Other components' routes, mounted next to POST /inject and POST /v1/certificate. */
  readonly routes?: readonly RouteFactory[];
  readonly kubeConfig?: KubeConfig; // default: KUBECONFIG, ~/.kube/config or in-cluster (kube/config.ts)
  readonly logger?: Logger;
  readonly host?: string;
  readonly namespaces?: NamespaceLookup;
}

export interface RunningInjector {
  readonly controlPlane: ControlPlane;
  readonly context: InjectorContext;
  /** The mesh CA (its trust anchors are the caBundle and the sidecars' ca.crt). */
  readonly ca: CA;
  close(): Promise<void>;
}

export async function runInjector(options: RunInjectorOptions = {}): Promise<RunningInjector> {
  const env = options.env ?? process.env;
  // The settings first: a bad value is named before anything is tried.
  const settings = injectorSettingsFromEnv(env);
  const server = injectorServerSettingsFromEnv(env);
  const kubeConfig = options.kubeConfig ?? loadKubeConfig({ env });
  try {
    return await startInjector(options, kubeConfig, settings, server);
  } catch (err) {
    // A failed call says what it tried and why; add where, so a wrong kubeconfig shows.
    if (err instanceof KubeApiError && err.code === 'TSMESH_KUBE_API') {
      throw new KubeApiError(`${describeError(err)} (API server ${apiServerOf(kubeConfig)})`, err.status, { cause: err });
    }
    throw err;
  }
}

async function startInjector(options: RunInjectorOptions, kubeConfig: KubeConfig, settings: InjectorSettings, server: InjectorServerSettings): Promise<RunningInjector> {
  const logger = options.logger ?? createLogger({ level: server.logLevel, name: 'tsmesh-injector' });
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'tsmesh_injector_' });
  const context: InjectorContext = { logger, registry, kubeConfig, settings, server };

  // The mesh CA: its root from the Secret tsmesh-ca (made on first start), its trust anchor
  // published in our namespace, TokenReview for the callers of POST /v1/certificate.
  const { ca, handler: certificateRoute } = await startClusterCA({ kubeConfig, namespace: settings.controlPlaneNamespace, trustDomain: settings.trustDomain, registry, log: logger });
  const anchors = ca.trustAnchors.join('');

  // The serving certificate: from files when given (cert-manager), else issued by the mesh CA
  // and kept in a Secret shared by the replicas.
  const certOptions: ServingCertOptions = {
    kubeConfig,
    ca,
    namespace: settings.controlPlaneNamespace,
    serviceName: server.serviceName,
    secretName: server.secretName,
    webhookConfigName: server.webhookConfigName,
    logger,
  };
  // Sidecars verify us with the mesh trust anchors: say so when files would make them refuse us.
  const checkFiles = (pair: TlsPair): void => {
    const why = untrustedBy(pair.cert, anchors);
    if (why) logger.warn({ tlsDir: server.tlsDir, reason: why }, 'sidecars will refuse this serving certificate: it does not chain to the mesh trust anchors (see docs/injector.md)');
  };
  let tls: TlsPair;
  let issued: ServingCertificate | undefined;
  if (server.tlsDir) {
    tls = await readTlsDir(server.tlsDir);
    checkFiles(tls);
  } else {
    issued = await ensureServingCertificate(certOptions);
    tls = issued.tls;
  }

  // The trust anchor in every namespace where injected pods run.
  const componentStops: (() => void | Promise<void>)[] = [];
  const trust = startTrustAnchorSync({ kubeConfig, caPem: anchors, controlPlaneNamespace: settings.controlPlaneNamespace, logger, registry });
  const controlPlane = await listen().catch(async (err: unknown) => {
    await trust.stop();
    throw err;
  });
  async function listen(): Promise<ControlPlane> {
    const routes = new Map<string, RouteHandler>([
      [INJECT_PATH, webhookRoute({ settings, namespaces: options.namespaces ?? kubeNamespaceLookup(kubeConfig), logger, metrics: webhookMetrics(registry), onInjected: (ns) => trust.podInjected(ns) })],
      [CERTIFICATE_PATH, certificateRoute],
    ]);
    const upgrades = new Map<string, UpgradeHandler>();
    try {
      for (const factory of options.routes ?? []) {
        const made = await factory(context);
        const component: Component = made instanceof Map ? { routes: made } : (made as Component);
        if (component.close) componentStops.push(() => component.close!());
        for (const [path, handler] of component.routes ?? []) {
          if (routes.has(path)) throw new Error(`two components mount the route ${path}`);
          routes.set(path, handler);
        }
        for (const [path, handler] of component.upgrades ?? []) upgrades.set(path, handler);
      }
      // Sidecars present their mesh certificate to discovery: ask for one, verified against our anchors.
      const cp = await startControlPlane({ routes, tls, logger, registry, port: server.port, host: options.host, ...(upgrades.size ? { clientCA: anchors } : {}) });
      if (upgrades.size) {
        cp.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
          const handler = upgrades.get((req.url ?? '/').split('?')[0]!);
          if (handler) handler(req, socket, head);
          else socket.end('HTTP/1.1 404 Not Found\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
        });
      }
      return cp;
    } catch (err) {
      for (const stop of componentStops) await stop();
      throw err;
    }
  }

  const stops: (() => void | Promise<void>)[] = [...componentStops, trust.stop];
  if (server.tlsDir) {
    const onFiles = (pair: TlsPair): void => {
      checkFiles(pair);
      controlPlane.setCertificate(pair);
    };
    const w = watchTlsDir(server.tlsDir, tls, onFiles, (err) => logger.warn({ err: err.message }, 'serving certificate files not usable; keeping the current one'), server.certCheckIntervalMs);
    stops.push(w.stop);
  } else {
    // Only after listening: the API server must be able to reach us once it trusts us.
    try {
      await ensureCaBundle(certOptions, issued!.caBundle);
    } catch (err) {
      logger.error({ err }, 'could not set the webhook caBundle; retrying');
    }
    const loop = startServingCertLoop({ ...certOptions, intervalMs: server.certCheckIntervalMs, onCertificate: (pair) => controlPlane.setCertificate(pair) }, issued!);
    stops.push(loop.stop);
  }
  await trust.started;
  return {
    controlPlane,
    context,
    ca,
    async close() {
      for (const stop of stops) await stop();
      await controlPlane.close();
    },
  };
}
