// Opaque TCP passthrough: bytes both ways, half-close respected, errors on one side close the
// other. `done` runs once with the byte counts for the access log.
import type { Socket } from 'node:net';

export interface TcpOutcome {
  bytesIn: number; // client -> upstream
  bytesOut: number; // upstream -> client
  error: string | undefined;
  connected: boolean;
}

/** `idleMs`: a connection with no bytes either way for this long is closed. */
export function pipeSockets(client: Socket, upstream: Socket, done: (outcome: TcpOutcome) => void, idleMs = 0): void {
  let error: string | undefined;
  if (idleMs > 0) {
    // activity on either side counts: reading or writing on the client socket resets its timer
    client.setTimeout(idleMs, () => {
      error ??= `idle for ${idleMs} ms`;
      client.destroy();
      upstream.destroy();
    });
  }
  let connected = false;
  let closed = 0;
  const onClose = () => {
    if (++closed < 2) return;
    done({ bytesIn: upstream.bytesWritten, bytesOut: client.bytesWritten, error, connected });
  };
  upstream.once('connect', () => (connected = true));
  upstream.once('secureConnect', () => (connected = true));
  client.on('error', (err) => {
    error ??= `client: ${(err as NodeJS.ErrnoException).code ?? err.message}`;
    upstream.destroy();
  });
  upstream.on('error', (err) => {
    error ??= `upstream: ${(err as NodeJS.ErrnoException).code ?? err.message}`;
    client.destroy();
  });
  client.once('close', onClose);
  upstream.once('close', onClose);
  client.pipe(upstream);
  upstream.pipe(client);
  client.resume();
}
