// The server side of the raw-socket HTTP/1.1 path: one ServerConnection per accepted client
// socket (the app's on outbound, a peer sidecar's or a caller's on inbound). It reads request
// heads with the strict parser (./head.ts), hands each request to the pipeline as a
// ServerRequest, and writes the response the pipeline gives it. By construction:
//   - pipelined requests are taken one at a time, in order: the next head is parsed only once
//     the response to the one before has been written in full;
//   - buffering is bounded: bytes read ahead of the request in flight are held up to
//     READ_AHEAD bytes, then the socket stops being read until they are used;
//   - a request body flows only as fast as its sink (the upstream socket) takes it, and a
//     response only as fast as the client reads it (the upstream is paused meanwhile);
//   - the response head goes out in one write with the first body bytes (one TLS record);
//   - `Expect: 100-continue` is answered here, as node:http did; Upgrade requests (WebSocket)
//     are handed over with the socket and the bytes after their head.
// Header and idle timeouts are checked by one sweep per server, not a timer per request.
import { STATUS_CODES } from '../http/node-http.ts';
import type { Socket } from 'node:net';
import type { HeadError} from './head.ts';
import { parseRequestHead, scanHead, type Headers, type RequestHead } from './head.ts';
import { ChunkedFramer } from './body.ts';
import { ProxyError } from '../errors/errors.ts';
import { headerLines, proxyErrorResponse, rawProxyErrorResponse } from '../errors/response.ts';
import type { Logger } from '../log/log.ts';
import { bodyTooLarge } from '../http/limits.ts';

/** Bytes read ahead of the request in flight (pipelined requests, a body not yet asked for) before reading pauses. */
export const READ_AHEAD = 64 * 1024;

export interface ServerLimits {
  readonly headersTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly maxRequestBodyBytes?: number | undefined;
}

/** Where a request body goes (the upstream attempt). */
export interface BodySink {
  /** Body bytes (forwarded verbatim: chunked framing included); false: stop until `resumeBody`. */
  body(chunk: Buffer): boolean;
  /** The body is complete. */
  bodyEnd(): void;
}

export interface Http1Handler<C> {
  /** A request whose head was read; the handler answers it through `req`. */
  request(req: ServerRequest<C>): void;
  /** An Upgrade request (WebSocket): the socket (paused) and the bytes after the head are the handler's. */
  upgrade(req: ServerRequest<C>, socket: Socket, head: Buffer): void;
}

const STATE_HEAD = 0; // reading a request head
const STATE_BODY = 1; // a request in flight whose body is still being read
const STATE_WAIT = 2; // a request in flight whose body is read; waiting for its response to end
const STATE_CLOSED = 3;

/**
 * One request, as the pipeline sees it: what node:http's IncomingMessage and ServerResponse
 * were (method, url, headers, httpVersion: enough for tracing, routing and the access log),
 * with the response written through it.
 */
export class ServerRequest<C = unknown> {
  readonly method: string;
  readonly url: string;
  readonly httpVersion: string;
  readonly headers: Headers;
  readonly conn: ServerConnection<C>;
  readonly contentLength: number;
  readonly chunked: boolean;
  /** The response has its head. */
  headersSent = false;
  /** The response is complete (or cut). */
  finished = false;
  /** Request body bytes read (data bytes, without the chunked framing). */
  bodyBytes = 0;
  /** The request body has been read to its end. */
  bodyDone: boolean;
  /** The connection closes after this response (Connection: close, draining, HTTP/1.0). */
  closeAfter: boolean;
  /** The response body runs to the close of the connection. */
  #closeDelimited = false;
  sink: BodySink | undefined;
  /** Told once if the client goes away before the response is complete. */
  gone: { clientGone(): void } | undefined;

  constructor(conn: ServerConnection<C>, head: RequestHead) {
    this.conn = conn;
    this.method = head.method;
    this.url = head.target;
    this.httpVersion = head.version;
    this.headers = head.headers;
    this.contentLength = head.contentLength;
    this.chunked = head.chunked;
    this.bodyDone = !head.chunked && head.contentLength <= 0;
    this.closeAfter = !head.keepAlive;
  }

