// How the sidecar reaches an endpoint: a meshed pod through its sidecar's inbound port, with
// mTLS that checks the pod's SPIFFE ID when the mesh has identities, and the mesh preamble
// (src/mesh/preamble.ts) naming the app port; anything else directly at ip:port.
import { connect, Socket } from 'node:net';
import type { ConnectionOptions } from 'node:tls';
import { preamble } from '../mesh/preamble.ts';
import type { MeshTls } from '../mtls/index.ts';
import { spiffeIdOf } from '../identity/spiffe.ts';

export interface Destination {
  readonly ip: string;
  readonly port: number;
  /** Has a sidecar: go through its inbound port. */
  readonly meshed: boolean;
  /** Whose sidecar it is: the meshed endpoint must present this workload's SPIFFE ID. */
  readonly identity?: { readonly namespace: string; readonly serviceAccount: string } | undefined;
}

/** The destination of an endpoint from the registry. */
export function endpointDestination(ep: { ip: string; port: number; pod: { meshed: boolean; namespace: string; serviceAccount: string } }): Destination {
  return { ip: ep.ip, port: ep.port, meshed: ep.pod.meshed, identity: ep.pod };
}

export interface Dialer {
  /** `opaque`: the bytes are not HTTP (the peer sidecar pipes them as TCP). */
  dial(dest: Destination, opaque?: boolean): Socket;
}

export class MeshNotReadyError extends Error {
  override readonly name = 'MeshNotReadyError';
  readonly code = 'ECONNREFUSED'; // classified as a connect failure: the request may go elsewhere
}

/**
 * `localAddress`: the pod's own address in local mode, where pods share the loopback interface.
 * `mesh`: the mTLS context, or undefined while the identity is not ready; `mtls: false` for a
 * mesh without identities (local mode without certificates), where the hop is plaintext.
 */
export function meshDialer(options: {
  inboundPort: number;
  localAddress?: string | undefined;
  trustDomain: string;
  mtls: boolean;
  mesh: () => MeshTls | undefined;
  /** A TLS handshake to a peer failed (metrics). */
  onHandshakeError?: (err: NodeJS.ErrnoException) => void;
}): Dialer {
  const local = options.localAddress ? { localAddress: options.localAddress } : {};
  return {
    dial(dest, opaque = false) {
      if (!dest.meshed) return connect({ host: dest.ip, port: dest.port, noDelay: true, ...local });
      let socket: Socket;
      if (!options.mtls) socket = connect({ host: dest.ip, port: options.inboundPort, noDelay: true, ...local });
      else {
        const mesh = options.mesh();
        if (!mesh || !dest.identity) {
          const failed = new Socket();
          const why = !mesh ? 'this sidecar has no certificate yet' : `no identity is known for ${dest.ip}`;
          process.nextTick(() => failed.destroy(new MeshNotReadyError(`cannot open mTLS to ${dest.ip}: ${why}`)));
          return failed;
        }
        const spiffeId = spiffeIdOf({ trustDomain: options.trustDomain, ...dest.identity });
        // tls.connect passes localAddress on to the TCP connection
        const tls = mesh.connect({ host: dest.ip, port: options.inboundPort, spiffeId }, local as ConnectionOptions);
        tls.setNoDelay(true);
        let secure = false;
        tls.once('secureConnect', () => (secure = true));
        tls.once('error', (err: NodeJS.ErrnoException) => {
          if (!secure) options.onHandshakeError?.(err);
        });
        socket = tls;
      }
      socket.write(preamble(dest.port, opaque));
      return socket;
    },
  };
}
