// TLS between sidecars, built from the workload identity: secure contexts (refreshed on every
// identity 'update'; connections already open keep the context they started with), client
// options that check the server's SPIFFE ID (URI SAN) against the one the registry expects,
// per-peer session reuse, and the inbound TLS server for each mTLS mode.
//
// TLS 1.3 only; ALPN "tsmesh/1" (more protocols, e.g. "h2", can be offered via `alpn`).
import * as tls from 'node:tls';
import type { Socket } from 'node:net';
import type { Logger } from '../log/log.ts';
import type { Identity, IdentityProvider } from '../identity/provider.ts';
import { peerSpiffeId, rememberVerifiedServer, spiffeIdOfPeerCertificate } from './peer.ts';

export const MESH_ALPN = 'tsmesh/1';

/** The inbound modes that terminate TLS ('disabled' never reaches TLS). */
export type InboundTlsMode = 'strict' | 'permissive';

export interface MeshPeer {
  /** IP (or name) of the peer's sidecar. */
  readonly host: string;
  readonly port: number;
  /** The SPIFFE ID the registry expects for this endpoint (spiffeIdOf({trustDomain, namespace, serviceAccount: pod.serviceAccount})). */
  readonly spiffeId: string;
}

/** The error a client connection fails with when the server is not who the registry said. */
export class PeerIdentityError extends Error {
  override readonly name = 'PeerIdentityError';
  readonly code = 'ERR_TSMESH_PEER_IDENTITY';
  readonly expected: string;
  readonly presented: string | null;
  constructor(expected: string, presented: string | null, where: string) {
    super(`${where} presented ${presented ?? 'no tsmesh SPIFFE ID'}, expected ${expected}`);
    this.expected = expected;
    this.presented = presented;
  }
}

/** Why an inbound TLS connection was refused after its handshake (emitted as the server's 'tlsClientError'). */
export class PeerRejectedError extends Error {
  override readonly name = 'PeerRejectedError';
  readonly code = 'ERR_TSMESH_PEER_REJECTED';
  /** OpenSSL's verdict (CERT_HAS_EXPIRED, UNABLE_TO_GET_ISSUER_CERT_LOCALLY, ...), NO_CERTIFICATE or NO_SPIFFE_ID. */
  readonly reason: string;
  constructor(reason: string, message: string) {
    super(message);
    this.reason = reason;
  }
}

/**
 * The inbound admission rule of a mode, for a TLS socket whose handshake is done:
 * strict needs a client certificate chained to our trust anchors and carrying a tsmesh SPIFFE ID;
 * permissive admits anyone (the peer then has the verified ID, or none).
 */
export function admitPeer(socket: tls.TLSSocket, mode: InboundTlsMode): { spiffeId: string | null } | PeerRejectedError {
  const spiffeId = peerSpiffeId(socket);
  if (mode === 'permissive' || spiffeId) return { spiffeId };
  const who = `${socket.remoteAddress ?? 'unknown'}:${socket.remotePort ?? ''}`;
  if (!socket.authorized) {
    const hasCert = Object.keys(socket.getPeerCertificate() ?? {}).length > 0;
    const reason = hasCert ? String(socket.authorizationError ?? 'UNAUTHORIZED') : 'NO_CERTIFICATE';
    return new PeerRejectedError(reason, hasCert ? `client ${who} refused: its certificate does not verify against the mesh trust anchors (${reason})` : `client ${who} refused: no client certificate (strict mTLS)`);
  }
  return new PeerRejectedError('NO_SPIFFE_ID', `client ${who} refused: its certificate carries no tsmesh SPIFFE ID`);
}

export interface MeshTlsOptions {
  /** ALPN protocols, in preference order; default ["tsmesh/1"]. */
  readonly alpn?: readonly string[];
  /** Sessions kept for resumption (one per peer); default 1024. */
  readonly sessionCacheSize?: number;
  readonly log?: Logger;
}

export interface MeshTls {
  /** Our own SPIFFE ID (from the identity in force). */
  readonly ownSpiffeId: string;
  /** The context for new connections (both directions), rebuilt on identity 'update'. */
  secureContext(): tls.SecureContext;
  /** Options for tls.connect to a meshed peer; prefer `connect`, which also keeps sessions. */
  clientOptions(peer: MeshPeer, extra?: tls.ConnectionOptions): tls.ConnectionOptions;
  /** Opens mTLS to a meshed peer; fails with PeerIdentityError (code ERR_TSMESH_PEER_IDENTITY) if it is someone else. */
  connect(peer: MeshPeer, extra?: tls.ConnectionOptions): tls.TLSSocket;
  /**
   * Options for an inbound tls.Server / TLSSocket in `mode` (the current context; `inboundServer`
   * follows updates). Strict rejects bad client certificates inside Node, without a reason.
   */
  serverOptions(mode: InboundTlsMode): tls.TlsOptions;
  /**
   * A tls.Server that never listens: hand it accepted sockets (after the first-byte detection,
   * bytes put back with socket.unshift) with `handOver(server, socket)`. Admitted connections
   * (see `admitPeer`) go to `onSecure` with the peer's SPIFFE ID (null: permissive, unauthenticated)
   * and are emitted as 'meshConnection'; do not use 'secureConnection', which also sees refused
   * ones. Refusals and failed handshakes are 'tlsClientError' events (PeerRejectedError for the
   * former). Its certificate follows identity updates.
   */
  inboundServer(mode: InboundTlsMode, onSecure?: (socket: tls.TLSSocket, peerSpiffeId: string | null) => void): tls.Server;
  /** Stops following identity updates. */
  close(): void;
}

