// The outbound pipeline (listener 15001): the app's requests to other services.
// Explicit mode: the request's authority (Host, or the absolute-form URL a client with
// HTTP_PROXY sends) names the service. Per request, in order:
//   route       authority -> service port in the registry (unknown: 503 no-healthy-endpoints)
//   balance     pick one of the service's ready endpoints
//   connect     keep-alive pool to the endpoint (its sidecar's inbound port when meshed)
//   forward     http-proxy, streaming both ways
//   observe     access log
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { ProxyError } from '../errors/errors.ts';
import { sendProxyError } from '../errors/response.ts';
import { onClientError } from '../http/client-error.ts';
import { logHttp } from '../log/access.ts';
import type { Forwarder, Exchange } from '../http/forward.ts';
import type { ConnectionPools } from '../upstream/pool.ts';
import type { Balancer } from '../balance/round-robin.ts';
import type { Registry } from '../registry/registry.ts';
import type { ServiceTarget } from '../registry/view.ts';
import type { Endpoint } from '../registry/model.ts';
import type { Logger } from '../log/log.ts';
import type { Tracker } from '../lifecycle/tracker.ts';

export interface OutboundDeps {
  readonly namespace: string;
  readonly registry: Registry;
  readonly balancer: Balancer;
  readonly pools: ConnectionPools;
  readonly forwarder: Forwarder;
  readonly tracker: Tracker;
  readonly log: Logger;
}

interface Routed {
  authority: string;
  target: ServiceTarget;
  endpoint: Endpoint;
}

export function createOutbound(deps: OutboundDeps): { server: Server; handleConnection(socket: Socket): void } {
  const { registry, balancer, pools, forwarder, tracker, log } = deps;

  const route = (req: IncomingMessage): Routed => {
    const authority = authorityOf(req);
    const view = registry.view;
    const target = authority ? view.byAuthority(authority, deps.namespace) : undefined;
    if (!target) throw new ProxyError('NO_HEALTHY_ENDPOINTS', `no service in the registry for authority "${authority ?? ''}"`);
    const key = `${target.service.namespace}/${target.service.name}:${target.port.port}`;
    const endpoint = balancer.pick(key, view.endpoints(target));
    if (!endpoint) throw new ProxyError('NO_HEALTHY_ENDPOINTS', `service ${key} has no ready endpoints`);
    return { authority: authority!, target, endpoint };
  };

  const finish = (req: IncomingMessage, start: number, routed: Partial<Routed>, authority: string) => (e: Exchange) => {
    tracker.end();
    logHttp(log, {
      direction: 'outbound',
      method: req.method ?? '',
      authority,
      path: pathOf(req),
      protocol: `HTTP/${req.httpVersion}`,
      status: e.status,
      duration_ms: round(performance.now() - start),
      upstream: routed.endpoint?.key,
      upstream_service: routed.target ? `${routed.target.service.name}.${routed.target.service.namespace}` : undefined,
      upstream_pod: routed.endpoint?.pod.name,
      bytes_in: e.bytesIn,
      bytes_out: e.bytesOut,
      client: req.socket.remoteAddress,
      error: e.error?.reason,
      upstream_ms: e.responseAt === undefined ? undefined : round(e.responseAt - start),
    });
  };

  const fail = (req: IncomingMessage, res: ServerResponse, start: number, err: ProxyError) => {
    tracker.begin();
    sendProxyError(res, err);
    finish(req, start, {}, authorityOf(req) ?? '')({ status: err.status, bytesIn: 0, bytesOut: 0, error: err, responseAt: undefined });
  };

  const server = createServer({ keepAliveTimeout: 60_000, headersTimeout: 65_000, requestTimeout: 0 }, (req, res) => {
    const start = performance.now();
    let routed: Routed;
    try {
      routed = route(req);
    } catch (err) {
      return fail(req, res, start, err as ProxyError);
    }
    tracker.begin();
    if (tracker.draining) res.setHeader('connection', 'close');
    req.headers['x-tsmesh-attempt'] = '1';
    const { endpoint } = routed;
    forwarder.web(req, res, targetUrl(endpoint), pools.agentFor({ ip: endpoint.ip, port: endpoint.port, meshed: endpoint.pod.meshed }), finish(req, start, routed, routed.authority));
  });

  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    const start = performance.now();
    let routed: Routed;
    try {
      routed = route(req);
    } catch (err) {
      const e = err as ProxyError;
      socket.end(`HTTP/1.1 ${e.status} ${e.reason}\r\nx-tsmesh-error: ${e.reason}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
      return;
    }
    tracker.begin();
    const { endpoint } = routed;
    forwarder.upgrade(req, socket, head, targetUrl(endpoint), pools.agentFor({ ip: endpoint.ip, port: endpoint.port, meshed: endpoint.pod.meshed }), finish(req, start, routed, routed.authority));
  });
  server.on('clientError', onClientError(log, 'outbound'));

  return {
    server,
    handleConnection(socket) {
      server.emit('connection', socket);
    },
  };
}

function authorityOf(req: IncomingMessage): string | undefined {
  const url = req.url ?? '';
  if (url.startsWith('http://')) {
    const end = url.indexOf('/', 7);
    return url.slice(7, end === -1 ? undefined : end) || undefined;
  }
  return req.headers.host;
}

function pathOf(req: IncomingMessage): string {
  const url = req.url ?? '/';
  if (!url.startsWith('http://')) return url;
  const slash = url.indexOf('/', 7);
  return slash === -1 ? '/' : url.slice(slash);
}

export function targetUrl(ep: { ip: string; port: number }): string {
  return ep.ip.includes(':') ? `http://[${ep.ip}]:${ep.port}` : `http://${ep.ip}:${ep.port}`;
}

const round = (ms: number) => Math.round(ms * 1000) / 1000;
