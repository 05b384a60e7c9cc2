// WebSocket (any HTTP/1.1 Upgrade) forwarding with http-proxy, over the endpoint's node:http
// agent (src/upstream/pool.ts). Ordinary HTTP/1.1 requests go through the raw-socket core
// (src/http1/); an Upgrade request is handed here with its socket and the bytes after its head.
import httpProxy from 'http-proxy';
import type { Agent, ClientRequest, IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { stripHopByHop } from './headers.ts';
import type { ProxyError } from '../errors/errors.ts';
import { classifyUpstreamError } from '../errors/errors.ts';
import { endWithProxyError } from '../errors/response.ts';

export interface Forwarder {
  /** Forwards a WebSocket (any HTTP/1.1 Upgrade) request; `done` runs once when it ends. */
  upgrade(req: IncomingMessage, socket: Socket, head: Buffer, target: string, agent: Agent, done: (result: { status: number; error: ProxyError | undefined }) => void): void;
  close(): void;
}

/** http://ip:port of an endpoint (IPv6 in brackets). */
export function targetUrl(ep: { ip: string; port: number }): string {
  return ep.ip.includes(':') ? `http://[${ep.ip}]:${ep.port}` : `http://${ep.ip}:${ep.port}`;
}

export function createForwarder(): Forwarder {
  const proxy = httpProxy.createProxyServer({ xfwd: false, changeOrigin: false, ws: true, selfHandleResponse: true });

  return {
    upgrade(req, socket, head, target, agent, done) {
      stripHopByHop(req.headers, true);
      let status = 0;
      let error: ProxyError | undefined;
      let finished = false;
      const finish = () => {
        if (finished) return;
        finished = true;
        done({ status, error });
      };
      const onProxyReq = (proxyReq: ClientRequest, r: IncomingMessage) => {
        if (r !== req) return;
        proxy.off('proxyReqWs', onProxyReq);
        proxyReq.once('upgrade', (_res: IncomingMessage, upstream: Socket) => {
          status = 101;
          // http-proxy pipes the two sockets, which ends one side only when the other ends
          // cleanly: a side that is destroyed (reset, or closed by its owner) must take the
          // other with it, or that one stays half-open for good
          socket.once('close', () => closeSoon(upstream));
          upstream.once('close', () => closeSoon(socket));
        });
        proxyReq.once('response', (upRes: IncomingMessage) => (status = upRes.statusCode ?? 0));
      };
      proxy.on('proxyReqWs', onProxyReq);
      socket.once('close', () => {
        proxy.off('proxyReqWs', onProxyReq);
        finish();
      });
      proxy.ws(req, socket, head, { target, agent }, (err) => {
        error = classifyUpstreamError(err);
        status = error.status;
        if (socket.writable && !socket.destroyed) endWithProxyError(socket, error);
        else socket.destroy();
      });
    },

    close() {
      proxy.close();
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
