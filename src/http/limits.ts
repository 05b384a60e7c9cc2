// The HTTP listeners' limits (TSMESH_* settings, src/config/settings.ts): how long a client may
// take to send its headers (slowloris), how long a keep-alive connection may idle, and the
// largest request body where one is set. One place, for both pipelines.
import type { Server, ServerOptions } from 'node:http';
import { ProxyError } from '../errors/errors.ts';
import type { Limits } from '../config/settings.ts';

export function httpServerOptions(limits: Limits): ServerOptions {
  return {
    keepAliveTimeout: limits.idleTimeoutMs,
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: 0, // a request's body may stream for as long as it flows
    // Node checks header and request timeouts on this interval; the default (30 s) would let
    // a slow client hold a connection for much longer than headersTimeout
    connectionsCheckingInterval: Math.max(250, Math.min(1000, limits.headersTimeoutMs / 4)),
  };
}

/** The refusal for a request the sidecar will not take now, if any. */
export function admission(req: { readonly headers: { readonly 'content-length'?: string | string[] | undefined } }, limits: Limits, full: boolean): ProxyError | undefined {
  if (full) return new ProxyError('OVERLOADED', 'the sidecar has as many requests in flight as it takes (TSMESH_MAX_REQUESTS)');
  return declaredBodyTooLarge(req.headers['content-length'], limits.maxRequestBodyBytes);
}

/** The refusal of a request whose declared length (content-length, HTTP/1.1 or HTTP/2) is over the limit. */
export function declaredBodyTooLarge(contentLength: string | string[] | undefined, max: number | undefined): ProxyError | undefined {
  const declared = Number(Array.isArray(contentLength) ? contentLength[0] : contentLength);
  return max !== undefined && declared > max ? bodyTooLarge(declared, max) : undefined;
}

/** 413 body-too-large: `bytes` declared, or counted so far (an HTTP/2 body is counted as it arrives). */
export function bodyTooLarge(bytes: number, max: number): ProxyError {
  return new ProxyError('BODY_TOO_LARGE', `the request body (${bytes} bytes) is larger than the limit of ${max} bytes (TSMESH_MAX_REQUEST_BODY)`);
}

/**
 * The sidecar's HTTP servers never listen themselves: the listeners hand them sockets after
 * detection. Node sets up its connection tracking (which enforces headersTimeout and backs
 * closeIdleConnections/closeAllConnections) on 'listening', so it is started here by hand.
 */
export function trackConnections(server: Server): Server {
  server.emit('listening');
  return server;
}
