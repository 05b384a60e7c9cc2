// Sidecar settings from the environment (DESIGN.md, "Sidecar settings"): defaults spelled out
// here once, validated, with errors that name the variable.
import { isIP } from 'node:net';
import { ConfigError } from '../errors/errors.ts';
import * as v from '../schema/schema.ts';
import { parseDuration } from './parse.ts';

const port = v.coercedNumber().int().min(0).max(65535);
const duration = v.string().transform(parseDuration);

const bytes = v.string().transform((s) => {
  const m = /^(\d+)(Ki|Mi|Gi|k|M|G)?$/.exec(s.trim());
  if (!m) throw new Error(`"${s}" is not a size (bytes, or e.g. 64Ki, 10Mi)`);
  const unit = { Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, k: 1000, M: 1000 ** 2, G: 1000 ** 3 }[m[2] ?? ''] ?? 1;
  return Number(m[1]) * unit;
});
const count = v.coercedNumber().int().min(1).max(10_000_000);

export const envSchema = v.object({
  POD_NAME: v.string().default('unknown'),
  POD_NAMESPACE: v.string().default('default'),
  POD_IP: v.string().refine((s) => isIP(s) !== 0, 'must be an IP address').optional(),
  SERVICE_ACCOUNT: v.string().default('default'),
  TSMESH_ANNOTATIONS: v.string().default('/etc/tsmesh/podinfo/annotations'),
  TSMESH_LABELS: v.string().default('/etc/tsmesh/podinfo/labels'),
  TSMESH_CONTROL_PLANE: v.url().default('https://tsmesh-injector.tsmesh-system.svc:8443'),
  TSMESH_REGISTRY: v.string().optional(),
  TSMESH_TLS_DIR: v.string().optional(),
  TSMESH_TRUST_DOMAIN: v.string().regex(/^[a-z0-9.-]+$/, 'must be a DNS-like name').default('cluster.local'),
  TSMESH_OUTBOUND_PORT: port.default(15001),
  TSMESH_INBOUND_PORT: port.default(15006),
  TSMESH_ADMIN_PORT: port.default(15020),
  TSMESH_BIND_ADDRESS: v.string().refine((s) => isIP(s) !== 0, 'must be an IP address').default('0.0.0.0'),
  TSMESH_DRAIN_TIMEOUT: duration.default(20_000),
  TSMESH_DETECT_TIMEOUT: duration.default(100),
  TSMESH_WATCH_INTERVAL: duration.default(1000),
  TSMESH_MAX_CONNECTIONS: count.default(4096),
  TSMESH_MAX_REQUESTS: count.default(2048),
  TSMESH_HEADERS_TIMEOUT: duration.default(10_000),
  TSMESH_IDLE_TIMEOUT: duration.default(60_000),
  TSMESH_TCP_IDLE_TIMEOUT: duration.default(3_600_000),
  TSMESH_MAX_REQUEST_BODY: bytes.optional(),
  TSMESH_MAX_UPSTREAM_CONNECTIONS: count.default(1024),
  TSMESH_APP_PROBES: v.string().optional(),
});

export interface Settings {
  readonly podName: string;
  readonly podNamespace: string;
  /** The pod's IP: inbound traffic goes to the app at this address. */
  readonly podIP: string;
  readonly serviceAccount: string;
  readonly annotationsFile: string;
  readonly labelsFile: string;
  readonly controlPlane: string;
  readonly registryFile: string | undefined;
  readonly tlsDir: string | undefined;
  readonly trustDomain: string;
  readonly outboundPort: number;
  readonly inboundPort: number;
  readonly adminPort: number;
  /** Where the listeners bind: 0.0.0.0 in a pod; the pod's own loopback address in local mode. */
  readonly bindAddress: string;
  readonly drainTimeoutMs: number;
  /** How long a new outbound connection may stay silent before it is treated as opaque TCP. */
  readonly detectTimeoutMs: number;
  readonly watchIntervalMs: number;
  readonly limits: Limits;
  /** The app's httpGet probes the injector moved to the admin port (JSON, see src/admin/app-probes.ts). */
  readonly appProbes: string | undefined;
}

/** What one caller can take of the sidecar, and how long idle or slow peers are kept. */
export interface Limits {
  /** open connections per listener; more are closed at once */
  readonly maxConnections: number;
  /** requests (and TCP connections) in flight in the sidecar; more get 503 overloaded */
  readonly maxRequests: number;
  /** time for a client to send a request's headers (slowloris) */
  readonly headersTimeoutMs: number;
  /** an HTTP keep-alive connection idle between requests is closed */
  readonly idleTimeoutMs: number;
  /** an opaque TCP connection with no bytes either way is closed */
  readonly tcpIdleTimeoutMs: number;
  /** larger request bodies get 413 (none: no limit) */
  readonly maxRequestBodyBytes: number | undefined;
  /**
   * HTTP/1.1 connections open at most per upstream endpoint (a peer sidecar or an app), as
   * Envoy's circuit-breaker max_connections (1024); requests beyond wait for one, up to their
   * deadline (504 timeout)
   */
  readonly maxUpstreamConnections: number;
}

export function settingsFromEnv(env: NodeJS.ProcessEnv = process.env): Settings {
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const r = envSchema.safeParse(present);
  if (!r.success) {
    throw new ConfigError('environment', r.error.issues.map((i) => `${i.path.join('.')}=${JSON.stringify(present[String(i.path[0])] ?? '')}: ${i.message}`));
  }
  const e = r.data;
  return {
    podName: e.POD_NAME,
    podNamespace: e.POD_NAMESPACE,
    podIP: e.POD_IP ?? '127.0.0.1',
    serviceAccount: e.SERVICE_ACCOUNT,
    annotationsFile: e.TSMESH_ANNOTATIONS,
    labelsFile: e.TSMESH_LABELS,
    controlPlane: e.TSMESH_CONTROL_PLANE,
    registryFile: e.TSMESH_REGISTRY,
    tlsDir: e.TSMESH_TLS_DIR,
    trustDomain: e.TSMESH_TRUST_DOMAIN,
    outboundPort: e.TSMESH_OUTBOUND_PORT,
    inboundPort: e.TSMESH_INBOUND_PORT,
    adminPort: e.TSMESH_ADMIN_PORT,
    bindAddress: e.TSMESH_BIND_ADDRESS,
    drainTimeoutMs: e.TSMESH_DRAIN_TIMEOUT,
    detectTimeoutMs: e.TSMESH_DETECT_TIMEOUT,
    watchIntervalMs: e.TSMESH_WATCH_INTERVAL,
    appProbes: e.TSMESH_APP_PROBES,
    limits: {
      maxConnections: e.TSMESH_MAX_CONNECTIONS,
      maxRequests: e.TSMESH_MAX_REQUESTS,
      headersTimeoutMs: e.TSMESH_HEADERS_TIMEOUT,
      idleTimeoutMs: e.TSMESH_IDLE_TIMEOUT,
      tcpIdleTimeoutMs: e.TSMESH_TCP_IDLE_TIMEOUT,
      maxRequestBodyBytes: e.TSMESH_MAX_REQUEST_BODY,
      maxUpstreamConnections: e.TSMESH_MAX_UPSTREAM_CONNECTIONS,
    },
  };
}
