// The Transport: one client request as the exchange (src/outbound/exchange.ts) drives it, over
// HTTP/1.1 (src/http1/transport.ts) or HTTP/2 (src/h2/transport.ts). It lives below the
// pipelines, beside the pools and dialers the transports use, so the protocol folders (http1/,
// h2/) never import from a pipeline (test/import-direction.test.ts).
import type { Classification } from '../classify/classify.ts';
import type { ProxyError } from '../errors/errors.ts';
import type { Endpoint } from '../registry/model.ts';

export interface AttemptHandlers<R> {
  /** The upstream's response head arrived; its body is not consumed yet. */
  onResponse(response: R): void;
  /** The attempt failed before a response head (connect failure, reset). */
  onError(err: ProxyError): void;
}

export interface Attempt {
  /** Abandons the attempt: the upstream request is cancelled (its socket closed, its stream reset). */
  cancel(): void;
}

/**
 * One client request as the exchange drives it, over HTTP/1.1 (src/http1/transport.ts) or
 * HTTP/2 (src/h2/transport.ts). `R` is the upstream's response head.
 */
export interface Transport<R> {
  /** Gets the request ready for its first try (e.g. reads a body to replay); rejects with a ProxyError. */
  prepare(): Promise<void> | void;
  /** Whether the request could be sent again now (its body so far is held for replay). */
  readonly replayable: boolean;
  /** Sends try number `n` (1 for the first) to `endpoint`. */
  attempt(endpoint: Endpoint, n: number, handlers: AttemptHandlers<R>): Attempt;
  /** The shared classification of a response head. */
  classify(response: R): Classification;
  /** The response head's status (for spans, metrics and logs). */
  status(response: R): number;
  /** Drops a response that is not used (a retry follows); its connection stays usable where it can. */
  discard(response: R): void;
  /** Streams the response to the client; `done` runs once when it ends or is cut. */
  respond(response: R, done: (result: { bytes: number; cut: boolean }) => void): void;
  /**
   * Sends the proxy's error to the client, or, once a response has started, ends or cuts it.
   * Returns the status the client saw; undefined when the response was already under way.
   */
  fail(err: ProxyError): number | undefined;
  /** The client has a response head. */
  readonly responded: boolean;
  /** Runs `listener` once if the client goes away before its response is complete. */
  onClientGone(listener: () => void): void;
  /** Request body bytes sent upstream by the last try. */
  readonly bytesIn: number;
  /** Response body bytes sent to the client so far. */
  readonly bytesOut: number;
}
