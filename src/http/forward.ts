// HTTP/1.1 forwarding over the keep-alive pools, and WebSocket forwarding with http-proxy. One
// call to `attempt` is one try of a request against one endpoint; the caller (the retry loop)
// sees the upstream's response head or error and decides whether to `respond` with it or to
// try again. This module owns the details of a proxied exchange: hop-by-hop headers, request
// bodies that can be replayed, streaming both ways, an upstream that dies mid-response (the
// client's response is cut, never left hanging), and cancelling an attempt (its upstream
// socket closes).
//
// An attempt is one node:http request made here, doing what http-proxy's web pass did for us
// (the same outgoing request: method, origin-form path, the prepared headers, the pool's
// agent) without its per-request costs: two url.parse calls, each of which makes Node 24
// capture a stack trace to decide on a deprecation warning, option copies and its event
// plumbing (bench/NOTES.md). http-proxy still carries WebSocket upgrades.
import httpProxy from 'http-proxy';
import { request, type Agent, type ClientRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { stripHopByHop } from './headers.ts';
import { classifyUpstreamError, ProxyError } from '../errors/errors.ts';
import { sendProxyError } from '../errors/response.ts';

export interface AttemptHandlers {
  /** The upstream's response head arrived; its body is not consumed yet. */
  onResponse(proxyRes: IncomingMessage): void;
  /** The attempt failed before a response head (connect failure, reset). */
  onError(err: ProxyError): void;
}

export interface Attempt {
  /** Abandons the attempt: the upstream request is destroyed (its socket closed). */
  cancel(): void;
}

export interface Forwarder {
  /**
   * Sends `req` to `target` (http://ip:port) over `agent`. `body` replaces the request's own
   * stream (a buffered body, for a replayable request); without it `req` is streamed.
   */
  attempt(req: IncomingMessage, res: ServerResponse, target: string, agent: Agent, body: Readable | undefined, handlers: AttemptHandlers): Attempt;
  /** Sends the upstream's response to the client, streaming; `done` runs when it ends or is cut. */
  respond(res: ServerResponse, proxyRes: IncomingMessage, done: (result: { bytes: number; cut: boolean }) => void): void;
  /** Forwards a WebSocket (any HTTP/1.1 Upgrade) request; `done` runs once when it ends. */
  upgrade(req: IncomingMessage, socket: Socket, head: Buffer, target: string, agent: Agent, done: (result: { status: number; error: ProxyError | undefined }) => void): void;
  close(): void;
}

const targets = new Map<string, { hostname: string; port: number }>();

/** hostname and port of http://ip:port (IPv6 in brackets), remembered per target. */
function parseTarget(target: string): { hostname: string; port: number } {
  let t = targets.get(target);
  if (!t) {
    const u = new URL(target);
    t = { hostname: u.hostname.replace(/^\[|\]$/g, ''), port: Number(u.port) || 80 };
    if (targets.size >= 4096) targets.clear(); // endpoints come and go: keep the memo bounded
    targets.set(target, t);
  }
  return t;
}

/** The request target in origin form: an absolute-form URL (an HTTP_PROXY client) loses its scheme and authority. */
function originForm(url: string | undefined): string {
  if (!url) return '/';
  if (url.charCodeAt(0) === 47 /* / */) return url;
  const scheme = url.indexOf('://');
  if (scheme === -1) return url;
  const slash = url.indexOf('/', scheme + 3);
  const query = url.indexOf('?', scheme + 3);
  if (slash === -1 || (query !== -1 && query < slash)) return query === -1 ? '/' : `/${url.slice(query)}`;
  return url.slice(slash);
}

/** Prepares a client request's headers for forwarding, once (before the first attempt). */
export function prepareRequestHeaders(req: IncomingMessage): void {
  // Node answers `Expect: 100-continue` itself (as Envoy does by default), so it is not forwarded.
  delete req.headers.expect;
  const chunked = req.headers['transfer-encoding'] !== undefined && req.headers['content-length'] === undefined;
  stripHopByHop(req.headers);
  // A chunked request is re-framed as chunked (Node would not chunk e.g. a DELETE by default).
  if (chunked) req.headers['transfer-encoding'] = 'chunked';
}

export function createForwarder(): Forwarder {
  const proxy = httpProxy.createProxyServer({ xfwd: false, changeOrigin: false, ws: true, selfHandleResponse: true });

  return {
    attempt(req, _res, target, agent, body, handlers) {
      let over = false;
      // DELETE and OPTIONS without a length are sent with an empty body (as http-proxy did).
      if ((req.method === 'DELETE' || req.method === 'OPTIONS') && !req.headers['content-length']) {
        req.headers['content-length'] = '0';
        delete req.headers['transfer-encoding'];
      }
      const { hostname, port } = parseTarget(target);
      // node:http copies the headers when the request is made: a retry's x-tsmesh-attempt is its own.
      const proxyReq = request({ hostname, port, method: req.method, path: originForm(req.url), headers: req.headers, agent });
      const onError = (err: Error & { code?: string }) => {
        if (over) return;
        over = true;
        // The client went away first: its own handling (onClientGone) reports the request.
        if (req.socket.destroyed && err.code === 'ECONNRESET') {
          proxyReq.destroy();
          return;
        }
        handlers.onError(classifyUpstreamError(err));
      };
      proxyReq.on('error', onError);
      req.on('error', onError);
      req.once('aborted', () => proxyReq.destroy());
      proxyReq.once('response', (proxyRes: IncomingMessage) => {
        if (over) {
          proxyRes.destroy();
          return;
        }
        over = true;
        handlers.onResponse(proxyRes);
      });
      (body ?? req).pipe(proxyReq);
      return {
        cancel() {
          if (over) return;
          over = true;
          proxyReq.destroy();
        },
      };
    },

    respond(res, proxyRes, done) {
      stripHopByHop(proxyRes.headers);
      let bytes = 0;
      let finished = false;
      const finish = (cut: boolean) => {
        if (finished) return;
        finished = true;
        done({ bytes, cut });
      };
      proxyRes.on('data', (chunk: Buffer) => (bytes += chunk.length));
      proxyRes.once('close', () => {
        if (!proxyRes.complete) {
          // The upstream died mid-response: cut the client's response so it sees an error.
          res.destroy();
          finish(true);
        }
      });
      res.once('finish', () => finish(false));
      res.once('close', () => {
        if (!res.writableFinished) {
          proxyRes.destroy(); // the client went away: stop reading from the upstream
          finish(true);
        }
      });
      res.writeHead(proxyRes.statusCode ?? 502, proxyRes.statusMessage, headerPairs(proxyRes));
      proxyRes.pipe(res);
    },

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

/** Ends a socket's write side and closes it once that is flushed (what is queued still goes out). */
function closeSoon(socket: Socket): void {
  if (socket.destroyed) return;
  socket.end();
  if (socket.writableFinished) socket.destroy();
  else socket.once('finish', () => socket.destroy());
}

/** The upstream's headers as written (original case, repeated headers kept), for writeHead. */
function headerPairs(proxyRes: IncomingMessage): string[] {
  const out: string[] = [];
  const raw = proxyRes.rawHeaders;
  const keep = proxyRes.headers; // hop-by-hop already removed from this view
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (keep[name.toLowerCase()] === undefined) continue;
    out.push(name, raw[i + 1]!);
  }
  return out;
}

export interface ForwardResult {
  status: number;
  error: ProxyError | undefined;
  bytesIn: number;
  bytesOut: number;
}

/** One try, no retries (the inbound side: the app is the only endpoint). */
export function forwardOnce(forwarder: Forwarder, req: IncomingMessage, res: ServerResponse, target: string, agent: Agent, done: (r: ForwardResult) => void): void {
  const result: ForwardResult = { status: 0, error: undefined, bytesIn: 0, bytesOut: 0 };
  let finished = false;
  const finish = () => {
    if (finished) return;
    finished = true;
    done(result);
  };
  prepareRequestHeaders(req);
  req.on('data', (chunk: Buffer) => (result.bytesIn += chunk.length));
  const attempt = forwarder.attempt(req, res, target, agent, undefined, {
    onResponse(proxyRes) {
      result.status = proxyRes.statusCode ?? 0;
      forwarder.respond(res, proxyRes, ({ bytes, cut }) => {
        result.bytesOut = bytes;
        if (cut) result.error = new ProxyError('UPSTREAM_RESET', 'the response was cut');
        finish();
      });
    },
    onError(err) {
      result.error = err;
      result.status = err.status;
      sendProxyError(res, err);
      finish();
    },
  });
  res.once('close', () => {
    if (res.writableFinished || finished) return;
    attempt.cancel();
    if (!res.headersSent) result.status = 499;
    finish();
  });
}
