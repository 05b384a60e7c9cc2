// The admin server (15020): health, effective config, metrics, and drain-and-exit.
// Who may call what: the kubelet (health, app probes) and Prometheus (metrics) call from
// outside the pod, so those few reads answer anyone; everything else changes the sidecar
// (quitquitquit) or reveals its state (config, debug) and answers only the pod's own
// containers, that is callers on loopback (as Istio takes its admin operations only from
// localhost): 403 with x-tsmesh-error forbidden for anyone else.
import type { IncomingMessage, Server } from 'node:http';
import { createServer } from '../http/node-http.ts';
import type { Registry as Metrics } from 'prom-client';
import { probeApp, type AppProbe } from './app-probes.ts';
import { ProxyError } from '../errors/errors.ts';
import { sendProxyError } from '../errors/response.ts';

export interface AdminDeps {
  ready(): { ok: boolean; reasons: string[] };
  config(): unknown;
  metrics: Metrics;
  /** Recently finished spans of one trace (or all), for the demo's waterfall. */
  spans(traceId: string | undefined): unknown[];
  /** The app's rewritten probes (TSMESH_APP_PROBES) and where the app is. */
  appProbes?: { readonly probes: ReadonlyMap<string, AppProbe>; readonly podIP: string };
  quit(): void;
}

export function createAdmin(deps: AdminDeps): Server {
  const server = createServer(async (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const json = (status: number, body: unknown) => {
      const text = JSON.stringify(body, null, 2) + '\n';
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    };
    try {
      if (!isPublic(req.method, path) && !isLoopback(req.socket.remoteAddress)) {
        return sendProxyError(res, new ProxyError('FORBIDDEN', `${req.method} ${path} on the admin port is only for the pod's own containers (loopback)`));
      }
      if (req.method === 'GET' && path === '/healthz/ready') {
        const r = deps.ready();
        return json(r.ok ? 200 : 503, { ready: r.ok, reasons: r.reasons });
      }
      if (req.method === 'GET' && path === '/livez') return json(200, { live: true });
      if (req.method === 'GET' && path === '/config') return json(200, deps.config());
      if (req.method === 'GET' && path === '/metrics') {
        const text = await deps.metrics.metrics();
        res.writeHead(200, { 'content-type': deps.metrics.contentType });
        return res.end(text);
      }
      const probe = req.method === 'GET' && path?.startsWith('/app-health/') ? deps.appProbes?.probes.get(path) : undefined;
      if (probe) {
        const r = await probeApp(probe, deps.appProbes!.podIP);
        res.writeHead(r.status, { 'content-type': 'text/plain; charset=utf-8' });
        return res.end(r.body);
      }
      if (req.method === 'GET' && path === '/debug/spans') {
        const trace = new URL(req.url ?? '/', 'http://admin').searchParams.get('trace') ?? undefined;
        return json(200, { spans: deps.spans(trace) });
      }
      if (req.method === 'POST' && path === '/quitquitquit') {
        json(200, { draining: true });
        return deps.quit();
      }
      json(404, { error: { code: 'TSMESH_ADMIN_NOT_FOUND', message: `no admin endpoint ${req.method} ${path}` } });
    } catch (err) {
      json(500, { error: { code: 'TSMESH_ADMIN_ERROR', message: (err as Error).message } });
    }
  });
  server.keepAliveTimeout = 5000;
  return server;
}

/** What the kubelet and Prometheus read from outside the pod. */
function isPublic(method: IncomingMessage['method'], path: string | undefined): boolean {
  if (method !== 'GET') return false;
  return path === '/healthz/ready' || path === '/livez' || path === '/metrics' || (path?.startsWith('/app-health/') ?? false);
}

/** 127.0.0.0/8 and ::1 (also as IPv4-mapped): a process of this pod, or of this machine in local mode. */
export function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  const v4 = address.startsWith('::ffff:') ? address.slice(7) : address;
  return v4.startsWith('127.') || address === '::1';
}
