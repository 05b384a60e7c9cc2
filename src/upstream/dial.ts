// How the sidecar reaches an endpoint: a meshed pod through its sidecar's inbound port, with
// mTLS that checks the pod's SPIFFE ID when the mesh has identities (ALPN "h2" for an HTTP/2
// connection, "tsmesh/1" for the rest), and the mesh preamble (src/mesh/preamble.ts) naming
// the app port and the protocol; anything else directly at ip:port.
import { connect, Socket } from 'node:net';
import type { ConnectionOptions } from 'node:tls';
import { preamble, type MeshProtocol } from '../mesh/preamble.ts';
import { MESH_ALPN } from '../mtls/index.ts';
import type { MeshTls } from '../mtls/index.ts';
import { spiffeIdOf } from '../identity/spiffe.ts';

/**
 * How long an idle pooled connection is kept: to a peer sidecar (whose inbound keeps it 60 s),
 * and to an app, closed before the usual 5 s keep-alive timeout of app servers so a
 * connection the server is closing is not reused. Both pools (the raw-socket core's and the
 * node:http agents for WebSocket) use these.
 */
export const MESH_IDLE_MS = 50_000;
export const APP_IDLE_MS = 4_000;

export interface Destination {
  readonly ip: string;
  readonly port: number;
  /** Has a sidecar: go through its inbound port. */
  readonly meshed: boolean;
  /** Whose sidecar it is: the meshed endpoint must present this workload's SPIFFE ID. */
  readonly identity?: { readonly namespace: string; readonly serviceAccount: string } | undefined;
}

/** Each destination object's pool key, made once (destinations are not changed once made). */
const keys = new WeakMap<Destination, string>();

/** One pool per destination: a meshed endpoint's also by whose sidecar it must be. */
export function poolKey(dest: Destination): string {
  let key = keys.get(dest);
  if (key === undefined) keys.set(dest, (key = dest.meshed ? `m:${dest.identity?.namespace}/${dest.identity?.serviceAccount}@${dest.ip}:${dest.port}` : `p:${dest.ip}:${dest.port}`));
  return key;
}

type EndpointLike = { readonly ip: string; readonly port: number; readonly pod: { readonly meshed: boolean; readonly namespace: string; readonly serviceAccount: string } };
/** An endpoint's destination, one per endpoint object (the registry's are immutable): the pools find it without a new key per request. */
const destinations = new WeakMap<EndpointLike, Destination>();

/** The destination of an endpoint from the registry. */
export function endpointDestination(ep: EndpointLike): Destination {
  let dest = destinations.get(ep);
  if (dest === undefined) destinations.set(ep, (dest = { ip: ep.ip, port: ep.port, meshed: ep.pod.meshed, identity: ep.pod }));
  return dest;
}

export interface Dialer {
  /**
   * `protocol`: what the connection carries (default HTTP/1.1); "tcp": the bytes are not HTTP
   * (the peer sidecar pipes them as TCP); "h2": HTTP/2 (prior knowledge to an unmeshed endpoint).
   * `ready` runs once the connection is up and the preamble written (not on failure: the
   * socket's 'error' says that), e.g. to hand the socket over to node:http2, whose session
   * must not start while a write of ours is still in flight on a TLS socket.
   */
  dial(dest: Destination, protocol?: MeshProtocol, ready?: () => void, read?: ReadInto): Socket;
}

/**
 * Bytes read on a plain TCP connection (the first `length` bytes of `buffer`), given in a buffer that is reused for the next read
 * (Node's `onread`: no Readable, no buffer allocated per read); whatever outlives the call must
 * be copied. A TLS connection ignores it and emits 'data' as usual.
 */
export type ReadInto = (buffer: Buffer, length: number) => void;

/** The one buffer every plain connection reads into: a read's callback runs to its end before the next read. */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

function readInto(read: ReadInto | undefined): { onread?: { buffer: Buffer; callback: (n: number, buf: Uint8Array) => boolean } } {
  // true: go on reading (a pause() of the socket in `read` stops it all the same)
  return read === undefined ? {} : { onread: { buffer: READ_BUFFER, callback: (n, buf) => (read(buf as Buffer, n), true) } };
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
    dial(dest, protocol = 'http1', ready, read) {
      if (!dest.meshed) {
        const plain = connect({ host: dest.ip, port: dest.port, noDelay: true, ...local, ...readInto(read) });
        if (ready) plain.once('connect', ready);
        return plain;
      }
      let socket: Socket;
      if (!options.mtls) socket = connect({ host: dest.ip, port: options.inboundPort, noDelay: true, ...local, ...readInto(read) });
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
        const alpn: ConnectionOptions = { ALPNProtocols: [protocol === 'h2' ? 'h2' : MESH_ALPN] };
        const tls = mesh.connect({ host: dest.ip, port: options.inboundPort, spiffeId }, { ...alpn, ...(local as ConnectionOptions) });
        tls.setNoDelay(true);
        let secure = false;
        tls.once('secureConnect', () => (secure = true));
        tls.once('error', (err: NodeJS.ErrnoException) => {
          if (!secure) options.onHandshakeError?.(err);
        });
        socket = tls;
      }
      socket.write(preamble(dest.port, protocol), ready && ((err) => !err && ready()));
      return socket;
    },
  };
}
