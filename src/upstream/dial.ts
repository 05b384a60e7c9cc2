// How the sidecar reaches an endpoint: a meshed pod through its sidecar's inbound port with the
// mesh preamble (src/mesh/preamble.ts), anything else directly at ip:port.
import { connect, type Socket } from 'node:net';
import { preamble } from '../mesh/preamble.ts';

export interface Destination {
  readonly ip: string;
  readonly port: number;
  /** Has a sidecar: go through its inbound port (and, with mTLS, verify its identity). */
  readonly meshed: boolean;
}

export interface Dialer {
  /** `opaque`: the bytes are not HTTP (the peer sidecar pipes them as TCP). */
  dial(dest: Destination, opaque?: boolean): Socket;
}

/** `localAddress`: the pod's own address in local mode, where pods share the loopback interface. */
export function plainDialer(options: { inboundPort: number; localAddress?: string | undefined }): Dialer {
  const local = options.localAddress ? { localAddress: options.localAddress } : {};
  return {
    dial(dest, opaque = false) {
      if (!dest.meshed) return connect({ host: dest.ip, port: dest.port, noDelay: true, ...local });
      const socket = connect({ host: dest.ip, port: options.inboundPort, noDelay: true, ...local });
      socket.write(preamble(dest.port, opaque));
      return socket;
    },
  };
}
