// The client side of the raw-socket HTTP/1.1 path: keep-alive pools of upstream connections,
// one pool per destination (a meshed endpoint's sidecar over mTLS with the mesh preamble, or
// an unmeshed endpoint in plain TCP: src/upstream/dial.ts), and one UpstreamAttempt per try
// of a request. By construction:
//   - a pool hands out its most recently used idle connection first (LIFO: warm connections
//     stay warm, cold ones time out), and opens at most `maxPerEndpoint` connections; requests
//     beyond that wait their turn;
//   - a request head goes out in one write with the body bytes already read (one TLS record);
//   - the response is framed by Content-Length, chunked or the close of the connection (none
//     for HEAD, 1xx, 204 and 304) and forwarded as it arrives, as fast as the client reads it;
//   - a connection goes back to the pool only after a complete exchange that both sides
//     want to keep alive; anything else closes it;
//   - a reused connection that the upstream had closed (it fails before any byte of a
//     response) is retried once on a new connection when the request can be sent again.
// Errors before a response head are classified as today (connect-failure, upstream-reset).
import type { Socket } from 'node:net';
import type { HeadError} from './head.ts';
import { parseResponseHead, scanHead, hasToken, type ResponseHead } from './head.ts';
import { ChunkedFramer } from './body.ts';
import { withHead, type BodySink, type ServerRequest } from './server.ts';
import { classifyUpstreamError, ProxyError } from '../errors/errors.ts';
import { APP_IDLE_MS, MESH_IDLE_MS, poolKey, type Destination, type Dialer } from '../upstream/dial.ts';

export interface Http1PoolOptions {
  /** Connections open at most per destination; requests beyond wait. */
  readonly maxPerEndpoint?: number;
  /** Idle time after which a pooled connection to a peer sidecar is closed. */
  readonly meshIdleMs?: number;
  /** The same for an app (below the usual 5 s keep-alive of app servers). */
  readonly appIdleMs?: number;
}

/** Told when a response forwarded to the client ends or is cut. */
export interface ResponseListener {
  responseDone(bytes: number, cut: boolean): void;
}

/** What the exchange hears of an attempt (src/outbound/exchange.ts's AttemptHandlers). */
export interface UpstreamHandlers {
  onResponse(response: UpstreamAttempt): void;
  onError(err: ProxyError): void;
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

export class Http1Pools {
  readonly #pools = new Map<string, EndpointPool>();
  readonly #dialer: Dialer;
  readonly #max: number;
  readonly #meshIdleMs: number;
  readonly #appIdleMs: number;

  constructor(dialer: Dialer, options: Http1PoolOptions = {}) {
    this.#dialer = dialer;
    this.#max = options.maxPerEndpoint ?? 256;
    this.#meshIdleMs = options.meshIdleMs ?? MESH_IDLE_MS;
    this.#appIdleMs = options.appIdleMs ?? APP_IDLE_MS;
  }

