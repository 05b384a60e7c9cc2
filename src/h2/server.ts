// The HTTP/2 side of a listener: accepted connections whose first bytes are the HTTP/2 preface
// (or that a peer sidecar's preamble marks as HTTP/2) are handed to a node:http2 server with the
// context their pipeline found for the connection (its destination, or its caller); each stream
// reaches `onStream` with it. Sessions are tracked so a drain can send GOAWAY (clients finish
// their streams and reconnect elsewhere) and a close can end them.
import { createServer, type Http2Server, type IncomingHttpHeaders, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import type { Socket } from 'node:net';
import type { Logger } from '../log/log.ts';

export interface H2Listener<C> {
  readonly server: Http2Server;
  /** Takes over an accepted socket (its first bytes put back) as an HTTP/2 connection in `context`. */
  accept(socket: Socket, context: C): void;
  /** Sends GOAWAY on every session: streams in flight finish, no new ones start. */
  goaway(): void;
  /** Ends every session now. */
  closeAll(): void;
  /** Open sessions. */
  readonly sessions: number;
}

export interface H2ListenerOptions {
  /** A session with no frame either way for this long is closed (TSMESH_IDLE_TIMEOUT). */
  readonly idleTimeoutMs: number;
}

export function createH2Listener<C>(onStream: (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, context: C) => void, log: Logger, options: H2ListenerOptions): H2Listener<C> {
  // maxSessionMemory: a proxy's sessions carry many callers' streams (the default is 10 MB)
  const server = createServer({ maxSessionMemory: 64 });
  const sessions = new Set<ServerHttp2Session>();
  let accepting: { context: C } | undefined;

  // Emitted synchronously inside server.emit('connection') (accept below), where `accepting`
  // holds the connection's context: it is bound to the session's own 'stream' listener here,
  // so a stream always reaches the pipeline with it, even one whose session a later frame of
  // the same packet has already destroyed (its 'stream' event comes a tick after the frames).
  server.on('session', (session: ServerHttp2Session) => {
    if (!accepting) return void session.destroy(); // not a connection handed over by accept()
    const { context } = accepting;
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
    session.on('error', (err: NodeJS.ErrnoException) => log.debug({ code: err.code, err: err.message }, 'HTTP/2 session error'));
    let open = 0;
    session.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
      stream.on('error', () => undefined); // a reset stream; its 'close' tells the pipeline
      // reset (or its session gone) before the pipeline saw it: nothing to forward, nothing to count
      if (stream.destroyed || stream.closed) return void log.debug({ path: headers[':path'] }, 'HTTP/2 stream closed before it could be proxied');
      open++;
      stream.once('close', () => open--);
      onStream(stream, headers, context);
    });
    // Idle (no frame either way): without streams it is closed, as an idle HTTP/1.1 keep-alive
    // connection is. One already closing (GOAWAY sent or received) is destroyed with what is left
    // on it: a protocol error during a graceful close ends nghttp2's session, after which Node
    // reads the socket no more and would never see the client go (its streams would stay open).
    session.setTimeout(options.idleTimeoutMs, () => {
      if (session.closed) session.destroy();
      else if (open === 0) session.close();
    });
  });
  server.on('sessionError', () => undefined);

  return {
    server,
    accept(socket, context) {
      accepting = { context };
      try {
        server.emit('connection', socket);
      } finally {
        accepting = undefined;
      }
    },
    goaway() {
      for (const s of sessions) if (!s.closed) s.close();
    },
    closeAll() {
      for (const s of sessions) s.destroy();
      sessions.clear();
    },
    get sessions() {
      return sessions.size;
    },
  };
}