  get socket(): Socket {
    return this.conn.socket;
  }

  /** Starts (or moves) the body's flow into `sink`; what was read ahead is given at once. */
  pipeBody(sink: BodySink): void {
    this.sink = sink;
    if (this.bodyDone) sink.bodyEnd();
    else this.conn.flowBody();
  }

  /** The sink takes bytes again. */
  resumeBody(): void {
    this.conn.flowBody();
  }

  /**
   * Writes the response head (the status line and `lines`, each "name: value\r\n", framing
   * included) together with the first body bytes. `bodyFraming`: "length" or "chunked" (the
   * body bytes written are framed already), "close" (the body runs to the close), "none".
   */
  writeHead(status: number, reason: string, lines: string, bodyFraming: 'length' | 'chunked' | 'close' | 'none', first?: Buffer): boolean {
    this.headersSent = true;
    if (bodyFraming === 'close') {
      this.#closeDelimited = true;
      this.closeAfter = true;
    }
    const connection = this.closeAfter ? 'connection: close\r\n' : this.httpVersion === '1.0' ? 'connection: keep-alive\r\n' : '';
    const head = `HTTP/1.1 ${status} ${reason || STATUS_TEXT[status] || 'Unknown'}\r\n${lines}${connection}\r\n`;
    return this.conn.writeResponse(head, first);
  }

  /** Response body bytes; false: the client is not keeping up (wait for `onDrain`). */
  write(chunk: Buffer): boolean {
    return this.conn.socket.write(chunk);
  }

  /** Called when the client's socket drains after `write` returned false. */
  set onDrain(listener: { clientDrained(): void } | undefined) {
    this.conn.drainListener = listener;
  }

  /** The response is complete: the connection goes on to the next request (or closes). */
  end(): void {
    if (this.finished) return;
    this.finished = true;
    this.conn.responseEnded(this, this.#closeDelimited);
  }

  /**
   * The proxy's error as the response (x-tsmesh-error), or, once a response has started, a
   * cut connection. Returns the status the client saw; undefined when a response was under way.
   */
  fail(err: ProxyError): number | undefined {
    if (this.finished) return undefined;
    if (this.headersSent) {
      this.finished = true;
      this.conn.destroy();
      return undefined;
    }
    // a body not read to its end leaves the connection unusable for a next request
    if (!this.bodyDone) this.closeAfter = true;
    const answer = proxyErrorResponse(err);
    this.writeHead(answer.status, '', headerLines(answer.headers), 'length', Buffer.from(answer.body));
    this.end();
    return answer.status;
  }
}

/** The reason phrases written when the upstream gave none (or the proxy answers). */
const STATUS_TEXT: Partial<Record<number, string>> = { ...STATUS_CODES, 499: 'Client Closed Request' };

export class ServerConnection<C = unknown> {
  readonly socket: Socket;
  /** What the listener knew of the connection (its destination, its caller). */
  readonly context: C;
  readonly #server: Http1Server<C>;
  #state = STATE_HEAD;
  /** Bytes read and not used yet (start of a head, body bytes before a sink, pipelined requests). */
  #pending: Buffer | undefined;
  #scanned = 0;
  #paused = false;
  #request: ServerRequest<C> | undefined;
  /** Content-Length body bytes left. */
  #remaining = 0;
  readonly #framer = new ChunkedFramer();
  /** performance.now() when the head being read started (headers timeout), or -1. */
  headStart = -1;
  /** performance.now() since when the connection has been idle between requests, or -1. */
  idleSince: number;
  drainListener: { clientDrained(): void } | undefined;