  poolFor(dest: Destination): EndpointPool {
    const key = poolKey(dest);
    let pool = this.#pools.get(key);
    if (!pool) {
      pool = new EndpointPool(this.#dialer, dest, this.#max, dest.meshed ? this.#meshIdleMs : this.#appIdleMs);
      this.#pools.set(key, pool);
    }
    return pool;
  }

  /** Drains the pools of destinations no longer in use: idle connections close now, busy ones after their exchange. */
  retain(keep: (dest: { ip: string; port: number }) => boolean): void {
    for (const [key, pool] of this.#pools) {
      if (!keep(pool.dest)) {
        pool.retire();
        this.#pools.delete(key);
      }
    }
  }

  close(): void {
    for (const pool of this.#pools.values()) pool.destroy();
    this.#pools.clear();
  }
}

export class EndpointPool {
  readonly dest: Destination;
  readonly #dialer: Dialer;
  readonly #max: number;
  readonly idleMs: number;
  /** Idle connections, the most recently used last. */
  readonly #idle: UpstreamConnection[] = [];
  readonly #busy = new Set<UpstreamConnection>();
  /** Attempts waiting for a connection (at the cap), first come first served. */
  #waiting: UpstreamAttempt[] = [];
  #retired = false;

  constructor(dialer: Dialer, dest: Destination, max: number, idleMs: number) {
    this.#dialer = dialer;
    this.dest = dest;
    this.#max = max;
    this.idleMs = idleMs;
  }

  get open(): number {
    return this.#idle.length + this.#busy.size;
  }

  /** Gives `attempt` a connection now or when one is free. `fresh`: never a reused one. */
  acquire(attempt: UpstreamAttempt, fresh = false): void {
    if (!fresh) {
      for (let conn = this.#idle.pop(); conn !== undefined; conn = this.#idle.pop()) {
        if (conn.usable) return this.#start(conn, attempt);
        conn.destroy();
      }
    }
    if (this.open < this.#max) return this.#start(new UpstreamConnection(this, this.#dialer, this.dest), attempt);
    this.#waiting.push(attempt);
  }

  /** An attempt gave up before it had a connection. */
  forget(attempt: UpstreamAttempt): void {
    const i = this.#waiting.indexOf(attempt);
    if (i !== -1) this.#waiting.splice(i, 1);
  }

  #start(conn: UpstreamConnection, attempt: UpstreamAttempt): void {
    this.#busy.add(conn);
    conn.idleFor(0);
    attempt.start(conn);
  }

  /** A complete exchange on `conn`, which may carry another. */
  release(conn: UpstreamConnection): void {
    this.#busy.delete(conn);
    if (this.#retired) return conn.destroy();
    const next = this.#waiting.shift();
    if (next) return this.#start(conn, next);
    conn.idleFor(this.idleMs);
    this.#idle.push(conn);
  }

  /** `conn` closed (or will): it leaves the pool, making room for a waiting attempt. */
  closed(conn: UpstreamConnection): void {
    if (!this.#busy.delete(conn)) {
      const i = this.#idle.indexOf(conn);
      if (i === -1) return;
      this.#idle.splice(i, 1);
    }
    const next = this.#waiting.shift();
    if (next) this.acquire(next, true);
  }

  retire(): void {
    this.#retired = true;
    for (const conn of this.#idle.splice(0)) conn.destroy();
  }

  destroy(): void {
    this.retire();
    for (const conn of this.#busy) conn.destroy();
    for (const attempt of this.#waiting.splice(0)) attempt.connectionFailed(new ProxyError('UPSTREAM_RESET', 'the sidecar is stopping'));
  }
}

const PHASE_IDLE = 0;
const PHASE_HEAD = 1; // waiting for (the rest of) a response head
const PHASE_BODY = 2;

/** One connection to an upstream, carrying one exchange at a time. */
export class UpstreamConnection {
  readonly socket: Socket;
  readonly #pool: EndpointPool;
  attempt: UpstreamAttempt | undefined;
  /** It carried an exchange before the current one. */
  reused = false;
  #phase = PHASE_IDLE;
  #pending: Buffer | undefined;
  #scanned = 0;
  #response: ResponseHead | undefined;
  #remaining = 0;
  readonly #framer = new ChunkedFramer();
  /** Response bytes arrived for the current exchange. */
  sawBytes = false;
  #closed = false;

  constructor(pool: EndpointPool, dialer: Dialer, dest: Destination) {
    this.#pool = pool;
    // a plain connection reads into one shared buffer (#onRead), a TLS one emits 'data'
    const socket = dialer.dial(dest, 'http1', undefined, this.#onRead);
    this.socket = socket;
    socket.on('data', this.#onData);
    socket.on('drain', this.#onDrain);
    socket.on('error', this.#onError);
    socket.once('close', this.#onClose);
    socket.on('timeout', this.#onTimeout);
  }

  get usable(): boolean {
    return !this.#closed && !this.socket.destroyed && this.socket.writable && !this.socket.readableEnded;
  }

  idleFor(ms: number): void {
    this.socket.setTimeout(ms);
  }

  /** Starts reading the response to the exchange just written. */
  expectResponse(): void {
    this.#phase = PHASE_HEAD;
    this.sawBytes = false;
    this.#scanned = 0;
  }

  /** Bytes in the shared read buffer: copied, since a part may be kept (a partial head, early body bytes, a write that waits). */
  readonly #onRead = (buffer: Buffer, length: number): void => {
    this.#onData(Buffer.copyBytesFrom(buffer, 0, length));
  };

  #onData = (chunk: Buffer): void => {
    if (this.#phase === PHASE_IDLE || !this.attempt) {
      // bytes nobody asked for: this connection cannot be trusted with another exchange
      this.destroy();
      return;
    }
    this.sawBytes = true;
    this.#pending = this.#pending === undefined ? chunk : Buffer.concat([this.#pending, chunk]);
    this.#process();
  };

  #process(): void {
    while (this.#pending !== undefined && this.attempt) {
      const attempt = this.attempt;
      if (this.#phase === PHASE_HEAD) {
        const buf = this.#pending;
        let response: ResponseHead;
        let end: number;
        try {
          end = scanHead(buf, 0, this.#scanned, buf.length);
          if (end === -1) {
            this.#scanned = buf.length;
            return;
          }
          response = parseResponseHead(buf, 0, end);
        } catch (err) {
          this.#fail(new ProxyError('UPSTREAM_RESET', `the upstream's response head is malformed: ${(err as HeadError).message}`));
          return;
        }
        this.#scanned = 0;
        this.#pending = end < buf.length ? buf.subarray(end) : undefined;
        if (response.status < 200 && response.status !== 101) continue; // 100 Continue, 103 Early Hints: not forwarded
        if (response.status === 101) {
          this.#fail(new ProxyError('UPSTREAM_RESET', 'the upstream switched protocols on a request that did not ask to'));
          return;
        }
        this.#response = response;
        const noBody = attempt.req.method === 'HEAD' || response.status === 204 || response.status === 304;
        this.#phase = PHASE_BODY;
        if (noBody) this.#remaining = 0;
        else if (response.chunked) this.#framer.reset();
        else this.#remaining = response.closeDelimited ? Infinity : response.contentLength;
        const framing = noBody ? 'none' : response.chunked ? 'chunked' : response.closeDelimited ? 'close' : 'length';
        // the body bytes that came with the head go to the client with it, in one write
        let done = noBody || (!response.chunked && this.#remaining === 0);
        let first: Buffer | undefined;
        if (!done) {
          const ended = this.#takeBody(attempt);
          if (ended === undefined) return;
          done = ended;
          first = this.#slice;
        }
        attempt.responseHead(response, framing, first);
        if (this.attempt !== attempt) return; // cancelled meanwhile: the connection is closed
        if (done) this.#bodyEnd();
      } else if (this.#phase === PHASE_BODY) {
        const ended = this.#takeBody(attempt);
        if (ended === undefined) return;
        if (this.#slice !== undefined) attempt.responseBody(this.#slice);
        if (ended && this.attempt === attempt) this.#bodyEnd();
      } else {
        // bytes after a complete response: the connection is not reusable
        this.destroy();
        return;
      }
    }
  }

  /** The body bytes at hand. */
  #slice: Buffer | undefined;

  /**
   * Takes the response body bytes that are pending (into #slice): whether the body ended with
   * them; undefined when they are malformed (the attempt has failed).
   */
  #takeBody(attempt: UpstreamAttempt): boolean | undefined {
    const buf = this.#pending;
    this.#slice = undefined;
    if (buf === undefined) return false;
    let n: number;
    let done: boolean;
    if (this.#response!.chunked) {
      try {
        n = this.#framer.feed(buf, 0, buf.length);
      } catch (err) {
        this.#fail(new ProxyError('UPSTREAM_RESET', `the upstream's chunked body is malformed: ${(err as HeadError).message}`));
        return undefined;
      }
      done = this.#framer.done;
      attempt.responseBytes = this.#framer.bytes;
    } else {
      n = Math.min(this.#remaining, buf.length);
      this.#remaining -= n;
      attempt.responseBytes += n;
      done = this.#remaining === 0;
    }
    this.#pending = n < buf.length ? buf.subarray(n) : undefined;
    if (n > 0) this.#slice = n < buf.length ? buf.subarray(0, n) : buf;
    return done;
  }

  #bodyEnd(): void {
    const attempt = this.attempt!;
    const keepAlive = this.#response!.keepAlive && this.#pending === undefined && attempt.requestSent && attempt.keepAlive;
    this.#phase = PHASE_IDLE;
    this.#response = undefined;
    this.attempt = undefined;
    attempt.responseEnd();
    if (keepAlive && this.usable) {
      // paused while the client caught up with the last bytes: the next exchange reads again
      this.socket.resume();
      this.reused = true;
      this.#pool.release(this);
    } else this.destroy();
  }

  #fail(err: ProxyError): void {
    const attempt = this.attempt;
    this.attempt = undefined;
    this.destroy();
    attempt?.connectionFailed(err);
  }

  #onDrain = (): void => {
    this.attempt?.upstreamDrained();
  };

  #onError = (err: Error): void => {
    this.#fail(classifyUpstreamError(err));
  };

  #onTimeout = (): void => {
    if (this.#phase === PHASE_IDLE) this.destroy();
  };

  #onClose = (): void => {
    this.#closed = true;
    this.#pool.closed(this);
    const attempt = this.attempt;
    if (!attempt) return;
    // a close-delimited response ends with the connection
    if (this.#phase === PHASE_BODY && this.#remaining === Infinity) {
      this.#phase = PHASE_IDLE;
      this.attempt = undefined;
      attempt.responseEnd();
      return;
    }
    this.attempt = undefined;
    attempt.connectionFailed(new ProxyError('UPSTREAM_RESET', this.#phase === PHASE_BODY ? 'the upstream closed the connection mid-response' : 'the upstream closed the connection before a response (socket hang up)'));
  };

  destroy(): void {
    if (!this.#closed) {
      this.#closed = true;
      this.#pool.closed(this);
    }
    this.socket.destroy();
  }
}

const MODE_CONNECTING = 0; // waiting for a connection or a response head
const MODE_HEAD = 1; // the head was given to the exchange, which has not decided yet
const MODE_RESPONDING = 2; // forwarding the body to the client
const MODE_DISCARDING = 3; // dropping the body (a retry follows)
const MODE_OVER = 4;

const EMPTY = Buffer.alloc(0);

/**
 * One try of a request against one endpoint: the exchange's Attempt (cancel) and, once the
 * head arrived, its response (status, respond, discard). It is also the sink of the request
 * body while the body streams.
 */
export class UpstreamAttempt implements BodySink {
  readonly req: ServerRequest;
  readonly #pool: EndpointPool;
  readonly #head: string;
  /** The whole request body, framed as it came, when it is held for replay; undefined while it streams. */
  readonly #replay: Buffer | undefined;
  /** Body bytes read before the first try that are not held for replay (they go first). */
  readonly #prefix: Buffer | undefined;
  readonly #handlers: UpstreamHandlers;
  #conn: UpstreamConnection | undefined;
  #mode = MODE_CONNECTING;
  #staleRetried = false;
  /** The request was written in full (its body included). */
  requestSent = false;
  /** The client side allows the upstream connection to be kept (HTTP/1.1). */
  readonly keepAlive: boolean;
  #starting = false;
  #first: Buffer[] | undefined;
  response: ResponseHead | undefined;
  framing: 'length' | 'chunked' | 'close' | 'none' = 'none';
  /** Response body data bytes received. */
  responseBytes = 0;
  #early: Buffer[] | undefined;
  #done: ResponseListener | undefined;

  constructor(req: ServerRequest, pool: EndpointPool, head: string, body: { replay: Buffer | undefined; prefix: Buffer | undefined }, handlers: UpstreamHandlers) {
    this.req = req;
    this.#pool = pool;
    this.#head = head;
    this.#replay = body.replay;
    this.#prefix = body.prefix;
    this.#handlers = handlers;
    this.keepAlive = req.httpVersion !== '1.0';
    pool.acquire(this);
  }

  get status(): number {
    return this.response?.status ?? 0;
  }

  /** Given a connection by the pool: the head and the body bytes at hand go out in one write. */
  start(conn: UpstreamConnection): void {
    if (this.#mode !== MODE_CONNECTING) return this.#pool.release(conn);
    this.#conn = conn;
    conn.attempt = this;
    conn.expectResponse();
    if (this.#replay !== undefined) {
      this.requestSent = true;
      conn.socket.write(withHead(this.#head, this.#replay.length ? [this.#replay] : NO_PARTS));
      return;
    }
    // streaming: what the client connection holds of the body is given synchronously
    this.#first = this.#prefix ? [this.#prefix] : [];
    this.#starting = true;
    this.req.pipeBody(this);
    this.#starting = false;
    // the request failed while its body was read (over the limit, malformed): nothing to send
    if (this.req.finished) return this.cancel();
    const parts = this.#first;
    this.#first = undefined;
    const more = conn.socket.write(withHead(this.#head, parts));
    if (!more && !this.requestSent) this.#blocked = true;
  }

  #blocked = false;

  body(chunk: Buffer): boolean {
    if (this.#starting) {
      this.#first!.push(chunk);
      return true;
    }
    const conn = this.#conn;
    if (!conn || this.#mode === MODE_OVER) return true; // dropped: the attempt is over
    const more = conn.socket.write(chunk);
    if (!more) this.#blocked = true;
    return more;
  }

  bodyEnd(): void {
    this.requestSent = true;
  }

  upstreamDrained(): void {
    if (!this.#blocked) return;
    this.#blocked = false;
    this.req.resumeBody();
  }

  /** From the connection: a response head. */
  responseHead(response: ResponseHead, framing: 'length' | 'chunked' | 'close' | 'none', first: Buffer | undefined): void {
    this.response = response;
    this.framing = framing;
    if (this.#mode !== MODE_CONNECTING) return;
    if (first !== undefined) this.#early = [first];
    this.#mode = MODE_HEAD;
    this.#handlers.onResponse(this);
  }

  responseBody(chunk: Buffer): void {
    if (this.#mode === MODE_RESPONDING) {
      if (!this.req.write(chunk)) {
        this.#conn!.socket.pause();
        this.req.onDrain = this;
      }
    } else if (this.#mode === MODE_HEAD) (this.#early ??= []).push(chunk);
  }

  clientDrained(): void {
    this.req.onDrain = undefined;
    this.#conn?.socket.resume();
  }

  responseEnd(): void {
    if (this.#mode === MODE_RESPONDING) {
      this.#mode = MODE_OVER;
      this.req.end();
      this.#done?.responseDone(this.responseBytes, false);
    } else if (this.#mode === MODE_HEAD) this.#ended = true;
    else this.#mode = MODE_OVER;
  }

  #ended = false;

  /** The connection failed or closed before the exchange completed. */
  connectionFailed(err: ProxyError): void {
    const mode = this.#mode;
    if (mode === MODE_OVER) return;
    if (mode === MODE_CONNECTING) {
      const conn = this.#conn;
      // a pooled connection the upstream had closed: once more on a new one, if the request can be sent again
      if (conn?.reused && !conn.sawBytes && !this.#staleRetried && this.#replay !== undefined && err.code === 'UPSTREAM_RESET') {
        this.#staleRetried = true;
        this.#conn = undefined;
        this.#pool.acquire(this, true);
        return;
      }
      this.#mode = MODE_OVER;
      this.#handlers.onError(err);
      return;
    }
    this.#mode = MODE_OVER;
    if (mode === MODE_RESPONDING) {
      // the response was cut: the client's is cut too
      this.req.fail(err);
      this.#done?.responseDone(this.responseBytes, true);
    }
  }

  /** Abandons the attempt (deadline, the client went away): its connection closes. */
  cancel(): void {
    if (this.#mode === MODE_OVER) return;
    this.#mode = MODE_OVER;
    if (this.#conn) {
      this.#conn.attempt = undefined;
      this.#conn.destroy();
    } else this.#pool.forget(this);
  }

  /** Drops the response (a retry follows); the connection is kept if the body ends cleanly. */
  discard(): void {
    if (this.#mode !== MODE_HEAD) return;
    this.#early = undefined;
    if (this.#ended) this.#mode = MODE_OVER;
    else {
      this.#mode = MODE_DISCARDING;
      this.#conn?.socket.resume();
    }
  }

  /** Forwards the response to the client: the head with the body bytes at hand, then the rest as it comes. */
  respond(done: ResponseListener): void {
    if (this.#mode !== MODE_HEAD) return done.responseDone(this.responseBytes, true);
    const req = this.req;
    if (req.finished) {
      this.cancel();
      return done.responseDone(0, true);
    }
    this.#mode = MODE_RESPONDING;
    this.#done = done;
    const r = this.response!;
    const early = this.#early;
    this.#early = undefined;
    const first = early === undefined ? undefined : early.length === 1 ? early[0] : Buffer.concat(early);
    const more = req.writeHead(r.status, r.reason, responseLines(r, this.framing), this.framing, first);
    if (this.#ended) {
      this.#mode = MODE_OVER;
      req.end();
      done.responseDone(this.responseBytes, false);
      return;
    }
    if (!more) {
      this.#conn?.socket.pause();
      req.onDrain = this;
    }
  }
}

const NO_PARTS: readonly Buffer[] = [];

/** The upstream's header lines for the client: hop-by-hop ones (and those Connection names) left out, framing said. */
function responseLines(r: ResponseHead, framing: string): string {
  let s = '';
  const { names, values, connection } = r;
  for (let i = 0; i < names.length; i++) {
    const name = names[i]!;
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || (connection !== undefined && hasToken(connection, lower))) continue;
    s += `${name}: ${values[i]}\r\n`;
  }
  if (framing === 'chunked') s += 'transfer-encoding: chunked\r\n';
  return s;
}

export { EMPTY as NO_BODY };
