// The outbound pipeline's protocol adapters (./pipeline.ts): how each protocol enters it, and
// what only that protocol does. One adapter per protocol, shared by all its requests:
//   HTTP/1.1   a ServerRequest of the raw-socket core (src/http1/); the exchange over the
//              HTTP/1.1 pools; a draining sidecar closes the connection after the response
//   HTTP/2     a stream (a gRPC call or any HTTP/2 request) as a ProxiedStream (src/h2/); the
//              exchange over the endpoints' HTTP/2 sessions; a gRPC call's deadline is its own
//              grpc-timeout, the `timeout` policy bounds only the wait for the response head
//   Upgrade    a WebSocket (any HTTP/1.1 Upgrade) request with its socket: one endpoint chosen
//              by the balancer, forwarded by http-proxy (src/http/forward.ts), in flight for as
//              long as it is open. A route's response header filters, mirrors and timeouts do
//              not apply to it (its response is the 101 and the frames after it)
import type { IncomingMessage } from 'node:http';
import { STATUS_CODES } from '../http/node-http.ts';
import type { Socket } from 'node:net';
import type { IncomingHttpHeaders, OutgoingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import { ProxyError } from '../errors/errors.ts';
import { endWithProxyError } from '../errors/response.ts';
import type { ServerRequest } from '../http1/server.ts';
import { Http1Transport } from '../http1/transport.ts';
import { ProxiedStream } from '../h2/forward.ts';
import { h2Transport } from '../h2/transport.ts';
import { requestHeaders } from '../h2/headers.ts';
import { isGrpc, parseGrpcTimeout } from '../h2/grpc.ts';
import { targetUrl, type Upgrade as HttpUpgrade } from '../http/forward.ts';
import { IDEMPOTENT } from '../retry/replay.ts';
import { endpointDestination, type Dialer } from '../upstream/dial.ts';
import type { H2Session } from '../upstream/h2-pool.ts';
import type { Endpoint } from '../registry/model.ts';
import type { HeaderModifier } from '../route/model.ts';
import { modifyHeaders, type Forward, type RequestHead } from '../route/table.ts';
import type { Logger } from '../log/log.ts';
import { httpProtocol } from '../log/access.ts';
import type { HttpRequestInfo } from '../tracing/index.ts';
import { runExchange, type Deadlines, type ExchangeDeps } from './exchange.ts';
import { http1Head, modifyH2Response, modifyHttp1Response, modifyingResponses, redirectLines, rewriteH2, rewriteHttp1 } from './route-step.ts';
import { mirrorH2, mirrorHttp1, type MirrorTarget } from './mirror.ts';
import { OutboundCall, type ConnectionTarget, type OutboundAdapter, type OutboundPipeline } from './pipeline.ts';

type Http1Request = ServerRequest<ConnectionTarget | undefined>;

export interface AdapterDeps {
  readonly pipeline: OutboundPipeline;
  readonly exchange: ExchangeDeps;
  readonly dialer: Dialer;
  readonly maxRequestBodyBytes: number | undefined;
  readonly log: Logger;
}

const NO_MODIFIERS: readonly HeaderModifier[] = [];
/** A route's `timeouts.request: 0s`: no deadline. */
const NO_DEADLINE: Deadlines = { totalMs: null, headMs: null };

/** One endpoint of each mirror Service the registry has (one not loaded yet is skipped this time). */
function mirrorTargets(deps: AdapterDeps, forward: Forward): MirrorTarget[] {
  const { registry } = deps.pipeline;
  const namespace = deps.pipeline.deps.namespace;
  const out: MirrorTarget[] = [];
  for (const m of forward.mirrors) {
    const target = registry.view.byAuthority(`${m.name}.${m.namespace}:${m.port}`, namespace);
    const endpoint = target && deps.exchange.balancer.pick(registry.view.endpoints(target));
    if (endpoint) out.push({ service: `${m.name}.${m.namespace}`, endpoint });
  }
  return out;
}

/** HTTP/1.1 requests of the raw-socket core. */
export class Http1Adapter implements OutboundAdapter<Http1Request> {
  readonly #deps: AdapterDeps;

  constructor(deps: AdapterDeps) {
    this.#deps = deps;
  }

  /** The core's request handler: a request whose head was read enters the pipeline. */
  readonly request = (req: Http1Request): void => {
    const { pipeline } = this.#deps;
    if (pipeline.deps.tracker.draining) req.closeAfter = true;
    const authority = authorityOf(req) ?? '';
    pipeline.handle(new OutboundCall(pipeline, this, req, req.conn.context, req.method, authority, pathOf(req.url), httpProtocol(req.httpVersion), req.socket.remoteAddress, false, req.headers, undefined));
  };

  spanRequest(call: OutboundCall<Http1Request>): HttpRequestInfo {
    return call.request as unknown as HttpRequestInfo; // method, url, headers, httpVersion
  }

  refuse(call: OutboundCall<Http1Request>, err: ProxyError): number {
    return call.request.fail(err) ?? err.status;
  }

  redirect(call: OutboundCall<Http1Request>, status: number, location: string, responseHeaders: readonly HeaderModifier[]): void {
    const req = call.request;
    if (!req.bodyDone) req.closeAfter = true; // its body is not read: the connection cannot go on
    req.writeHead(status, '', redirectLines(location, responseHeaders), 'length');
    req.end();
  }

  routeHead(call: OutboundCall<Http1Request>): RequestHead {
    return http1Head(call.request, call.authority, call.path);
  }

  rewrite(call: OutboundCall<Http1Request>, forward: Forward): void {
    rewriteHttp1(call.request, forward);
  }

  forward(call: OutboundCall<Http1Request>, forward: Forward | undefined): void {
    const deps = this.#deps;
    const req = call.request;
    const transport = new Http1Transport(req, deps.exchange.http1, endpointDestination);
    // after the transport has prepared the head (hop-by-hop removed), before the body flows
    if (forward?.mirrors.length) mirrorHttp1(mirrorTargets(deps, forward), req, deps.dialer, deps.log);
    const deadlines = forward?.requestTimeoutMs === null ? NO_DEADLINE : undefined;
    runExchange(deps.exchange, modifyingResponses(transport, forward?.responseHeaders ?? NO_MODIFIERS, modifyHttp1Response), call, call.span, call.done, deadlines);
  }

  grpcStatus(): number | undefined {
    return undefined;
  }
}

/** HTTP/2 streams (h2c with prior knowledge from the app): gRPC calls and other HTTP/2 requests. */
export class H2Adapter implements OutboundAdapter<ProxiedStream> {
  readonly #deps: AdapterDeps;
  /** The HTTP/2 session to an endpoint (one function for every request). */
  readonly #session: (ep: Endpoint) => H2Session;

  constructor(deps: AdapterDeps) {
    this.#deps = deps;
    this.#session = (ep: Endpoint) => deps.exchange.h2.sessionFor(endpointDestination(ep));
  }

  /** The HTTP/2 listener's stream handler: each stream enters the pipeline. */
  readonly stream = (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, conn: ConnectionTarget | undefined): void => {
    const { pipeline } = this.#deps;
    const grpc = isGrpc(headers);
    const proxied = new ProxiedStream(stream, grpc, this.#deps.maxRequestBodyBytes);
    const authority = String(headers[':authority'] ?? headers.host ?? '');
    // gRPC: the call's own deadline; a malformed one is refused (INTERNAL, as gRPC servers do)
    const timeout = grpc ? parseGrpcTimeout(headers['grpc-timeout']) : undefined;
    const call = new OutboundCall(pipeline, this, proxied, conn, String(headers[':method'] ?? ''), authority, String(headers[':path'] ?? '/'), 'HTTP/2', stream.session?.socket?.remoteAddress, grpc, requestHeaders(headers), timeout instanceof Error ? undefined : timeout);
    pipeline.handle(call, timeout instanceof Error ? new ProxyError('BAD_REQUEST', timeout.message) : undefined);
  };

  spanRequest(call: OutboundCall<ProxiedStream>): HttpRequestInfo {
    return { method: call.method, url: `http://${call.authority}${call.path}`, headers: call.headers as IncomingHttpHeaders, httpVersion: '2' };
  }

  refuse(call: OutboundCall<ProxiedStream>, err: ProxyError): number {
    return call.request.fail(err) ?? 0;
  }

  redirect(call: OutboundCall<ProxiedStream>, status: number, location: string, responseHeaders: readonly HeaderModifier[]): void {
    const response: Record<string, string | number> = { ':status': status, location };
    modifyHeaders(response, responseHeaders);
    call.request.client.respond(response, { endStream: true });
  }

  routeHead(call: OutboundCall<ProxiedStream>): RequestHead {
    return { method: call.method, path: call.path, authority: call.authority, headers: call.headers as Record<string, string | string[] | undefined>, grpc: call.grpc };
  }

  rewrite(call: OutboundCall<ProxiedStream>, forward: Forward): void {
    rewriteH2(call.headers, forward);
  }

  forward(call: OutboundCall<ProxiedStream>, forward: Forward | undefined): void {
    const deps = this.#deps;
    const headers = call.headers as OutgoingHttpHeaders;
    const wantsRetry = headers['x-tsmesh-retry'] === 'true';
    delete headers['x-tsmesh-retry'];
    // gRPC: `timeout` bounds the wait for the response head; the call itself lives as long as
    // the app keeps it, up to its own grpc-timeout (docs/http2-grpc.md). A route's
    // `timeouts.request: 0s` turns the deadline off.
    const policyDeadline = forward?.requestTimeoutMs === null ? null : call.policy.timeout;
    const own = call.ownTimeoutMs;
    const deadlines: Deadlines = call.grpc ? { headMs: policyDeadline, totalMs: own ?? null } : { totalMs: policyDeadline, headMs: null };
    if (forward?.mirrors.length) mirrorH2(mirrorTargets(deps, forward), headers, call.request.client, deps.exchange.h2, deps.log);
    const transport = h2Transport(call.request, {
      headers,
      retryable: call.grpc || wantsRetry || IDEMPOTENT.has(call.method),
      deadlineAt: own === undefined ? undefined : call.start + own,
      session: this.#session,
    });
    runExchange(deps.exchange, modifyingResponses(transport, forward?.responseHeaders ?? NO_MODIFIERS, modifyH2Response), call, call.span, call.done, deadlines);
  }

  grpcStatus(call: OutboundCall<ProxiedStream>): number | undefined {
    return call.request.grpcStatus;
  }
}

type Upgrade = HttpUpgrade<Http1Request>;

/** WebSocket (any Upgrade) requests: in flight for as long as they are open. */
export class UpgradeAdapter implements OutboundAdapter<Upgrade> {
  readonly #deps: AdapterDeps;

  constructor(deps: AdapterDeps) {
    this.#deps = deps;
  }

  /** The core's upgrade handler: the request (its socket now the pipeline's) enters the pipeline. */
  readonly upgrade = (req: Http1Request, socket: Socket, head: Buffer): void => {
    const { pipeline } = this.#deps;
    pipeline.handle(new OutboundCall(pipeline, this, { req, socket, head }, req.conn.context, req.method, authorityOf(req) ?? '', pathOf(req.url), httpProtocol(req.httpVersion), socket.remoteAddress, false, req.headers, undefined));
  };

  spanRequest(call: OutboundCall<Upgrade>): HttpRequestInfo {
    return call.request.req as unknown as HttpRequestInfo;
  }

  refuse(call: OutboundCall<Upgrade>, err: ProxyError): number {
    endWithProxyError(call.request.socket, err);
    return err.status;
  }

  redirect(call: OutboundCall<Upgrade>, status: number, location: string, responseHeaders: readonly HeaderModifier[]): void {
    const { socket } = call.request;
    socket.once('finish', () => socket.destroy());
    socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Redirect'}\r\n${redirectLines(location, responseHeaders)}connection: close\r\n\r\n`);
  }

  routeHead(call: OutboundCall<Upgrade>): RequestHead {
    return http1Head(call.request.req, call.authority, call.path);
  }

  rewrite(call: OutboundCall<Upgrade>, forward: Forward): void {
    rewriteHttp1(call.request.req, forward);
  }

  forward(call: OutboundCall<Upgrade>): void {
    const deps = this.#deps;
    const { req, socket, head } = call.request;
    // one endpoint, by the balancer; no retries (the upgrade cannot be replayed)
    const endpoint = call.endpoint ?? deps.exchange.balancer.pick(call.endpoints());
    if (!endpoint) return deps.pipeline.refuse(call, new ProxyError('NO_HEALTHY_ENDPOINTS', `service ${call.name} has no ready endpoints`));
    req.headers['x-tsmesh-attempt'] = '1';
    deps.exchange.forwarder.upgrade(req as unknown as IncomingMessage, socket, head, targetUrl(endpoint), deps.exchange.pools.agentFor(endpointDestination(endpoint)), (r) =>
      call.done({ status: r.status, error: r.error, endpoint, attempts: 1, bytesIn: socket.bytesRead, bytesOut: socket.bytesWritten, upstreamMs: r.headAt === undefined ? undefined : r.headAt - call.start }),
    );
  }

  grpcStatus(): number | undefined {
    return undefined;
  }
}

/** The authority a request names: its absolute-form URL's (an HTTP_PROXY client), else Host. */
export function authorityOf(req: { readonly url: string; readonly headers: { host?: string | string[] | undefined } }): string | undefined {
  const url = req.url;
  if (url.startsWith('http://')) {
    const end = url.indexOf('/', 7);
    return url.slice(7, end === -1 ? undefined : end) || undefined;
  }
  const host = req.headers.host;
  return typeof host === 'string' ? host : undefined;
}

/** The path of a request target (an absolute-form URL loses its scheme and authority). */
function pathOf(url: string): string {
  if (!url.startsWith('http://')) return url;
  const slash = url.indexOf('/', 7);
  return slash === -1 ? '/' : url.slice(slash);
}