  constructor(server: Http1Server<C>, socket: Socket, context: C) {
    this.#server = server;
    this.socket = socket;
    this.context = context;
    this.idleSince = performance.now();
    socket.on('data', this.#onData);
    socket.on('drain', this.#onDrain);
    socket.once('close', this.#onClose);
    socket.on('error', this.#onError);
    socket.on('end', this.#onEnd);
  }

  get idle(): boolean {
    return this.#state === STATE_HEAD && this.#pending === undefined;
  }

  #onData = (chunk: Buffer): void => {
    if (this.#state === STATE_CLOSED) return;
    this.#pending = this.#pending === undefined ? chunk : Buffer.concat([this.#pending, chunk]);
    this.#process();
  };

  #onDrain = (): void => {
    this.drainListener?.clientDrained();
  };

  /** The client half-closed. */
  #ended = false;

  #onEnd = (): void => {
    // a request in flight is still answered; then (or now, when idle) the connection closes
    this.#ended = true;
    if (this.#state === STATE_HEAD) this.socket.end();
  };

  #onError = (): void => {
    this.destroy();
  };

  #onClose = (): void => {
    const wasOpen = this.#state !== STATE_CLOSED;
    this.#state = STATE_CLOSED;
    this.#server.connections.delete(this);
    const req = this.#request;
    if (wasOpen && req && !req.finished) {
      req.finished = true;
      req.gone?.clientGone();
    }
  };

  /** Parses and dispatches what is pending, as far as the state allows. */
  #process(): void {
    while (this.#pending !== undefined && this.#state !== STATE_CLOSED) {
      if (this.#state === STATE_HEAD) {
        if (!this.#readHead()) break;
      } else if (this.#state === STATE_BODY) {
        if (!this.flowBody()) break;
      } else break; // STATE_WAIT: the next request waits for this response to end
    }
    const held = this.#pending === undefined ? 0 : this.#pending.length;
    if (held > READ_AHEAD && !this.#paused) {
      this.#paused = true;
      this.socket.pause();
    } else if (held <= READ_AHEAD && this.#paused && !this.#bodyBlocked) {
      this.#paused = false;
      this.socket.resume();
    }
  }

  /** The body's sink said stop. */
  #bodyBlocked = false;

  /** Reads one head from pending; false when more bytes are needed (or the connection ended). */
  #readHead(): boolean {
    let buf = this.#pending!;
    // empty lines before a request line are skipped (RFC 9112 2.2)
    let start = 0;
    while (start + 1 < buf.length && buf[start] === 0x0d && buf[start + 1] === 0x0a) start += 2;
    if (start > 0) {
      buf = buf.subarray(start);
      this.#pending = buf.length ? buf : undefined;
      this.#scanned = 0;
      if (!buf.length) return false;
    }
    if (this.headStart < 0) {
      this.headStart = performance.now();
      this.idleSince = -1;
    }
    let end: number;
    let head: RequestHead;
    try {
      end = scanHead(buf, 0, this.#scanned, buf.length);
      if (end === -1) {
        this.#scanned = buf.length;
        return false;
      }
      head = parseRequestHead(buf, 0, end);
    } catch (err) {
      this.#refuse(err as HeadError);
      return false;
    }
    this.#scanned = 0;
    this.headStart = -1;
    this.#pending = end < buf.length ? buf.subarray(end) : undefined;
    const req = new ServerRequest<C>(this, head);
    this.#request = req;
    if (head.upgrade) {
      this.#state = STATE_CLOSED; // the socket is the WebSocket path's from here
      this.#detach();
      const rest = this.#pending ?? EMPTY;
      this.#pending = undefined;
      this.#server.connections.delete(this);
      this.socket.pause();
      this.#server.handler.upgrade(req, this.socket, rest);
      return false;
    }
    if (head.chunked) this.#framer.reset();
    else this.#remaining = head.contentLength > 0 ? head.contentLength : 0;
    this.#state = req.bodyDone ? STATE_WAIT : STATE_BODY;
    const limit = this.#server.limits.maxRequestBodyBytes;
    if (head.expectContinue && !req.bodyDone && (limit === undefined || head.contentLength <= limit)) this.socket.write('HTTP/1.1 100 Continue\r\n\r\n');
    this.#server.handler.request(req);
    return true;
  }

  /** Gives pending body bytes to the request's sink; false when it cannot go on now. */
  flowBody(): boolean {
    const req = this.#request;
    if (this.#state !== STATE_BODY || !req || !req.sink) return false;
    this.#bodyBlocked = false;
    while (this.#pending !== undefined) {
      const buf = this.#pending;
      let n: number;
      let done: boolean;
      try {
        if (req.chunked) {
          n = this.#framer.feed(buf, 0, buf.length);
          done = this.#framer.done;
          req.bodyBytes = this.#framer.bytes;
        } else {
          n = Math.min(this.#remaining, buf.length);
          this.#remaining -= n;
          req.bodyBytes += n;
          done = this.#remaining === 0;
        }
      } catch (err) {
        this.#badBody(req, err as HeadError);
        return false;
      }
      const limit = this.#server.limits.maxRequestBodyBytes;
      if (limit !== undefined && req.bodyBytes > limit) {
        this.#badBody(req, bodyTooLarge(req.bodyBytes, limit));
        return false;
      }
      this.#pending = n < buf.length ? buf.subarray(n) : undefined;
      const more = n > 0 ? req.sink.body(n < buf.length ? buf.subarray(0, n) : buf) : true;
      if (done) {
        req.bodyDone = true;
        this.#state = STATE_WAIT;
        req.sink.bodyEnd();
        this.#process();
        return false;
      }
      if (!more) {
        this.#bodyBlocked = true;
        if (!this.#paused) {
          this.#paused = true;
          this.socket.pause();
        }
        return false;
      }
    }
    if (this.#paused && !this.#bodyBlocked) {
      this.#paused = false;
      this.socket.resume();
    }
    return false;
  }

  /** A malformed chunked body, or one over the limit: the request fails and the connection closes. */
  #badBody(req: ServerRequest<C>, err: HeadError | ProxyError): void {
    this.#pending = undefined;
    req.closeAfter = true;
    const proxyErr = err instanceof ProxyError ? err : new ProxyError('BAD_REQUEST', err.message);
    this.#server.log.warn({ code: `TSMESH_${proxyErr.code}`, client: this.socket.remoteAddress, reason: proxyErr.message }, `refused a request body: ${proxyErr.message}`);
    // the pipeline's handler sees its client go away (its upstream request is cancelled)
    const gone = req.gone;
    req.gone = undefined;
    if (!req.headersSent) req.fail(proxyErr);
    else this.destroy();
    gone?.clientGone();
  }

  /** Writes a response head (and the first body bytes) in one write. */
  writeResponse(head: string, first: Buffer | undefined): boolean {
    if (this.#state === STATE_CLOSED) return false;
    if (first === undefined || first.length === 0) return this.socket.write(head, 'latin1');
    return this.socket.write(withHead(head, [first]));
  }

  /** The response to `req` ended: go on with the next pipelined request, or close. */
  responseEnded(req: ServerRequest<C>, closeDelimited: boolean): void {
    this.drainListener = undefined;
    if (this.#state === STATE_CLOSED) return;
    if (req.closeAfter || closeDelimited || !req.bodyDone || this.#ended) {
      this.#state = STATE_CLOSED;
      this.#detach();
      this.socket.end();
      return;
    }
    this.#request = undefined;
    this.#state = STATE_HEAD;
    this.idleSince = performance.now();
    if (this.#pending !== undefined) this.#process();
    else if (this.#paused) {
      this.#paused = false;
      this.socket.resume();
    }
  }

  /** A head the parser refused: 400 (431 when too large), then the connection closes. */
  #refuse(err: HeadError): void {
    this.#server.log.warn({ code: err.tooLarge ? 'HPE_HEADER_OVERFLOW' : 'HPE_INVALID', direction: this.#server.direction, client: this.socket.remoteAddress, reason: err.message }, `refused a malformed request: ${err.message}`);
    this.#closeWith(err.tooLarge ? new ProxyError('HEADERS_TOO_LARGE', 'request headers exceed the limit') : new ProxyError('BAD_REQUEST', err.message));
  }

  #closeWith(err: ProxyError): void {
    this.#state = STATE_CLOSED;
    this.#pending = undefined;
    this.#detach();
    this.socket.end(rawProxyErrorResponse(err));
    this.#server.connections.delete(this);
  }

  /** Headers too slow (slowloris): 408 and close, as node:http did. */
  headersTimedOut(): void {
    if (this.#state !== STATE_HEAD) return;
    this.#server.log.warn({ code: 'TSMESH_HEADERS_TIMEOUT', direction: this.#server.direction, client: this.socket.remoteAddress }, 'closed a connection whose request headers did not arrive in time (TSMESH_HEADERS_TIMEOUT)');
    this.#closeWith(new ProxyError('HEADERS_TIMEOUT', 'the request headers did not arrive in time'));
    this.socket.destroySoon();
  }

  /** Closes an idle keep-alive connection. */
  closeIdle(): void {
    if (!this.idle) return;
    this.#state = STATE_CLOSED;
    this.#detach();
    this.socket.end();
    this.socket.destroySoon();
    this.#server.connections.delete(this);
  }

  #detach(): void {
    this.socket.off('data', this.#onData);
    this.socket.off('end', this.#onEnd);
  }

  destroy(): void {
    this.#pending = undefined;
    this.socket.destroy();
  }
}

const EMPTY = Buffer.alloc(0);

/** A head (latin1 text) and the body bytes after it, in one Buffer: one write, one TLS record. */
export function withHead(head: string, parts: readonly Buffer[]): Buffer {
  let length = head.length;
  for (const p of parts) length += p.length;
  const out = Buffer.allocUnsafe(length);
  let at = out.write(head, 0, 'latin1');
  for (const p of parts) at += p.copy(out, at);
  return out;
}

/**
 * A listener's HTTP/1.1 side: the connections handed to it after protocol detection, their
 * handler, and the sweep that enforces header and idle timeouts. Not a listening server.
 */
export class Http1Server<C = unknown> {
  readonly connections = new Set<ServerConnection<C>>();
  readonly handler: Http1Handler<C>;
  readonly limits: ServerLimits;
  readonly log: Logger;
  readonly direction: string;
  #sweep: NodeJS.Timeout | undefined;

  constructor(options: { handler: Http1Handler<C>; limits: ServerLimits; log: Logger; direction: string }) {
    this.handler = options.handler;
    this.limits = options.limits;
    this.log = options.log;
    this.direction = options.direction;
  }

  /** Takes a client connection (paused, its first bytes put back by detection). */
  accept(socket: Socket, context: C): ServerConnection<C> {
    socket.setNoDelay(true);
    const conn = new ServerConnection<C>(this, socket, context);
    this.connections.add(conn);
    if (this.#sweep === undefined) {
      // as node:http: timeouts checked on an interval, not a timer per request
      const every = Math.max(250, Math.min(1000, this.limits.headersTimeoutMs / 4));
      this.#sweep = setInterval(() => this.#check(), every);
      this.#sweep.unref();
    }
    socket.resume();
    return conn;
  }

  #check(): void {
    const now = performance.now();
    const { headersTimeoutMs, idleTimeoutMs } = this.limits;
    for (const conn of this.connections) {
      if (conn.headStart >= 0 && now - conn.headStart > headersTimeoutMs) conn.headersTimedOut();
      else if (conn.idleSince >= 0 && conn.idle && idleTimeoutMs > 0 && now - conn.idleSince > idleTimeoutMs) conn.closeIdle();
    }
  }

  closeIdleConnections(): void {
    for (const conn of this.connections) conn.closeIdle();
  }

  closeAllConnections(): void {
    for (const conn of this.connections) conn.destroy();
    this.connections.clear();
  }

  close(): void {
    clearInterval(this.#sweep);
    this.#sweep = undefined;
    this.closeAllConnections();
  }
}
