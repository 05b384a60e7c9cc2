// HTTP/1.1 and WebSocket forwarding with http-proxy over the keep-alive pools. This module owns
// the details of a proxied exchange: hop-by-hop headers, streaming both ways, an upstream that
// dies mid-response (the client's response is cut, never left hanging), a client that goes
// away (the upstream request is cancelled), and the bookkeeping the access log needs.
import httpProxy from 'http-proxy';
import type { Agent, ClientRequest, IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { stripHopByHop } from './headers.ts';
import { classifyUpstreamError, ProxyError } from '../errors/errors.ts';
import { sendProxyError } from '../errors/response.ts';

export interface Exchange {
  status: number;
  bytesIn: number;
  bytesOut: number;
  error: ProxyError | undefined;
  /** When the upstream's response headers arrived (ms, performance.now()). */
  responseAt: number | undefined;
}

interface Pending {
  exchange: Exchange;
  proxyReq?: ClientRequest;
  done: (exchange: Exchange) => void;
}

export interface Forwarder {
  /** Forwards `req` to `target` (http://ip:port) over `agent`; `done` runs once when it ends. */
  web(req: IncomingMessage, res: ServerResponse, target: string, agent: Agent, done: (exchange: Exchange) => void): void;
  /** Forwards a WebSocket (any HTTP/1.1 Upgrade) request. */
  upgrade(req: IncomingMessage, socket: Socket, head: Buffer, target: string, agent: Agent, done: (exchange: Exchange) => void): void;
  close(): void;
}

export function createForwarder(): Forwarder {
  const proxy = httpProxy.createProxyServer({ xfwd: false, changeOrigin: false, ws: true });
  const pending = new WeakMap<IncomingMessage, Pending>();

  proxy.on('proxyReq', (proxyReq, req, res) => {
    const p = pending.get(req);
    if (!p) return;
    p.proxyReq = proxyReq;
    // The client went away before the response ended: cancel the upstream request.
    res.once('close', () => {
      if (!res.writableFinished) proxyReq.destroy();
    });
  });

  proxy.on('proxyRes', (proxyRes, req, res) => {
    stripHopByHop(proxyRes.headers);
    const p = pending.get(req);
    if (!p) return;
    p.exchange.status = proxyRes.statusCode ?? 0;
    p.exchange.responseAt = performance.now();
    proxyRes.on('data', (chunk: Buffer) => (p.exchange.bytesOut += chunk.length));
    proxyRes.once('close', () => {
      if (!proxyRes.complete) {
        // The upstream died mid-response: cut the client's response so it sees an error.
        p.exchange.error ??= new ProxyError('UPSTREAM_RESET', 'upstream closed the connection mid-response');
        (res as ServerResponse).destroy();
      }
    });
  });

  proxy.on('proxyReqWs', (proxyReq, req) => {
    const p = pending.get(req);
    if (!p) return;
    p.proxyReq = proxyReq;
    proxyReq.once('upgrade', () => (p.exchange.status = 101));
    proxyReq.once('response', (r: IncomingMessage) => (p.exchange.status = r.statusCode ?? 0));
  });

  const begin = (req: IncomingMessage, done: (e: Exchange) => void): Pending => {
    const p: Pending = { exchange: { status: 0, bytesIn: 0, bytesOut: 0, error: undefined, responseAt: undefined }, done };
    pending.set(req, p);
    return p;
  };

  return {
    web(req, res, target, agent, done) {
      const p = begin(req, done);
      req.on('data', (chunk: Buffer) => (p.exchange.bytesIn += chunk.length));
      // Node answers `Expect: 100-continue` itself (as Envoy does by default), so it is not forwarded.
      delete req.headers.expect;
      const hadBody = req.headers['transfer-encoding'] !== undefined && req.headers['content-length'] === undefined;
      stripHopByHop(req.headers);
      // A chunked request is re-framed as chunked (Node would not chunk e.g. a DELETE by default).
      if (hadBody) req.headers['transfer-encoding'] = 'chunked';
      res.once('close', () => {
        if (!res.writableFinished && !p.exchange.error && res.headersSent) {
          p.exchange.error = new ProxyError('UPSTREAM_RESET', 'response not completed');
        }
        if (!res.writableFinished && !res.headersSent && !p.exchange.error) p.exchange.status = 499; // client closed
        p.done(p.exchange);
      });
      proxy.web(req, res, { target, agent }, (err) => {
        const error = classifyUpstreamError(err);
        p.exchange.error = error;
        p.exchange.status = res.headersSent ? p.exchange.status : error.status;
        if (res.headersSent) res.destroy();
        else sendProxyError(res, error);
      });
    },

    upgrade(req, socket, head, target, agent, done) {
      const p = begin(req, done);
      stripHopByHop(req.headers, true);
      let finished = false;
      const finish = () => {
        if (finished) return;
        finished = true;
        p.exchange.bytesIn = socket.bytesRead;
        p.exchange.bytesOut = socket.bytesWritten;
        p.done(p.exchange);
      };
      socket.once('close', finish);
      proxy.ws(req, socket, head, { target, agent }, (err) => {
        const error = classifyUpstreamError(err);
        p.exchange.error = error;
        p.exchange.status = error.status;
        if (socket.writable && !socket.destroyed) {
          socket.end(`HTTP/1.1 ${error.status} ${error.reason}\r\nx-tsmesh-error: ${error.reason}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
        } else socket.destroy();
      });
    },

    close() {
      proxy.close();
    },
  };
}