export function createMeshTls(identity: IdentityProvider, options: MeshTlsOptions = {}): MeshTls {
  const alpn = [...(options.alpn ?? [MESH_ALPN])];
  const log = options.log?.child({ component: 'mtls' });
  const maxSessions = options.sessionCacheSize ?? 1024;
  const sessions = new Map<string, Buffer>();
  const servers = new Set<{ server: tls.Server; mode: InboundTlsMode }>();

  const contextOptions = (id: Identity): tls.SecureContextOptions => ({
    cert: id.certChainPem,
    key: id.keyPem,
    ca: id.trustAnchorsPem,
    minVersion: 'TLSv1.3',
    maxVersion: 'TLSv1.3',
  });
  let current = identity.current();
  let context = tls.createSecureContext(contextOptions(current));

  const onUpdate = (id: Identity): void => {
    let next: tls.SecureContext;
    try {
      next = tls.createSecureContext(contextOptions(id));
    } catch (err) {
      log?.error({ err, spiffeId: id.spiffeId }, 'cannot build a TLS context from the new identity; keeping the previous one');
      return;
    }
    current = id;
    context = next;
    // Sessions carry the client certificate they were made with: start afresh.
    sessions.clear();
    for (const { server } of servers) server.setSecureContext(contextOptions(current));
    log?.info({ spiffeId: id.spiffeId, notAfter: id.notAfter.toISOString() }, 'TLS contexts now use the new certificate');
  };
  identity.on('update', onUpdate);

  const serverContextOptions = (mode: InboundTlsMode): tls.TlsOptions => ({
    ...contextOptions(current),
    requestCert: true,
    // strict: the handshake fails without a client certificate chained to our anchors.
    // permissive: it completes; peerSpiffeId() is then null and authorization decides.
    rejectUnauthorized: mode === 'strict',
    ALPNProtocols: alpn,
  });

  const peerKey = (p: MeshPeer): string => `${p.host}|${p.port}|${p.spiffeId}`;

  const clientOptions = (peer: MeshPeer, extra: tls.ConnectionOptions = {}): tls.ConnectionOptions => {
    const session = sessions.get(peerKey(peer));
    return {
      host: peer.host,
      port: peer.port,
      secureContext: context,
      ALPNProtocols: alpn,
      rejectUnauthorized: true,
      // The identity is the URI SAN the registry expects, not the host name we dialled.
      checkServerIdentity: (_host, cert) => {
        const presented = spiffeIdOfPeerCertificate(cert);
        return presented === peer.spiffeId ? undefined : new PeerIdentityError(peer.spiffeId, presented, `the server at ${peer.host}:${peer.port}`);
      },
      ...(session ? { session } : {}),
      ...extra,
    };
  };

  return {
    get ownSpiffeId() {
      return current.spiffeId;
    },
    secureContext: () => context,
    clientOptions,
    connect(peer, extra) {
      const socket = tls.connect(clientOptions(peer, extra));
      const key = peerKey(peer);
      const myContext = context;
      socket.once('secureConnect', () => rememberVerifiedServer(socket, peer.spiffeId));
      socket.on('session', (session: Buffer) => {
        if (myContext !== context) return; // made with a certificate we no longer use
        if (!sessions.has(key) && sessions.size >= maxSessions) sessions.delete(sessions.keys().next().value!);
        sessions.delete(key);
        sessions.set(key, session);
      });
      socket.once('error', () => sessions.delete(key)); // a failed resumption must not be retried forever
      return socket;
    },
    serverOptions: serverContextOptions,
    inboundServer(mode, onSecure) {
      // Verification is decided by admitPeer after the handshake (not inside Node), so every
      // refusal has a reason to log and count.
      const server = tls.createServer({ ...serverContextOptions(mode), rejectUnauthorized: false });
      server.on('secureConnection', (socket: tls.TLSSocket) => {
        const verdict = admitPeer(socket, mode);
        if (verdict instanceof PeerRejectedError) {
          socket.destroy();
          server.emit('tlsClientError', verdict, socket);
          return;
        }
        onSecure?.(socket, verdict.spiffeId);
        server.emit('meshConnection', socket, verdict.spiffeId);
      });
      const entry = { server, mode };
      servers.add(entry);
      server.once('close', () => servers.delete(entry));
      return server;
    },
    close() {
      identity.off('update', onUpdate);
      servers.clear();
      sessions.clear();
    },
  };
}

/** Hands an accepted (and possibly peeked) TCP socket to an inbound TLS server. */
export function handOver(server: tls.Server, socket: Socket): void {
  server.emit('connection', socket);
}
