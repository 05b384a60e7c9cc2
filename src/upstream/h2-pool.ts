// HTTP/2 sessions to endpoints, one per destination, shared by every stream to it: one
// multiplexed connection per endpoint (to a meshed pod's sidecar over mTLS with ALPN "h2" and
// the preamble naming the app port; to an unmeshed endpoint as h2c with prior knowledge).
// A session that closes, fails, or receives GOAWAY is replaced for new streams; its streams in
// flight finish on it. Server push is refused (SETTINGS_ENABLE_PUSH 0).
import { connect, constants, type ClientHttp2Session } from 'node:http2';
import { poolKey, type Destination, type Dialer } from './dial.ts';
import { classifyUpstreamError, ProxyError } from '../errors/errors.ts';

export interface H2Session {
  /**
   * Runs `use` with the session once it is connected (at once if it is), or with the proxy
   * error of a connection that could not be made (a connect failure: the request may go elsewhere).
   */
  use(use: (session: ClientHttp2Session | ProxyError) => void): void;
  /** The proxy error for a stream that failed with `err` / RST_STREAM `rstCode` before its response. */
  streamError(err: unknown, rstCode: number | undefined): ProxyError;
}

export class H2Pools {
  readonly #sessions = new Map<string, H2Session & { dead(): boolean }>();
  readonly #dialer: Dialer;
  readonly #meshIdleMs: number;
  readonly #appIdleMs: number;

  constructor(dialer: Dialer, options: { meshIdleMs?: number; appIdleMs?: number } = {}) {
    this.#dialer = dialer;
    this.#meshIdleMs = options.meshIdleMs ?? 50_000;
    this.#appIdleMs = options.appIdleMs ?? 30_000;
  }

  sessionFor(dest: Destination): H2Session {
    const key = poolKey(dest);
    const found = this.#sessions.get(key);
    if (found && !found.dead()) return found;
    const where = `${dest.ip}:${dest.port}`;
    let session: ClientHttp2Session | undefined;
    let failure: ProxyError | undefined;
    let waiting: ((s: ClientHttp2Session | ProxyError) => void)[] = [];
    const forget = () => {
      if (this.#sessions.get(key) === entry) this.#sessions.delete(key);
    };
    const settle = (result: ClientHttp2Session | ProxyError) => {
      const callbacks = waiting;
      waiting = [];
      for (const cb of callbacks) cb(result);
    };

    // The session starts once the connection is up and the preamble is written.
    const socket = this.#dialer.dial(dest, 'h2', () => {
      if (failure) return;
      socket.off('error', onDialError);
      const host = dest.ip.includes(':') ? `[${dest.ip}]` : dest.ip;
      const s = connect(`http://${host}:${dest.port}`, {
        createConnection: () => socket,
        settings: { enablePush: false },
        // a proxy multiplexes many callers' streams over one session: room for them
        maxSessionMemory: 64,
      });
      session = s;
      s.on('error', forget);
      s.once('goaway', forget); // no new streams on it; those in flight finish
      s.once('close', forget);
      s.setTimeout(dest.meshed ? this.#meshIdleMs : this.#appIdleMs, () => s.close());
      settle(s);
    });
    const onDialError = (err: Error) => {
      failure = classifyUpstreamError(err);
      forget();
      settle(failure);
    };
    socket.once('error', onDialError);

    const entry = {
      use(cb: (s: ClientHttp2Session | ProxyError) => void) {
        if (failure) return process.nextTick(cb, failure);
        if (session) return cb(session);
        waiting.push(cb);
      },
      streamError(err: unknown, rstCode: number | undefined): ProxyError {
        if (rstCode === constants.NGHTTP2_REFUSED_STREAM) return new ProxyError('UPSTREAM_RESET', `${where} refused the stream (REFUSED_STREAM)`, { cause: err });
        const code = (err as NodeJS.ErrnoException | undefined)?.code;
        return new ProxyError('UPSTREAM_RESET', `HTTP/2 stream to ${where} failed: ${code ?? (err as Error | undefined)?.message ?? `RST_STREAM ${rstCode}`}`, { cause: err });
      },
      dead: () => failure !== undefined || (session !== undefined && (session.closed || session.destroyed)),
      close(graceful: boolean) {
        if (session) {
          if (graceful) session.close();
          else session.destroy();
        } else if (!failure) {
          onDialError(Object.assign(new Error(`the HTTP/2 connection to ${where} was closed`), { code: 'ECONNRESET' }));
          socket.destroy();
        }
      },
    };
    this.#sessions.set(key, entry);
    return entry;
  }

  /** Closes (gracefully) the sessions of destinations no longer in use. */
  retain(keep: (dest: { ip: string; port: number }) => boolean): void {
    for (const [key, entry] of this.#sessions) {
      const [, ip, port] = /^[mp]:(?:[^@]*@)?(.*):(\d+)$/.exec(key) ?? [];
      if (ip && !keep({ ip, port: Number(port) })) {
        (entry as unknown as { close(graceful: boolean): void }).close(true);
        this.#sessions.delete(key);
      }
    }
  }

  close(): void {
    for (const entry of this.#sessions.values()) (entry as unknown as { close(graceful: boolean): void }).close(false);
    this.#sessions.clear();
  }
}
