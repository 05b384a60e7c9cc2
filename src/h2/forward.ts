// One client HTTP/2 stream proxied to upstream HTTP/2 sessions: the HTTP/2 counterpart of
// src/http/forward.ts. It owns the details of a proxied stream:
//   body       the client's DATA is streamed to the current try as it arrives (a bidirectional
//              call needs its messages to flow before the request ends) and, up to 64 KiB, held
//              so a retry can replay it to another endpoint and go on streaming from there
//   flow       both directions are piped, so a slow reader slows the writer (WINDOW_UPDATE
//              follows what was consumed): flow control end to end
//   trailers   forwarded both ways (a gRPC status lives in the response trailers); a
//              trailers-only response (one HEADERS frame with END_STREAM) stays one
//   limit      TSMESH_MAX_REQUEST_BODY: the body is counted as it arrives; past the limit the
//              current try is cancelled and the client gets 413 body-too-large (gRPC:
//              RESOURCE_EXHAUSTED), then its stream is closed (RST_STREAM NO_ERROR, as RFC 9113
//              8.1 lets a server that answered before the request ended); once a response has
//              started, the stream is reset (RST_STREAM INTERNAL_ERROR)
//   reset      a client RST_STREAM cancels the upstream stream (CANCEL); an upstream reset before
//              the response head is an error the exchange may retry, after it the client's
//              stream is reset with the upstream's code
//   errors     the proxy's own errors: for a gRPC call a trailers-only response with
//              `grpc-status` (or error trailers once the response has started), for others the
//              HTTP status; `x-tsmesh-error` names the reason either way
import { constants, type ClientHttp2Stream, type IncomingHttpHeaders, type OutgoingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import type { ProxyError } from '../errors/errors.ts';
import { bodyTooLarge } from '../http/limits.ts';
import { grpcErrorTrailers, proxyErrorResponse } from '../errors/response.ts';
import { REPLAY_LIMIT } from '../retry/replay.ts';
import { classify, peerErrorOf, type Classification } from '../classify/classify.ts';
import type { H2Session } from '../upstream/h2-pool.ts';
import { grpcStatusOf, GrpcStatus } from './grpc.ts';
import { responseHeaders } from './headers.ts';

const { NGHTTP2_CANCEL, NGHTTP2_INTERNAL_ERROR, NGHTTP2_NO_ERROR, NGHTTP2_FLAG_END_STREAM } = constants;

/** An upstream response head and its stream (body and trailers not consumed yet). */
export interface H2Response {
  readonly headers: IncomingHttpHeaders;
  readonly stream: ClientHttp2Stream;
  /** The head carried END_STREAM: a trailers-only (or bodiless) response. */
  readonly endStream: boolean;
}

export interface StreamAttemptHandlers {
  onResponse(response: H2Response): void;
  onError(err: ProxyError): void;
}

export class ProxiedStream {
  readonly client: ServerHttp2Stream;
  readonly grpc: boolean;
  /** The gRPC status the client saw: from the response head, its trailers, or the proxy's error. */
  grpcStatus: number | undefined;
  /** Request body bytes sent to the current try. */
  bytesIn = 0;
  /** Response body bytes passed on to the client. */
  bytesOut = 0;

  // the request body: what was received (while it fits the replay limit) and where it goes now
  #held: Buffer[] | null = [];
  #heldBytes = 0;
  #ended = false;
  #requestTrailers: IncomingHttpHeaders | undefined;
  #target: ClientHttp2Stream | undefined;
  #started = false;
  // the response
  #upstream: ClientHttp2Stream | undefined;
  #errorTrailers: OutgoingHttpHeaders | undefined;
  #completed = false;
  // the body limit: bytes received, the refusal once over it, and how the current try learns of it
  readonly #maxBodyBytes: number | undefined;
  #received = 0;
  #tooLarge: ProxyError | undefined;
  #failTry: ((err: ProxyError) => void) | undefined;

  /** `maxBodyBytes`: TSMESH_MAX_REQUEST_BODY (none: no limit). */
  constructor(client: ServerHttp2Stream, grpc: boolean, maxBodyBytes?: number) {
    this.client = client;
    this.grpc = grpc;
    this.#maxBodyBytes = maxBodyBytes;
    client.pause(); // no DATA is read until the first try is there to take it
  }

  /** Every byte the client sent so far is held: the request can be sent again. */
  get replayable(): boolean {
    return this.#held !== null;
  }

  get responded(): boolean {
    return this.client.headersSent;
  }

  #startBody(): void {
    if (this.#started) return;
    this.#started = true;
    const client = this.client;
    client.on('data', (chunk: Buffer) => {
      if (this.#tooLarge) return;
      this.#received += chunk.length;
      if (this.#maxBodyBytes !== undefined && this.#received > this.#maxBodyBytes) {
        this.#tooLarge = bodyTooLarge(this.#received, this.#maxBodyBytes);
        this.#held = null;
        client.pause();
        if (this.#upstream) client.close(NGHTTP2_INTERNAL_ERROR); // the response had started: reset (its 'close' cancels the upstream's)
        else this.#failTry?.(this.#tooLarge);
        return;
      }
      if (this.#held) {
        if (this.#heldBytes + chunk.length > REPLAY_LIMIT) this.#held = null;
        else {
          this.#held.push(chunk);
          this.#heldBytes += chunk.length;
        }
      }
      const target = this.#target;
      if (!target) return client.pause();
      this.bytesIn += chunk.length;
      if (!target.write(chunk)) {
        client.pause();
        target.once('drain', () => {
          if (this.#target === target) client.resume();
        });
      }
    });
    client.once('trailers', (trailers: IncomingHttpHeaders) => (this.#requestTrailers = trailers));
    client.once('end', () => {
      this.#ended = true;
      this.#target?.end();
    });
  }

  #attach(up: ClientHttp2Stream): void {
    this.#startBody();
    this.#target = up;
    this.bytesIn = 0;
    for (const chunk of this.#held ?? []) {
      up.write(chunk);
      this.bytesIn += chunk.length;
    }
    if (this.#ended) up.end();
    else this.client.resume();
  }

  #detach(up: ClientHttp2Stream): void {
    if (this.#target !== up) return;
    this.#target = undefined;
    this.client.pause();
  }

  /** Sends one try over `upstream` with `headers` (pseudo-headers included). */
  attempt(upstream: H2Session, headers: OutgoingHttpHeaders, handlers: StreamAttemptHandlers): { cancel(): void } {
    let settled = false;
    let up: ClientHttp2Stream | undefined;
    upstream.use((session) => {
      if (settled) return;
      if (this.#tooLarge) {
        settled = true;
        return handlers.onError(this.#tooLarge);
      }
      if (!('request' in session)) {
        settled = true;
        return handlers.onError(session);
      }
      let stream: ClientHttp2Stream;
      try {
        stream = session.request(headers, { endStream: false, waitForTrailers: true });
      } catch (err) {
        settled = true;
        return handlers.onError(upstream.streamError(err, undefined));
      }
      up = stream;
      const failed = (err: unknown) => {
        if (settled) return;
        settled = true;
        this.#detach(stream);
        handlers.onError(upstream.streamError(err, stream.rstCode));
      };
      stream.once('response', (head: IncomingHttpHeaders, flags: number) => {
        if (settled) return void stream.close(NGHTTP2_CANCEL);
        settled = true;
        // (stream.endAfterHeaders is not set yet when 'response' is emitted)
        handlers.onResponse({ headers: head, stream, endStream: (flags & NGHTTP2_FLAG_END_STREAM) !== 0 });
      });
      stream.once('wantTrailers', () => {
        if (!sendOn(() => stream.sendTrailers(this.#requestTrailers ? outgoingTrailers(this.#requestTrailers) : {}))) stream.close(NGHTTP2_INTERNAL_ERROR);
      });
      stream.on('error', failed);
      stream.once('close', () => failed(undefined));
      this.#failTry = (err) => {
        if (settled) return;
        settled = true;
        this.#detach(stream);
        if (!stream.closed) stream.close(NGHTTP2_CANCEL);
        handlers.onError(err);
      };
      this.#attach(stream);
    });
    return {
      cancel: () => {
        settled = true;
        if (!up) return;
        this.#detach(up);
        if (!up.closed) up.close(NGHTTP2_CANCEL);
      },
    };
  }

  /** The shared classification of a response head: a trailers-only gRPC answer by its grpc-status. */
  classify(response: H2Response): Classification {
    return classify(statusOf(response), undefined, this.grpc ? grpcStatusOf(response.headers) : undefined, peerErrorOf(response.headers));
  }

  /** Drops a response (a retry follows): its stream is cancelled, the session stays. */
  discard(response: H2Response): void {
    this.#detach(response.stream);
    response.stream.resume();
    if (!response.stream.closed) response.stream.close(NGHTTP2_CANCEL);
  }

  /** Streams `response` to the client; `done` runs once when the client's stream closes. */
  respond(response: H2Response, done: (result: { bytes: number; cut: boolean }) => void): void {
    const { client } = this;
    const up = response.stream;
    this.#upstream = up;
    this.#held = null; // the response has started: no retry can need the request's bytes again
    let trailers: IncomingHttpHeaders | undefined;
    let finished = false;
    const finish = (cut: boolean) => {
      if (finished) return;
      finished = true;
      done({ bytes: this.bytesOut, cut });
    };
    if (this.grpc) this.grpcStatus = grpcStatusOf(response.headers);
    if (client.closed || client.destroyed) {
      if (!up.closed) up.close(NGHTTP2_CANCEL);
      return finish(true);
    }
    client.once('close', () => {
      if (!up.closed) up.close(NGHTTP2_CANCEL); // the client reset its stream, or went away
      finish(!this.#completed || client.rstCode !== NGHTTP2_NO_ERROR);
    });
    up.on('data', (chunk: Buffer) => (this.bytesOut += chunk.length));
    // an upstream head that node:http2 will not send on (e.g. a status it refuses) cuts the response
    if (!sendOn(() => client.respond(responseHeaders(response.headers), response.endStream ? { endStream: true } : { waitForTrailers: true }))) {
      if (!up.closed) up.close(NGHTTP2_CANCEL);
      if (!client.closed) client.close(NGHTTP2_INTERNAL_ERROR);
      return finish(true);
    }
    if (response.endStream) {
      this.#completed = true;
      return;
    }
    up.on('trailers', (t: IncomingHttpHeaders) => {
      trailers = t;
      if (this.grpc) this.grpcStatus = grpcStatusOf(t) ?? this.grpcStatus;
    });
    client.once('wantTrailers', () => {
      this.#completed = true;
      if (!sendOn(() => client.sendTrailers(this.#errorTrailers ?? (trailers ? outgoingTrailers(trailers) : {})))) client.close(NGHTTP2_INTERNAL_ERROR);
    });
    up.once('close', () => {
      if (up.readableEnded && up.rstCode === NGHTTP2_NO_ERROR) return;
      if (this.#errorTrailers) return; // the proxy is ending the response itself
      // the upstream reset or lost its stream mid-response: reset the client's with its code
      if (!client.closed) client.close(up.rstCode && up.rstCode !== NGHTTP2_NO_ERROR ? up.rstCode : NGHTTP2_INTERNAL_ERROR);
      finish(true);
    });
    up.pipe(client);
  }

  /**
   * Sends the proxy's error. Before a response head: a gRPC call gets a trailers-only answer
   * (HTTP 200, grpc-status), anything else the HTTP status with a text body. After it: a gRPC
   * call's response ends with error trailers, anything else is reset.
   * Returns the HTTP status sent, or undefined when the response had started (or the stream is gone).
   */
  fail(err: ProxyError): number | undefined {
    const { client } = this;
    if (client.closed || client.destroyed) return undefined;
    if (!client.headersSent) {
      this.#completed = true;
      const answer = proxyErrorResponse(err, this.grpc);
      if (this.grpc) this.grpcStatus = err.grpcStatus;
      client.respond({ ':status': answer.status, ...answer.headers }, { endStream: this.grpc });
      if (!this.grpc) client.end(answer.body);
      if (err.code === 'BODY_TOO_LARGE') client.close(NGHTTP2_NO_ERROR); // after the answer: the rest of the body is not wanted
      return answer.status;
    }
    const up = this.#upstream;
    if (this.grpc && up && !client.writableEnded) {
      this.grpcStatus = err.grpcStatus;
      this.#errorTrailers = grpcErrorTrailers(err);
      up.unpipe(client);
      if (!up.closed) up.close(NGHTTP2_CANCEL);
      client.end();
      return undefined;
    }
    client.close(NGHTTP2_INTERNAL_ERROR);
    return undefined;
  }

  /**
   * Runs `listener` once if the client's stream closes before its response was sent. A gRPC
   * client that cancelled (RST_STREAM CANCEL) saw CANCELLED, and that is the call's status.
   */
  onClientGone(listener: () => void): void {
    this.client.once('close', () => {
      if (this.#completed && this.client.rstCode === NGHTTP2_NO_ERROR) return;
      if (this.grpc && !this.#completed && this.client.rstCode === NGHTTP2_CANCEL) this.grpcStatus = GrpcStatus.CANCELLED;
      listener();
    });
  }
}

export function statusOf(response: H2Response): number {
  return Number(response.headers[':status'] ?? 0);
}

/**
 * Sends a header block that came from a peer (a response head, trailers) on to the other side.
 * node:http2 checks what it sends and throws on what it refuses (e.g. a 1xx or 101 status as
 * a final head, a connection-specific field); such a block is the peer's fault and must end
 * this stream, not reach the event loop as an exception. Returns whether it was sent.
 */
function sendOn(send: () => void): boolean {
  try {
    send();
    return true;
  } catch {
    return false;
  }
}

function outgoingTrailers(trailers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const out = responseHeaders(trailers);
  delete out[':status'];
  return out;
}
