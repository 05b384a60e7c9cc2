// An HTTP/2 stream (a gRPC call, or any HTTP/2 request) as the exchange's Transport
// (src/upstream/transport.ts): each try is a new stream on the chosen endpoint's shared HTTP/2
// session, with `x-tsmesh-attempt` and, when the call has a deadline, the time left of it as
// `grpc-timeout`.
import type { OutgoingHttpHeaders } from 'node:http2';
import type { Endpoint } from '../registry/model.ts';
import type { H2Session } from '../upstream/h2-pool.ts';
import { ProxyError } from '../errors/errors.ts';
import type { Transport } from '../upstream/transport.ts';
import type { ProxiedStream} from './forward.ts';
import { statusOf, type H2Response } from './forward.ts';
import { formatGrpcTimeout } from './grpc.ts';

export interface H2TransportOptions {
  /** The request's fields to send (pseudo-headers included, trace context injected). */
  readonly headers: OutgoingHttpHeaders;
  /** The request may be sent again (an idempotent method, x-tsmesh-retry, or a gRPC call) while its body is held. */
  readonly retryable: boolean;
  /** performance.now() at which the call's own deadline (grpc-timeout) passes; sent on as the time left. */
  readonly deadlineAt: number | undefined;
  /** The HTTP/2 session to an endpoint. */
  readonly session: (endpoint: Endpoint) => H2Session;
}

export function h2Transport(proxied: ProxiedStream, options: H2TransportOptions): Transport<H2Response> {
  return {
    prepare() {},
    get replayable() {
      return options.retryable && proxied.replayable;
    },
    attempt(endpoint, n, handlers) {
      const headers: OutgoingHttpHeaders = { ...options.headers, 'x-tsmesh-attempt': String(n) };
      if (options.deadlineAt !== undefined) headers['grpc-timeout'] = formatGrpcTimeout(options.deadlineAt - performance.now());
      return proxied.attempt(options.session(endpoint), headers, handlers);
    },
    classify: (response) => proxied.classify(response),
    status: statusOf,
    discard: (response) => proxied.discard(response),
    respond: (response, done) => proxied.respond(response, done),
    fail: (err) => proxied.fail(err),
    get responded() {
      return proxied.responded;
    },
    onClientGone: (listener) => proxied.onClientGone(listener),
    get bytesIn() {
      return proxied.bytesIn;
    },
    get bytesOut() {
      return proxied.bytesOut;
    },
  };
}

export interface ForwardOnceResult {
  status: number;
  error: ProxyError | undefined;
  bytesIn: number;
  bytesOut: number;
}

/** One try, no retries (the inbound side: the app is the only endpoint). */
export function forwardStreamOnce(proxied: ProxiedStream, headers: OutgoingHttpHeaders, session: H2Session, done: (r: ForwardOnceResult) => void): void {
  const result: ForwardOnceResult = { status: 0, error: undefined, bytesIn: 0, bytesOut: 0 };
  let finished = false;
  const finish = () => {
    if (finished) return;
    finished = true;
    result.bytesIn = proxied.bytesIn;
    done(result);
  };
  const attempt = proxied.attempt(session, headers, {
    onResponse(response) {
      result.status = statusOf(response);
      proxied.respond(response, ({ bytes, cut }) => {
        result.bytesOut = bytes;
        if (cut) result.error = new ProxyError('UPSTREAM_RESET', 'the response was cut');
        finish();
      });
    },
    onError(err) {
      result.error = err;
      result.status = proxied.fail(err) ?? 0;
      finish();
    },
  });
  // the client went away: a response under way is recorded with the bytes the client was sent
  proxied.onClientGone(() => {
    if (finished) return;
    attempt.cancel();
    if (!proxied.responded) result.status = 499;
    result.bytesOut = proxied.bytesOut;
    finish();
  });
}
