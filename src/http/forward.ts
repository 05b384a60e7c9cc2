// WebSocket (any HTTP/1.1 Upgrade) forwarding with http-proxy, over the endpoint's node:http
// agent (src/upstream/pool.ts). Ordinary HTTP/1.1 requests go through the raw-socket core
// (src/http1/); an Upgrade request is handed here with its socket and the bytes after its head.
// http-proxy (with follow-redirects and eventemitter3) is loaded at the first Upgrade: most
// sidecars never see one (issue 17, memory).
import { createRequire } from 'node:module';
import type HttpProxy from 'http-proxy';
import type { Agent, ClientRequest, IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { stripHopByHop } from './headers.ts';
import type { ProxyError } from '../errors/errors.ts';
import { classifyUpstreamError } from '../errors/errors.ts';
import { endWithProxyError } from '../errors/response.ts';

/** An Upgrade request as the pipelines hold it: the request, its socket, the bytes after its head. */
export interface Upgrade<R> {
  readonly req: R;
  readonly socket: Socket;
  readonly head: Buffer;
}

export interface UpgradeResult {
  /** The upstream's answer (101 once upgraded), or the proxy's error status. */
  status: number;
  error: ProxyError | undefined;
  /** performance.now() when the upstream's response head arrived, if it did. */
  headAt: number | undefined;
}

export interface Forwarder {
  /** Forwards a WebSocket (any HTTP/1.1 Upgrade) request; `done` runs once when it ends. */
  upgrade(req: IncomingMessage, socket: Socket, head: Buffer, target: string, agent: Agent, done: (result: UpgradeResult) => void): void;
  close(): void;
}

/** http://ip:port of an endpoint (IPv6 in brackets). */
export function targetUrl(ep: { ip: string; port: number }): string {
  return ep.ip.includes(':') ? `http://[${ep.ip}]:${ep.port}` : `http://${ep.ip}:${ep.port}`;
}

export function createForwarder(): Forwarder {
  let created: HttpProxy | undefined;
  const proxyServer = (): HttpProxy =>
    (created ??= (createRequire(import.meta.url)('http-proxy') as typeof HttpProxy).createProxyServer({ xfwd: false, changeOrigin: false, ws: true, selfHandleResponse: true }));

  return {
    upgrade(req, socket, head, target, agent, done) {
      const proxy = proxyServer();
      stripHopByHop(req.headers, true);
      const result: UpgradeResult = { status: 0, error: undefined, headAt: undefined };
      let finished = false;
      const finish = () => {
        if (finished) return;
        finished = true;
        done(result);
      };
      const onProxyReq = (proxyReq: ClientRequest, r: IncomingMessage) => {
        if (r !== req) return;
        proxy.off('proxyReqWs', onProxyReq);
        proxyReq.once('upgrade', (_res: IncomingMessage, upstream: Socket) => {
          result.status = 101;
          result.headAt = performance.now();
          // http-proxy pipes the two sockets, which ends one side only when the other ends
          // cleanly: a side that is destroyed (reset, or closed by its owner) must take the
          // other with it, or that one stays half-open for good
          socket.once('close', () => closeSoon(upstream));
          upstream.once('close', () => closeSoon(socket));
        });
        proxyReq.once('response', (upRes: IncomingMessage) => {
          result.status = upRes.statusCode ?? 0;
          result.headAt = performance.now();
        });
      };
      proxy.on('proxyReqWs', onProxyReq);
      socket.once('close', () => {
        proxy.off('proxyReqWs', onProxyReq);
        finish();
      });
      proxy.ws(req, socket, head, { target, agent }, (err) => {
        const error = (result.error = classifyUpstreamError(err));
        result.status = error.status;
        if (socket.writable && !socket.destroyed) endWithProxyError(socket, error);
        else socket.destroy();
      });
    },

    close() {
      created?.close();
    },
  };
}

/** Ends a socket's write side and closes it once that is flushed (what is queued still goes out). */
function closeSoon(socket: Socket): void {
  if (socket.destroyed) return;
  socket.end();
  if (socket.writableFinished) socket.destroy();
  else socket.once('finish', () => socket.destroy());
}
