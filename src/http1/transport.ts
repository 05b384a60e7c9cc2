// A raw-socket HTTP/1.1 request as the exchange's Transport (src/upstream/transport.ts), and the
// inbound's single forward to the app. The request's state lives in one object per request
// (its methods are what the exchange calls), not in closures. A replayable request (idempotent,
// or marked `x-tsmesh-retry: true`) has its body read first, up to 64 KiB, so a retry can send
// it again; a larger one streams once.
import { ProxyError } from '../errors/errors.ts';
import { classify, type Classification } from '../classify/classify.ts';
import { ERROR_HEADER } from '../errors/response.ts';
import { IDEMPOTENT, REPLAY_LIMIT } from '../retry/replay.ts';
import { stripHopByHop } from '../http/headers.ts';
import type { Endpoint } from '../registry/model.ts';
import type { Destination } from '../upstream/dial.ts';
import type { Transport } from '../upstream/transport.ts';
import type { BodySink, ServerRequest } from './server.ts';
import { UpstreamAttempt, type Http1Pools, type ResponseListener, type UpstreamHandlers } from './client.ts';

/** Prepares a client request's headers for forwarding, once (before the first attempt). */
export function prepareRequestHeaders(req: ServerRequest): void {
  const headers = req.headers;
  // `Expect: 100-continue` is answered by the sidecar (as Envoy does by default): not forwarded
  if (headers.expect !== undefined) delete headers.expect;
  if (headers.connection !== undefined || headers['transfer-encoding'] !== undefined || headers['keep-alive'] !== undefined || headers.te !== undefined || headers.upgrade !== undefined || headers['proxy-connection'] !== undefined || headers.trailer !== undefined || headers['proxy-authorization'] !== undefined) {
    stripHopByHop(headers);
  }
  // a chunked body is forwarded as it came, chunked
  if (req.chunked) headers['transfer-encoding'] = 'chunked';
}

/** The request head sent upstream: origin-form target, the prepared headers. */
export function requestHead(req: ServerRequest): string {
  let s = `${req.method} ${originForm(req.url)} HTTP/${req.httpVersion === '1.0' ? '1.0' : '1.1'}\r\n`;
  const headers = req.headers;
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined) continue;
    if (typeof value === 'string') s += `${name}: ${value}\r\n`;
    else for (const v of value) s += `${name}: ${v}\r\n`;
  }
  return `${s}\r\n`;
}

/** The request target in origin form: an absolute-form URL (an HTTP_PROXY client) loses its scheme and authority. */
export function originForm(url: string): string {
  if (url.charCodeAt(0) === 47 /* / */ || url === '*') return url;
  const scheme = url.indexOf('://');
  if (scheme === -1) return url;
  const slash = url.indexOf('/', scheme + 3);
  const query = url.indexOf('?', scheme + 3);
  if (slash === -1 || (query !== -1 && query < slash)) return query === -1 ? '/' : `/${url.slice(query)}`;
  return url.slice(slash);
}

/** One outbound request through the exchange: retries, balancing and the pools. */
export class Http1Transport implements Transport<UpstreamAttempt>, BodySink, ResponseListener {
  readonly #req: ServerRequest;
  readonly #pools: Http1Pools;
  readonly #destinationOf: (ep: Endpoint) => Destination;
  readonly #retryable: boolean;
  /** The body held for replay (the whole body), or undefined while it streams. */
  #replay: Buffer | undefined;
  /** Body bytes read while collecting, when the body turned out too large to hold. */
  #prefix: Buffer | undefined;
  #chunks: Buffer[] | undefined;
  #held = 0;
  #resolve: (() => void) | undefined;
  #respondDone: ((result: { bytes: number; cut: boolean }) => void) | undefined;
  /** The attempt whose response is being sent to the client. */
  #responding: UpstreamAttempt | undefined;
  #gone: (() => void) | undefined;

  constructor(req: ServerRequest, pools: Http1Pools, destinationOf: (ep: Endpoint) => Destination) {
    this.#req = req;
    this.#pools = pools;
    this.#destinationOf = destinationOf;
    const wantsRetry = req.headers['x-tsmesh-retry'] === 'true';
    if (req.headers['x-tsmesh-retry'] !== undefined) delete req.headers['x-tsmesh-retry'];
    prepareRequestHeaders(req);
    this.#retryable = IDEMPOTENT.has(req.method) || wantsRetry;
  }

