// Opaque TCP passthrough: bytes both ways, with backpressure (pipe), half-close forwarded each
// way (a FIN from one side ends our write side towards the other, which may still answer), and
// an error or reset on either side closing the other. The connection is over when both
// sockets have closed: both directions ended, or one side failed. `done` runs once then, with
// the byte counts for the access log.
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
  // A FIN from one side must not end our side towards it at once: the other side may still be
  // answering (a client that sends, half-closes and reads to the end). Each socket's write side
  // is ended by the pipe when the other side's FIN arrives; a socket closes when both its
  // directions are done.
  client.allowHalfOpen = true;
  upstream.allowHalfOpen = true;
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
  // a side that closes without an error after a one-sided end (e.g. destroyed by the runtime)
  // takes the other with it, so no socket is left half-open
  client.once('close', () => {
    if (!upstream.destroyed && !client.writableFinished) upstream.destroy();
    onClose();
  });
  upstream.once('close', () => {
    if (!client.destroyed && !upstream.writableFinished) client.destroy();
    onClose();
  });
  client.pipe(upstream);
  upstream.pipe(client);
  client.resume();
}
