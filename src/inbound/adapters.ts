// The inbound pipeline's protocol adapters (./pipeline.ts): how each protocol enters it and
// reaches the app. One adapter per protocol, shared by all its requests:
//   HTTP/1.1   a ServerRequest of the raw-socket core (src/http1/), one forward over the
//              keep-alive pool to the app; a draining sidecar closes the connection after it
//   HTTP/2     a stream (a gRPC call) as a ProxiedStream, one stream on the app's h2c session
//   Upgrade    a WebSocket (any Upgrade) request with its socket, forwarded by http-proxy
//              (src/http/forward.ts); in flight for as long as it is open
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { IncomingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import type { ProxyError } from '../errors/errors.ts';
import { endWithProxyError } from '../errors/response.ts';
import type { ServerRequest } from '../http1/server.ts';
import { ForwardOnce } from '../http1/transport.ts';
import type { Http1Pools } from '../http1/client.ts';
import { ProxiedStream } from '../h2/forward.ts';
import { forwardStreamOnce } from '../h2/transport.ts';
import { requestHeaders } from '../h2/headers.ts';
import { isGrpc } from '../h2/grpc.ts';
import { targetUrl, type Forwarder, type Upgrade as HttpUpgrade } from '../http/forward.ts';
import type { ConnectionPools } from '../upstream/pool.ts';
import type { H2Pools } from '../upstream/h2-pool.ts';
import type { HttpRequestInfo } from '../tracing/index.ts';
import { httpProtocol } from '../log/access.ts';
import { InboundCall, type Caller, type InboundAdapter, type InboundPipeline } from './pipeline.ts';

type Http1Request = ServerRequest<Caller>;
type Upgrade = HttpUpgrade<Http1Request>;

/** HTTP/1.1 requests of the raw-socket core. */
export class Http1Adapter implements InboundAdapter<Http1Request> {
  readonly #pipeline: InboundPipeline;
  readonly #pools: Http1Pools;

  constructor(pipeline: InboundPipeline, pools: Http1Pools) {
    this.#pipeline = pipeline;
    this.#pools = pools;
  }

  /** The core's request handler. */
  readonly request = (req: Http1Request): void => {
    const pipeline = this.#pipeline;
    if (pipeline.deps.tracker.draining) req.closeAfter = true;
    const host = req.headers.host;
    const socket = req.socket;
    pipeline.handle(new InboundCall(pipeline, this, req, req.conn.context, req.method, typeof host === 'string' ? host : '', req.url, httpProtocol(req.httpVersion), socket.remoteAddress, socket.remotePort, false, req.headers));
  };

  spanRequest(call: InboundCall<Http1Request>): HttpRequestInfo {
    return call.request as unknown as HttpRequestInfo; // method, url, headers, httpVersion
  }

  refuse(call: InboundCall<Http1Request>, err: ProxyError): number {
    return call.request.fail(err) ?? err.status;
  }

  forward(call: InboundCall<Http1Request>): void {
    new ForwardOnce(call.request, this.#pools, call.app, call.done);
  }

  grpcStatus(): number | undefined {
    return undefined;
  }
}

/** HTTP/2 streams (gRPC calls) from peer sidecars, and from h2c callers without one where allowed. */
export class H2Adapter implements InboundAdapter<ProxiedStream> {
  readonly #pipeline: InboundPipeline;
  readonly #h2: H2Pools;

  constructor(pipeline: InboundPipeline, h2: H2Pools) {
    this.#pipeline = pipeline;
    this.#h2 = h2;
  }

  /** The HTTP/2 listener's stream handler. */
  readonly stream = (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, caller: Caller): void => {
    const pipeline = this.#pipeline;
    const grpc = isGrpc(headers);
    const proxied = new ProxiedStream(stream, grpc, pipeline.deps.limits.maxRequestBodyBytes);
    const socket = stream.session?.socket;
    const authority = String(headers[':authority'] ?? headers.host ?? '');
    pipeline.handle(new InboundCall(pipeline, this, proxied, caller, String(headers[':method'] ?? ''), authority, String(headers[':path'] ?? ''), 'HTTP/2', socket?.remoteAddress, socket?.remotePort, grpc, requestHeaders(headers)));
  };

  spanRequest(call: InboundCall<ProxiedStream>): HttpRequestInfo {
    return { method: call.method, url: call.path, headers: { ...(call.headers as IncomingHttpHeaders), host: call.authority }, httpVersion: '2' };
  }

  refuse(call: InboundCall<ProxiedStream>, err: ProxyError): number {
    return call.request.fail(err) ?? 0;
  }

  forward(call: InboundCall<ProxiedStream>): void {
    forwardStreamOnce(call.request, call.headers, this.#h2.sessionFor(call.app), call.done);
  }

  grpcStatus(call: InboundCall<ProxiedStream>): number | undefined {
    return call.request.grpcStatus;
  }
}

/** WebSocket (any Upgrade) requests: in flight for as long as they are open. */
export class UpgradeAdapter implements InboundAdapter<Upgrade> {
  readonly #pipeline: InboundPipeline;
  readonly #forwarder: Forwarder;
  readonly #pools: ConnectionPools;

  constructor(pipeline: InboundPipeline, forwarder: Forwarder, pools: ConnectionPools) {
    this.#pipeline = pipeline;
    this.#forwarder = forwarder;
    this.#pools = pools;
  }

  /** The core's upgrade handler: the request and its socket are the pipeline's now. */
  readonly upgrade = (req: Http1Request, socket: Socket, head: Buffer): void => {
    const pipeline = this.#pipeline;
    const host = req.headers.host;
    pipeline.handle(new InboundCall(pipeline, this, { req, socket, head }, req.conn.context, req.method, typeof host === 'string' ? host : '', req.url, httpProtocol(req.httpVersion), socket.remoteAddress, socket.remotePort, false, req.headers));
  };

  spanRequest(call: InboundCall<Upgrade>): HttpRequestInfo {
    return call.request.req as unknown as HttpRequestInfo;
  }

  refuse(call: InboundCall<Upgrade>, err: ProxyError): number {
    endWithProxyError(call.request.socket, err);
    return err.status;
  }

  forward(call: InboundCall<Upgrade>): void {
    const { req, socket, head } = call.request;
    const app = call.app;
    this.#forwarder.upgrade(req as unknown as IncomingMessage, socket, head, targetUrl(app), this.#pools.agentFor(app), (r) =>
      call.done({ status: r.status, error: r.error, bytesIn: socket.bytesRead, bytesOut: socket.bytesWritten }),
    );
  }

  grpcStatus(): number | undefined {
    return undefined;
  }
}
