// App probes under interception: the kubelet's httpGet probes would be redirected to the
// sidecar's inbound listener and fail in strict mTLS (the kubelet has no mesh certificate).
// So httpGet probes are rewritten to the sidecar's admin port, path
// /app-health/<container>/<kind>, and the original target is recorded in the env var
// TSMESH_APP_PROBES for the sidecar, which probes the app itself and answers the kubelet.
// tcpSocket, grpc and exec probes are left as they are.
import type { V1Container, V1Probe } from '@kubernetes/client-node';

export const PROBE_KINDS = [
  ['readinessProbe', 'readiness'],
  ['livenessProbe', 'liveness'],
  ['startupProbe', 'startup'],
] as const;

/** What the sidecar must call for one rewritten probe. */
export interface AppProbe {
  readonly port: number;
  readonly path: string;
  readonly scheme: 'HTTP' | 'HTTPS';
  readonly host?: string;
  readonly headers?: ReadonlyArray<{ name: string; value: string }>;
}

/** TSMESH_APP_PROBES: {"/app-health/<container>/<kind>": AppProbe} */
export type AppProbes = Record<string, AppProbe>;

export function appHealthPath(container: string, kind: string): string {
  return `/app-health/${container}/${kind}`;
}

/**
 * Rewrites the httpGet probes of `container` (mutating it) to the admin port and returns the
 * originals, plus a warning for each probe it had to leave alone.
 */
export function rewriteProbes(container: V1Container, adminPort: number): { probes: AppProbes; warnings: string[] } {
  const probes: AppProbes = {};
  const warnings: string[] = [];
  for (const [field, kind] of PROBE_KINDS) {
    const probe: V1Probe | undefined = container[field];
    const get = probe?.httpGet;
    if (!probe || !get) continue;
    const port = resolvePort(container, get.port);
    if (port === undefined) {
      warnings.push(`container ${container.name}: ${field} uses port ${JSON.stringify(get.port)}, which is not a port number or a named port of the container; the probe is left as it is and goes through the sidecar`);
      continue;
    }
    const scheme = String(get.scheme ?? 'HTTP').toUpperCase() === 'HTTPS' ? 'HTTPS' : 'HTTP';
    const path = appHealthPath(container.name, kind);
    probes[path] = {
      port,
      path: get.path || '/',
      scheme,
      ...(get.host ? { host: get.host } : {}),
      ...(get.httpHeaders?.length ? { headers: get.httpHeaders.map((h) => ({ name: h.name, value: h.value })) } : {}),
    };
    container[field] = { ...probe, httpGet: { path, port: adminPort, scheme: 'HTTP' } };
  }
  return { probes, warnings };
}

function resolvePort(container: V1Container, port: number | string): number | undefined {
  if (typeof port === 'number') return Number.isInteger(port) && port > 0 && port < 65536 ? port : undefined;
  if (/^\d+$/.test(port)) return resolvePort(container, Number(port));
  return container.ports?.find((p) => p.name === port)?.containerPort;
}
