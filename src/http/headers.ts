// Hop-by-hop headers (RFC 9110 section 7.6.1) belong to one connection and are not forwarded.
import type { IncomingHttpHeaders } from 'node:http';

const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade'];

/** Removes hop-by-hop headers in place, including those the Connection header names. */
export function stripHopByHop(headers: IncomingHttpHeaders, keepUpgrade = false): void {
  const connection = headers.connection;
  if (connection) {
    for (const token of connection.split(',')) {
      const name = token.trim().toLowerCase();
      if (name && !(keepUpgrade && name === 'upgrade')) delete headers[name];
    }
  }
  for (const name of HOP_BY_HOP) {
    if (keepUpgrade && (name === 'connection' || name === 'upgrade')) continue;
    delete headers[name];
  }
}

/**
 * Appends the caller to x-forwarded-for and sets x-forwarded-proto/-host (as Envoy does);
 * `host`: the request's authority (Host, or HTTP/2's :authority).
 */
export function setForwarded(headers: Record<string, string | string[] | number | undefined>, clientAddress: string | undefined, proto: 'http' | 'https', host: string): void {
  if (clientAddress) {
    const addr = clientAddress.startsWith('::ffff:') ? clientAddress.slice(7) : clientAddress;
    const prior = headers['x-forwarded-for'];
    headers['x-forwarded-for'] = prior ? `${Array.isArray(prior) ? prior.join(', ') : prior}, ${addr}` : addr;
  }
  headers['x-forwarded-proto'] ??= proto;
  if (host) headers['x-forwarded-host'] ??= host;
}
