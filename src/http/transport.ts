// An HTTP/1.1 request as the exchange's Transport (src/outbound/exchange.ts): each try is
// forwarded with http-proxy over the endpoint's keep-alive pool; an idempotent request's body
// (or one marked `x-tsmesh-retry: true`) is read first, up to 64 KiB, so a retry can replay it.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { ProxyError } from '../errors/errors.ts';
import { sendProxyError } from '../errors/response.ts';
import { classify, peerErrorOf } from '../classify/classify.ts';
import { prepareRequestHeaders, type Forwarder } from './forward.ts';
import { IDEMPOTENT, readReplayable, replay, type Body } from '../retry/replay.ts';
import type { ConnectionPools } from '../upstream/pool.ts';
import { endpointDestination } from '../upstream/dial.ts';
import type { Transport } from '../outbound/exchange.ts';

/** http://ip:port of an endpoint (IPv6 in brackets). */
export function targetUrl(ep: { ip: string; port: number }): string {
  return ep.ip.includes(':') ? `http://[${ep.ip}]:${ep.port}` : `http://${ep.ip}:${ep.port}`;
}

export function http1Transport(req: IncomingMessage, res: ServerResponse, forwarder: Forwarder, pools: ConnectionPools): Transport<IncomingMessage> {
  const wantsRetry = req.headers['x-tsmesh-retry'] === 'true';
  delete req.headers['x-tsmesh-retry'];
  prepareRequestHeaders(req);
  const idempotent = IDEMPOTENT.has(req.method ?? '') || wantsRetry;
  let body: Body = { replayable: false, stream: req, bytes: 0 };
  let bytesIn = 0;

  return {
    prepare() {
      if (!idempotent) return;
      return readReplayable(req).then(
        (b) => {
          body = b;
        },
        () => {
          throw new ProxyError('BAD_REQUEST', 'the client closed the request body early');
        },
      );
    },
    get replayable() {
      return body.replayable;
    },
    attempt(endpoint, n, handlers) {
      req.headers['x-tsmesh-attempt'] = String(n);
      let stream: Readable;
      if (body.replayable) {
        stream = replay(body.bytes);
        bytesIn = body.bytes.length;
      } else {
        stream = body.stream;
        // counted from here: a 'data' listener added earlier would start the flow before the pipe
        bytesIn = body.bytes;
        stream.on('data', (chunk: Buffer) => (bytesIn += chunk.length));
      }
      return forwarder.attempt(req, res, targetUrl(endpoint), pools.agentFor(endpointDestination(endpoint)), stream, handlers);
    },
    classify: (proxyRes) => classify(proxyRes.statusCode, undefined, undefined, peerErrorOf(proxyRes.headers)),
    status: (proxyRes) => proxyRes.statusCode ?? 0,
    discard: (proxyRes) => void proxyRes.resume(),
    respond: (proxyRes, done) => forwarder.respond(res, proxyRes, done),
    fail(err) {
      const started = res.headersSent;
      sendProxyError(res, err);
      return started ? undefined : err.status;
    },
    get responded() {
      return res.headersSent;
    },
    onClientGone(listener) {
      res.once('close', () => {
        if (!res.writableFinished) listener();
      });
    },
    get bytesIn() {
      return bytesIn;
    },
  };
}