  prepare(): Promise<void> | void {
    const req = this.#req;
    if (!this.#retryable) return;
    if (req.bodyDone) {
      this.#replay = NO_BODY;
      return;
    }
    if (req.contentLength > REPLAY_LIMIT) return;
    this.#chunks = [];
    return new Promise<void>((resolve) => {
      this.#resolve = resolve;
      req.pipeBody(this);
    });
  }

  /** Collecting the body for replay (BodySink). */
  body(chunk: Buffer): boolean {
    this.#chunks!.push(chunk);
    this.#held += chunk.length;
    if (this.#held <= REPLAY_LIMIT) return true;
    // too large to hold: what was read goes first, the rest streams, once
    this.#prefix = Buffer.concat(this.#chunks!, this.#held);
    this.#chunks = undefined;
    this.#req.sink = undefined;
    this.#settle();
    return false;
  }

  bodyEnd(): void {
    if (!this.#chunks) return;
    this.#replay = this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks, this.#held);
    this.#chunks = undefined;
    this.#settle();
  }

  #settle(): void {
    const resolve = this.#resolve;
    this.#resolve = undefined;
    resolve?.();
  }

  get replayable(): boolean {
    return this.#replay !== undefined;
  }

  attempt(endpoint: Endpoint, n: number, handlers: UpstreamHandlers): UpstreamAttempt {
    const req = this.#req;
    req.headers['x-tsmesh-attempt'] = String(n);
    const prefix = this.#prefix;
    this.#prefix = undefined; // sent once, with the streamed rest
    return new UpstreamAttempt(req, this.#pools.poolFor(this.#destinationOf(endpoint)), requestHead(req), { replay: this.#replay, prefix }, handlers);
  }

  classify(response: UpstreamAttempt): Classification {
    const status = response.status;
    // a peer sidecar's own 502/503 names its cause (e.g. its app refused the connection)
    return classify(status, undefined, undefined, status === 502 || status === 503 ? peerError(response) : undefined);
  }

  status(response: UpstreamAttempt): number {
    return response.status;
  }

  discard(response: UpstreamAttempt): void {
    response.discard();
  }

  respond(response: UpstreamAttempt, done: (result: { bytes: number; cut: boolean }) => void): void {
    this.#respondDone = done;
    this.#responding = response;
    response.respond(this);
  }

  responseDone(bytes: number, cut: boolean): void {
    this.#respondDone?.({ bytes, cut });
  }

  fail(err: ProxyError): number | undefined {
    return this.#req.fail(err);
  }

  get responded(): boolean {
    return this.#req.headersSent;
  }

  onClientGone(listener: () => void): void {
    this.#gone = listener;
    this.#req.gone = this;
  }

  clientGone(): void {
    this.#gone?.();
  }

  get bytesIn(): number {
    return this.#req.bodyBytes;
  }

  get bytesOut(): number {
    return this.#responding?.responseBytes ?? 0;
  }
}

export interface ForwardResult {
  status: number;
  error: ProxyError | undefined;
  bytesIn: number;
  bytesOut: number;
}

/** One try, no retries (the inbound side: the app is the only endpoint). One object per request. */
export class ForwardOnce implements UpstreamHandlers, ResponseListener {
  readonly #req: ServerRequest;
  readonly #done: (r: ForwardResult) => void;
  #attempt: UpstreamAttempt | undefined;
  #finished = false;
  readonly result: ForwardResult = { status: 0, error: undefined, bytesIn: 0, bytesOut: 0 };

  constructor(req: ServerRequest, pools: Http1Pools, dest: Destination, done: (r: ForwardResult) => void) {
    this.#req = req;
    this.#done = done;
    prepareRequestHeaders(req);
    req.gone = this;
    const attempt = new UpstreamAttempt(req, pools.poolFor(dest), requestHead(req), { replay: undefined, prefix: undefined }, this);
    this.#attempt = attempt;
    // the request can fail while the attempt starts (a body refused as it is read): cancel it then
    if (this.#finished) attempt.cancel();
  }

  onResponse(response: UpstreamAttempt): void {
    this.result.status = response.status;
    response.respond(this);
  }

  onError(err: ProxyError): void {
    this.result.error = err;
    this.result.status = this.#req.fail(err) ?? err.status;
    this.#finish();
  }

  responseDone(bytes: number, cut: boolean): void {
    this.result.bytesOut = bytes;
    if (cut) this.result.error ??= new ProxyError('UPSTREAM_RESET', 'the response was cut');
    this.#finish();
  }

  clientGone(): void {
    if (this.#finished) return;
    this.#attempt?.cancel();
    if (!this.#req.headersSent) this.result.status = 499;
    this.result.bytesOut = this.#attempt?.responseBytes ?? 0; // what the client was sent before it went
    this.#finish();
  }

  #finish(): void {
    if (this.#finished) return;
    this.#finished = true;
    this.result.bytesIn = this.#req.bodyBytes;
    this.#done(this.result);
  }
}

const NO_BODY = Buffer.alloc(0);

/** The response's `x-tsmesh-error`, if it has one. */
function peerError(response: UpstreamAttempt): string | undefined {
  const head = response.response;
  if (!head) return undefined;
  const i = head.names.findIndex((n) => n.length === ERROR_HEADER.length && n.toLowerCase() === ERROR_HEADER);
  return i === -1 ? undefined : head.values[i];
}
