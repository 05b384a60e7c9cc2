// Reading a peer's SPIFFE ID from its certificate (the URI SAN; never the host name or CN).
import type { PeerCertificate, TLSSocket } from 'node:tls';
import { parseSpiffeId } from '../identity/spiffe.ts';
import { X509Certificate } from 'node:crypto';
import { certificateUris } from '../identity/certificates.ts';

// Peers present the same certificate for hours: remember what we parsed (by fingerprint).
const CACHE_MAX = 1024;
const cache = new Map<string, string | null>();

/**
 * The tsmesh SPIFFE ID of a DER certificate: its one `spiffe://` URI SAN, if that is a valid
 * tsmesh ID (spiffe://DOMAIN/ns/NS/sa/SA); null when it has none, several, or another shape.
 */
export function spiffeIdOfCertificate(der: Buffer, fingerprint?: string): string | null {
  const key = fingerprint ?? '';
  if (key && cache.has(key)) return cache.get(key)!;
  let id: string | null;
  try {
    const ids = certificateUris(new X509Certificate(der)).filter((u) => /^spiffe:\/\//i.test(u));
    id = ids.length === 1 && parseSpiffeId(ids[0]!) ? ids[0]! : null;
  } catch {
    id = null;
  }
  if (key) {
    if (cache.size >= CACHE_MAX) cache.delete(cache.keys().next().value!);
    cache.set(key, id);
  }
  return id;
}

export function spiffeIdOfPeerCertificate(cert: PeerCertificate | undefined | null): string | null {
  if (!cert?.raw) return null;
  return spiffeIdOfCertificate(cert.raw, cert.fingerprint256);
}

// Client connections made by MeshTls.connect: the server's ID was checked at the full handshake.
// On a resumed TLS 1.3 session Node shows no peer certificate (and runs no checkServerIdentity;
// sessions are kept per expected ID, so a resumption is with the server that passed the check).
const verifiedServers = new WeakMap<TLSSocket, string>();

export function rememberVerifiedServer(socket: TLSSocket, spiffeId: string): void {
  verifiedServers.set(socket, spiffeId);
}

/**
 * The verified SPIFFE ID of the other end of an established TLS connection, or null when the
 * peer sent no certificate, or one that did not chain to our trust anchors (permissive mode
 * lets those through), or one without a tsmesh SPIFFE ID. Call once per connection.
 */
export function peerSpiffeId(socket: TLSSocket): string | null {
  if (!socket.authorized) return null;
  const known = verifiedServers.get(socket);
  if (known) return known;
  return spiffeIdOfPeerCertificate(socket.getPeerCertificate());
}
