// The admin server (15020): health, effective config, metrics, and drain-and-exit.
import { createServer, type Server } from 'node:http';
import type { Registry as Metrics } from 'prom-client';
import { probeApp, type AppProbe } from './app-probes.ts';

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
