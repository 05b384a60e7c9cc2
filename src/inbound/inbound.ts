// The inbound pipeline (listener 15006): calls to this pod's app. Per connection:
//   target port  the mesh preamble from a peer sidecar, or the original destination port of a
//                redirected connection (interception), else refused
//   protocol     opaque (the preamble says so, or an opaque port) is piped as TCP; the rest is
//                HTTP/1.1 when its first bytes are, else TCP
// and per HTTP request:
//   forward      to the app at the pod's own IP (not 127.0.0.1: an app that listens only on
//                localhost chose not to be reachable from other pods) and the target port
//   observe      x-forwarded-*, access log
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { connect, type Socket } from 'node:net';
import { readPreamble } from '../mesh/preamble.ts';
import { detectProtocol } from '../detect/detect.ts';
import { onClientError } from '../http/client-error.ts';
import { setForwarded } from '../http/headers.ts';
import { pipeSockets } from '../tcp/pipe.ts';
import { logHttp, logTcp } from '../log/access.ts';
import { targetUrl } from '../outbound/exchange.ts';
import { forwardOnce, type Forwarder, type ForwardResult } from '../http/forward.ts';
import type { ConnectionPools } from '../upstream/pool.ts';
import type { LiveConfig } from '../config/live.ts';
import type { Logger } from '../log/log.ts';
import type { Tracker } from '../lifecycle/tracker.ts';

export interface InboundDeps {
  readonly podIP: string;
  readonly config: LiveConfig;
  readonly pools: ConnectionPools;
  readonly forwarder: Forwarder;
  readonly tracker: Tracker;
  readonly log: Logger;
  readonly preambleTimeoutMs: number;
  readonly detectTimeoutMs: number;
  /** The original destination of a redirected connection (interception); undefined when not redirected. */
  readonly originalPort?: (socket: Socket) => number | undefined;
}

export function createInbound(deps: InboundDeps): { server: Server; handleConnection(socket: Socket): void } {
  const { podIP, config, pools, forwarder, tracker, log } = deps;
  const appPort = new WeakMap<Socket, number>();

  const finish = (req: IncomingMessage, start: number, upstream: string) => (e: ForwardResult) => {
    tracker.end();
    logHttp(log, {
      direction: 'inbound',
      method: req.method ?? '',
      authority: req.headers.host ?? '',
      path: req.url ?? '',
      protocol: `HTTP/${req.httpVersion}`,
      status: e.status,
      duration_ms: Math.round((performance.now() - start) * 1000) / 1000,
      upstream,
      upstream_service: undefined,
      upstream_pod: undefined,
      bytes_in: e.bytesIn,
      bytes_out: e.bytesOut,
      client: req.socket.remoteAddress,
      error: e.error?.reason,
    });
  };

  const server = createServer({ keepAliveTimeout: 60_000, headersTimeout: 65_000, requestTimeout: 0 }, (req, res) => {
    const start = performance.now();
    const port = appPort.get(req.socket)!;
    tracker.begin();
    if (tracker.draining) res.setHeader('connection', 'close');
    setForwarded(req.headers, req.socket.remoteAddress, 'http');
    const dest = { ip: podIP, port, meshed: false };
    forwardOnce(forwarder, req, res, targetUrl(dest), pools.agentFor(dest), finish(req, start, `${podIP}:${port}`));
  });
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    const start = performance.now();
    const port = appPort.get(req.socket)!;
    tracker.begin();
    setForwarded(req.headers, req.socket.remoteAddress, 'http');
    const dest = { ip: podIP, port, meshed: false };
    const done = finish(req, start, `${podIP}:${port}`);
    forwarder.upgrade(req, socket, head, targetUrl(dest), pools.agentFor(dest), (r) => done({ status: r.status, error: r.error, bytesIn: socket.bytesRead, bytesOut: socket.bytesWritten }));
  });
  server.on('clientError', onClientError(log, 'inbound'));

  const opaque = (client: Socket, port: number) => {
    const start = performance.now();
    tracker.begin();
    const upstream = connect({ host: podIP, port, noDelay: true });
    pipeSockets(client, upstream, (o) => {
      tracker.end();
      logTcp(log, {
        direction: 'inbound',
        client: client.remoteAddress,
        upstream: `${podIP}:${port}`,
        bytes_in: o.bytesIn,
        bytes_out: o.bytesOut,
        duration_ms: Math.round(performance.now() - start),
        error: o.error,
      });
    });
  };

  return {
    server,
    handleConnection(socket) {
      socket.setNoDelay(true);
      socket.on('error', () => socket.destroy());
      const http = (port: number) => {
        appPort.set(socket, port);
        server.emit('connection', socket);
        socket.resume();
      };
      const redirected = deps.originalPort?.(socket);
      if (redirected !== undefined) {
        // a caller without a sidecar, redirected here by iptables
        if (config.pod['opaque-ports'].includes(redirected)) return opaque(socket, redirected);
        void detectProtocol(socket, { timeoutMs: deps.detectTimeoutMs }).then(({ protocol }) => (protocol === 'http1' ? http(redirected) : opaque(socket, redirected)));
        return;
      }
      readPreamble(socket, deps.preambleTimeoutMs).then((r) => {
        if ('port' in r) return r.opaque || config.pod['opaque-ports'].includes(r.port) ? opaque(socket, r.port) : http(r.port);
        const reason = 'error' in r ? r.error : 'no mesh preamble and not a redirected connection';
        log.warn({ code: 'TSMESH_INBOUND_NO_TARGET', client: socket.remoteAddress, reason }, `inbound connection refused: ${reason}`);
        socket.destroy();
      }, () => socket.destroy());
    },
  };
}
