// The control plane's HTTPS server (port 8443): one TLS listener, routes mounted by path.
// The webhook mounts POST /inject; the CA mounts POST /v1/certificate; discovery mounts its
// stream later. Built in here: GET /healthz and GET /metrics (the shared prom-client registry).
// The serving certificate is swapped in place (`setCertificate`): new connections use the new
// one, open connections keep theirs.
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Registry } from 'prom-client';
import type { Logger } from '../../src/log/log.ts';
import { HttpError, sendError, sendJson } from './http.ts';

/** A route: it checks the method itself and answers (or throws an HttpError). */
export type RouteHandler = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

export interface TlsPair {
  readonly cert: string; // PEM, leaf first, then any intermediates
  readonly key: string; // PEM
}

export interface ControlPlaneOptions {
  /** Path (without query) -> handler. */
  readonly routes: ReadonlyMap<string, RouteHandler>;
  readonly tls: TlsPair;
  readonly logger: Logger;
  /** Served on GET /metrics; routes register their metrics in it. */
  readonly registry?: Registry;
  readonly port?: number; // default 8443; 0 = any
  readonly host?: string; // default all interfaces
  /** GET /healthz answers 503 while this returns a reason. */
  readonly unhealthy?: () => string | undefined;
  /**
   * PEM: ask clients for a certificate and verify it against these anchors (discovery: the
   * sidecars' mesh certificates). Optional for clients (the API server and new sidecars have
   * none): routes read `req.socket.authorized`.
   */
  readonly clientCA?: string;
}

export interface ControlPlane {
  readonly server: Server;
  readonly port: number;
  readonly url: string;
  readonly registry: Registry;
  /** Hot reload of the serving certificate. Throws (and keeps the old one) if the pair is unusable. */
  setCertificate(tls: TlsPair): void;
  close(): Promise<void>;
}

export const CONTROL_PLANE_PORT = 8443;

export async function startControlPlane(options: ControlPlaneOptions): Promise<ControlPlane> {
  const log = options.logger;
  const registry = options.registry ?? new Registry();
  const builtins = new Map<string, RouteHandler>([
    ['/healthz', (_req, res) => {
      const reason = options.unhealthy?.();
      if (reason) sendJson(res, 503, { status: 'unhealthy', reason });
      else sendJson(res, 200, { status: 'ok' });
    }],
    ['/metrics', async (req, res) => {
      if (req.method !== 'GET') throw new HttpError(405, 'METHOD_NOT_ALLOWED', 'use GET /metrics');
      const text = await registry.metrics();
      res.writeHead(200, { 'content-type': registry.contentType });
      res.end(text);
    }],
  ]);
  const routes = new Map([...builtins, ...options.routes]);

  const server = createServer(
    {
      cert: options.tls.cert,
      key: options.tls.key,
      minVersion: 'TLSv1.2',
      ...(options.clientCA ? { ca: options.clientCA, requestCert: true, rejectUnauthorized: false } : {}),
      // Bound slow clients: a whole request must arrive within 30 s.
      requestTimeout: 30_000,
      headersTimeout: 10_000,
    },
    (req, res) => {
      const path = (req.url ?? '/').split('?')[0]!;
      const handler = routes.get(path);
      const fail = (err: unknown): void => {
        const e = err instanceof HttpError ? err : new HttpError(500, 'INTERNAL', 'internal error', { cause: err });
        if (e.status >= 500) log.error({ err, path, method: req.method }, 'request failed');
        else log.info({ path, method: req.method, code: e.code, status: e.status }, e.message);
        sendError(res, e);
      };
      if (!handler) {
        fail(new HttpError(404, 'NOT_FOUND', `no route ${req.method} ${path}`));
        return;
      }
      try {
        const r = handler(req, res);
        if (r) r.catch(fail);
      } catch (err) {
        fail(err);
      }
    },
  );
  server.on('tlsClientError', (err) => log.debug({ err: err.message }, 'TLS handshake failed'));
  server.on('clientError', (err, socket) => {
    log.debug({ err: err.message }, 'bad HTTP request');
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n');
    else socket.destroy();
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? CONTROL_PLANE_PORT, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const host = options.host && options.host.includes(':') ? `[${options.host}]` : (options.host ?? 'localhost');
  log.info({ port, routes: [...routes.keys()] }, 'control plane listening');

  return {
    server,
    port,
    url: `https://${host}:${port}`,
    registry,
    setCertificate(tls) {
      server.setSecureContext({ cert: tls.cert, key: tls.key, minVersion: 'TLSv1.2', ...(options.clientCA ? { ca: options.clientCA } : {}) });
      log.info('serving certificate reloaded');
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
