// The app's own health probes, rewritten by the injector to the admin port
// (/app-health/<container>/<readiness|liveness|startup>) so the kubelet, which has no mesh
// certificate, can probe an app behind a strict mTLS sidecar. TSMESH_APP_PROBES (set by the
// injector) records each original httpGet probe; the sidecar makes that call to the app and
// answers the kubelet with the app's status, as the kubelet would have seen it.
import { request as httpRequest } from '../http/node-http.ts';
import { request as httpsRequest } from 'node:https';
import { ConfigError } from '../errors/errors.ts';
import * as v from '../schema/schema.ts';
import type { Logger } from '../log/log.ts';

const probeSchema = v
  .object({
    port: v.number().int().min(1).max(65535),
    path: v.string().startsWith('/').default('/'),
    scheme: v.oneOf(['HTTP', 'HTTPS']).default('HTTP'),
    host: v.string().min(1).optional(),
    headers: v.array(v.object({ name: v.string().min(1), value: v.string() })).optional(),
  })
  .strict();

export type AppProbe = v.Infer<typeof probeSchema>;

export const probesSchema = v.record(probeSchema);
const PROBE_PATH = /^\/app-health\/[^/]+\/(readiness|liveness|startup)$/;

/** Reads TSMESH_APP_PROBES; throws ConfigError naming each bad entry. */
export function parseAppProbes(json: string | undefined): Map<string, AppProbe> {
  if (!json) return new Map();
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch (err) {
    throw new ConfigError('TSMESH_APP_PROBES', [`not JSON: ${(err as Error).message}`]);
  }
  const r = probesSchema.safeParse(raw);
  const issues = r.success ? [] : r.error.issues.map((i) => `${i.path.map(String).join('.') || '(root)'}: ${i.message}`);
  for (const key of raw && typeof raw === 'object' ? Object.keys(raw) : []) {
    if (!PROBE_PATH.test(key)) issues.push(`${key}: must be /app-health/<container>/<readiness|liveness|startup>`);
  }
  if (!r.success || issues.length) throw new ConfigError('TSMESH_APP_PROBES', issues);
  return new Map(Object.entries(r.data));
}

/**
 * TSMESH_APP_PROBES for the admin server: a bad value is reported and no probe is taken, so the
 * probes it named answer 404 (the kubelet then reports the pod unready, with the reason in our log).
 */
export function appProbesOrNone(json: string | undefined, log: Logger): Map<string, AppProbe> {
  try {
    return parseAppProbes(json);
  } catch (err) {
    log.error({ code: (err as ConfigError).code, issues: (err as ConfigError).issues }, `ignoring TSMESH_APP_PROBES: ${(err as Error).message}`);
    return new Map();
  }
}

export interface ProbeResult {
  /** the app's status; 503 when it could not be reached */
  readonly status: number;
  readonly body: string;
}

/** Calls the app as the kubelet would (HTTPS without verifying the certificate, as the kubelet does). */
export function probeApp(probe: AppProbe, podIP: string, timeoutMs = 10_000): Promise<ProbeResult> {
  const request = probe.scheme === 'HTTPS' ? httpsRequest : httpRequest;
  const headers: Record<string, string> = { 'user-agent': 'tsmesh-probe', accept: '*/*' };
  for (const h of probe.headers ?? []) headers[h.name.toLowerCase()] = h.value;
  return new Promise((resolve) => {
    const req = request(
      { host: probe.host ?? podIP, port: probe.port, path: probe.path, method: 'GET', headers, agent: false, timeout: timeoutMs, rejectUnauthorized: false },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body = (body + c).slice(0, 1024)));
        res.on('end', () => resolve({ status: res.statusCode ?? 503, body }));
        res.on('error', () => resolve({ status: 503, body: 'the app closed the probe response early\n' }));
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (err) => resolve({ status: 503, body: `probe of ${probe.scheme.toLowerCase()}://${probe.host ?? podIP}:${probe.port}${probe.path} failed: ${err.message}\n` }));
    req.end();
  });
}
