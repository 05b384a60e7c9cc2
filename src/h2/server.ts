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

export function createH2Listener<C>(onStream: (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, context: C) => void, log: Logger): H2Listener<C> {
  // maxSessionMemory: a proxy's sessions carry many callers' streams (the default is 10 MB)
  const server = createServer({ maxSessionMemory: 64 });
  const contexts = new WeakMap<ServerHttp2Session, C>();
  const sessions = new Set<ServerHttp2Session>();
  let accepting: C | undefined;

  // emitted synchronously inside server.emit('connection'), where `accepting` is the context
  server.on('session', (session: ServerHttp2Session) => {
    contexts.set(session, accepting as C);
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
    session.on('error', (err: NodeJS.ErrnoException) => log.debug({ code: err.code, err: err.message }, 'HTTP/2 session error'));
  });
  server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
    stream.on('error', () => undefined); // a reset stream; its 'close' tells the pipeline
    onStream(stream, headers, contexts.get(stream.session as ServerHttp2Session)!);
  });
  server.on('sessionError', () => undefined);

  return {
    server,
    accept(socket, context) {
      accepting = context;
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
