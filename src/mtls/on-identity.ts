// mTLS once the workload has a certificate: the mesh TLS contexts and the inbound TLS servers
// (strict and permissive) exist from the identity's first certificate on. Until then `mesh` and
// `inbound` are undefined: the sidecar is not ready, meshed calls fail over, inbound mTLS is refused.
import type * as tls from 'node:tls';
import type { IdentityProvider } from '../identity/provider.ts';
import type { Logger } from '../log/log.ts';
import { createMeshTls, MESH_ALPN, type MeshTls } from './mesh-tls.ts';

export interface MeshTlsServers {
  readonly ownSpiffeId: string;
  readonly strict: tls.Server;
  readonly permissive: tls.Server;
}

export interface MeshTlsOnIdentity {
  readonly mesh: MeshTls | undefined;
  readonly inbound: MeshTlsServers | undefined;
}

export interface MeshTlsOnIdentityDeps {
  readonly log: Logger;
  /** An admitted inbound connection, with the peer's SPIFFE ID (null: permissive, unauthenticated). */
  readonly onSecure: (socket: tls.TLSSocket, peer: string | null) => void;
  /** An inbound handshake that failed or was refused, with its reason. */
  readonly onHandshakeError: (reason: string | undefined) => void;
}

export function meshTlsOnIdentity(identity: IdentityProvider | null, deps: MeshTlsOnIdentityDeps): MeshTlsOnIdentity {
  const state: { mesh: MeshTls | undefined; inbound: MeshTlsServers | undefined } = { mesh: undefined, inbound: undefined };
  const { log } = deps;
  identity?.ready.then(
    () => {
      const mesh = createMeshTls(identity, { log, alpn: [MESH_ALPN, 'h2'] }); // h2: HTTP/2 between sidecars
      state.mesh = mesh;
      const tlsLog = log.child({ component: 'mtls' });
      const servers = (['strict', 'permissive'] as const).map((mode) => {
        const server = mesh.inboundServer(mode, deps.onSecure);
        server.on('tlsClientError', (err: Error & { code?: string; reason?: string }, socket: { remoteAddress?: string }) => {
          deps.onHandshakeError(err.reason ?? err.code);
          tlsLog.warn({ code: err.code, reason: err.reason, client: socket.remoteAddress }, `inbound TLS refused: ${err.message}`);
        });
        return server;
      });
      state.inbound = { ownSpiffeId: mesh.ownSpiffeId, strict: servers[0]!, permissive: servers[1]! };
      log.info({ spiffeId: mesh.ownSpiffeId }, 'workload identity ready: mTLS on');
    },
    () => undefined, // closed before the first certificate
  );
  return state;
}
