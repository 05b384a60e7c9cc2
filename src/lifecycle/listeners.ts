// The sidecar's listening sockets: outbound (IPv4, and IPv6 loopback in a pod), inbound and admin.
// In a pod the outbound listener takes only loopback (iptables REDIRECT delivers the app's
// connections to 127.0.0.1 / ::1), so it is no open proxy for other pods; the inbound and admin
// listeners take every address, IPv4 and IPv6. In local mode all bind the pod's address. The
// outbound and inbound ones cap their open connections (past the cap Node closes new ones at once).
import { createServer, type Server as NetServer, type AddressInfo, type Socket } from 'node:net';
import type { Server } from 'node:http';
import type { Logger } from '../log/log.ts';

export interface ListenersOptions {
  readonly outbound: (socket: Socket) => void;
  readonly inbound: (socket: Socket) => void;
  readonly admin: Server;
  readonly maxConnections: number;
  readonly log: Logger;
}

export interface ListenAddresses {
  readonly bindAddress: string;
  readonly outboundPort: number;
  readonly inboundPort: number;
  readonly adminPort: number;
}

export interface Bound {
  readonly outbound: AddressInfo;
  readonly inbound: AddressInfo;
  readonly admin: AddressInfo;
}

export class Listeners {
  readonly #outbound: NetServer;
  readonly #outbound6: NetServer;
  readonly #inbound: NetServer;
  readonly #admin: Server;
  readonly #log: Logger;

  constructor(o: ListenersOptions) {
    this.#outbound = createServer({ noDelay: true }, o.outbound);
    this.#outbound6 = createServer({ noDelay: true }, o.outbound);
    this.#inbound = createServer({ noDelay: true }, o.inbound);
    this.#admin = o.admin;
    this.#log = o.log;
    for (const [name, l] of [['outbound', this.#outbound], ['outbound', this.#outbound6], ['inbound', this.#inbound]] as const) {
      l.maxConnections = o.maxConnections;
      l.on('drop', (d?: { remoteAddress?: string }) => o.log.warn({ code: 'TSMESH_TOO_MANY_CONNECTIONS', listener: name, client: d?.remoteAddress, max: o.maxConnections }, `connection refused: the ${name} listener has TSMESH_MAX_CONNECTIONS open`));
    }
  }

  /** Listens on all; rejects with an error naming the listener and the likely cause. */
  async listen(a: ListenAddresses): Promise<Bound> {
    const inPod = isUnspecified(a.bindAddress);
    const [outbound, inbound, admin] = await Promise.all([
      listen(this.#outbound, inPod ? '127.0.0.1' : a.bindAddress, a.outboundPort, 'outbound'),
      listenAll(this.#inbound, a.bindAddress, a.inboundPort, 'inbound'),
      listenAll(this.#admin, a.bindAddress, a.adminPort, 'admin'),
    ]);
    if (inPod) await listen(this.#outbound6, '::1', outbound.port, 'outbound (IPv6)').catch((err: Error) => this.#log.debug({ err: err.message }, 'no IPv6 loopback; outbound listens on IPv4 only'));
    return { outbound, inbound, admin };
  }

  /** Drain: no new connections on the outbound and inbound listeners (the admin one still answers). */
  stopAccepting(): void {
    this.#outbound.close();
    this.#outbound6.close();
    this.#inbound.close();
  }

  /** After a failed start: closes whichever listens, without waiting. */
  abort(): void {
    for (const s of [this.#outbound, this.#outbound6, this.#inbound, this.#admin]) if (s.listening) s.close();
  }

  /** Closes all four; resolves when they are closed. */
  async close(): Promise<void> {
    await Promise.all([close(this.#outbound), close(this.#outbound6), close(this.#inbound), close(this.#admin)]);
  }
}

export const isUnspecified = (address: string): boolean => address === '0.0.0.0' || address === '::';

function listen(server: NetServer | Server, host: string, port: number, name: string): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      const hint = err.code === 'EADDRINUSE' ? ' (another process uses it: stop it or set the port variable)' : err.code === 'EADDRNOTAVAIL' ? ' (no interface has this address: check TSMESH_BIND_ADDRESS)' : '';
      reject(Object.assign(new Error(`cannot listen for ${name} on ${host}:${port}: ${err.code}${hint}`), { code: err.code }));
    });
    server.listen({ host, port }, () => {
      server.removeAllListeners('error');
      resolve(server.address() as AddressInfo);
    });
  });
}

/** Listens on every address: dual-stack `::` where the system has IPv6, else 0.0.0.0. */
async function listenAll(server: NetServer | Server, host: string, port: number, name: string): Promise<AddressInfo> {
  if (host !== '0.0.0.0') return listen(server, host, port, name);
  try {
    return await listen(server, '::', port, name);
  } catch (err) {
    if (!['EAFNOSUPPORT', 'EADDRNOTAVAIL'].includes((err as NodeJS.ErrnoException).code ?? '')) throw err;
    return listen(server, '0.0.0.0', port, name);
  }
}

function close(server: NetServer | Server): Promise<void> {
  return new Promise((resolve) => (server.listening ? server.close(() => resolve()) : resolve()));
}
