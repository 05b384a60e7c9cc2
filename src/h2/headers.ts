// Header blocks between HTTP/2 peers. Connection-specific fields are not allowed in HTTP/2
// (RFC 9113 8.2.2) and a proxy drops any that an HTTP/2 peer sends anyway (as it drops
// hop-by-hop headers in HTTP/1.1); `te` passes only as "trailers" (gRPC sends it).
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http2';

const CONNECTION_SPECIFIC = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'http2-settings', 'host']);

/** A request's fields to forward: pseudo-headers kept (`:authority` stays the client's). */
export function requestHeaders(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const name of Object.keys(headers)) {
    if (CONNECTION_SPECIFIC.has(name)) continue;
    const value = headers[name];
    if (value === undefined) continue;
    if (name === 'te' && value !== 'trailers') continue;
    out[name] = value;
  }
  if (out[':authority'] === undefined && typeof headers.host === 'string') out[':authority'] = headers.host;
  return out;
}

/** A response head's or trailer block's fields to forward: no pseudo-headers but `:status`. */
export function responseHeaders(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const name of Object.keys(headers)) {
    if (CONNECTION_SPECIFIC.has(name) || name === 'te') continue;
    if (name.startsWith(':') && name !== ':status') continue;
    const value = headers[name];
    if (value !== undefined) out[name] = value;
  }
  return out;
}
