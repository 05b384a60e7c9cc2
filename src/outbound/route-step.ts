// The outbound pipeline's route step: (the Service port a request was sent to, its head) ->
// where it goes. Without routes the answer is that Service, as before. With mesh routes
// (src/route) it is the backend Service the matched rule's weights chose, with the rule's
// filters and timeouts; or a redirect; or the Gateway API's 404 (no match) / 500 (no usable
// backend). A backend Service that discovery has not loaded yet is waited for (at most 1 s),
// as the first request to any service is; one that does not exist is a 500.
import type { Transport } from '../upstream/transport.ts';
import type { ServerRequest } from '../http1/server.ts';
import type { UpstreamAttempt } from '../http1/client.ts';
import { ProxyError } from '../errors/errors.ts';
import type { Registry } from '../registry/registry.ts';
import type { ServiceTarget } from '../registry/view.ts';
import type { HeaderModifier, RouteRef } from '../route/model.ts';
import { modifyHeaders, type Forward, type RequestHead } from '../route/table.ts';
import type { H2Response } from '../h2/forward.ts';

export type RouteStep =
  /** Send to `target`: the Service itself (no route applies), or the route's backend. */
  | { readonly type: 'service'; readonly target: ServiceTarget; readonly parent: ServiceTarget | undefined; readonly route: RouteRef | undefined; readonly forward: Forward | undefined }
  | { readonly type: 'redirect'; readonly parent: ServiceTarget; readonly route: RouteRef; readonly status: number; readonly location: string; readonly responseHeaders: readonly HeaderModifier[] }
  | { readonly type: 'error'; readonly parent: ServiceTarget; readonly route: RouteRef | undefined; readonly error: ProxyError };

export function routeStep(registry: Registry, callerNamespace: string, random: () => number, target: ServiceTarget, head: RequestHead, done: (step: RouteStep) => void): void {
  const table = registry.view.routeTable(target, callerNamespace);
  const d = table?.decide(head, random);
  if (!d || d.type === 'none') return done({ type: 'service', target, parent: undefined, route: undefined, forward: undefined });
  const parent = target;
  const name = `${target.service.name}.${target.service.namespace}`;
  switch (d.type) {
    case 'no-match':
      return done({ type: 'error', parent, route: undefined, error: new ProxyError('NO_ROUTE', `no route of ${name}:${target.port.port} matches ${head.method} ${head.path}`) });
    case 'invalid-backend':
      return done({ type: 'error', parent, route: d.route, error: new ProxyError('INVALID_BACKEND', `${d.route.kind} ${d.route.namespace}/${d.route.name}: ${d.message}`) });
    case 'redirect':
      return done({ type: 'redirect', parent, route: d.route, status: d.status, location: d.location, responseHeaders: d.responseHeaders });
    case 'forward': {
      const b = d.forward.backend;
      const authority = `${b.name}.${b.namespace}:${b.port}`;
      const resolved = (backend: ServiceTarget | undefined) => {
        if (backend) done({ type: 'service', target: backend, parent, route: d.route, forward: d.forward });
        else done({ type: 'error', parent, route: d.route, error: new ProxyError('INVALID_BACKEND', `${d.route.kind} ${d.route.namespace}/${d.route.name}: backend Service ${b.namespace}/${b.name} port ${b.port} does not exist`) });
      };
      const known = registry.view.byAuthority(authority, callerNamespace);
      if (known) return resolved(known);
      registry.ensureAuthority(authority, callerNamespace).then(resolved, () => resolved(undefined));
    }
  }
}

/** The head the route step reads of an HTTP/1.1 request. */
export function http1Head(req: ServerRequest, authority: string, path: string): RequestHead {
  return { method: req.method, path, authority, headers: req.headers, grpc: false };
}

/** Applies a forward's request filters to an HTTP/1.1 request (headers, URLRewrite). */
export function rewriteHttp1(req: ServerRequest, forward: Forward): void {
  modifyHeaders(req.headers, forward.requestHeaders.map(withoutFraming));
  // the request line is written from `url` when each try is sent
  if (forward.path !== undefined) (req as { url: string }).url = forward.path;
  if (forward.authority !== undefined) req.headers.host = forward.authority;
}

/** The HTTP/1.1 response to a RequestRedirect: its header lines (the filter's response headers applied). */
export function redirectLines(location: string, responseHeaders: readonly HeaderModifier[]): string {
  const headers: Record<string, string | string[] | undefined> = { location };
  modifyHeaders(headers, responseHeaders.map(withoutFraming));
  let lines = '';
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [value]) lines += `${name}: ${v}\r\n`;
  }
  return `${lines}content-length: 0\r\n`;
}

// Header modifiers do not touch how a message is framed or the connection: the proxy owns those.
const FRAMING = new Set(['content-length', 'transfer-encoding', 'connection', 'keep-alive', 'upgrade', 'te', 'trailer']);
function withoutFraming(m: HeaderModifier): HeaderModifier {
  return { set: m.set.filter((h) => !FRAMING.has(h.name)), add: m.add.filter((h) => !FRAMING.has(h.name)), remove: m.remove.filter((n) => !FRAMING.has(n)) };
}

/** Applies a forward's request filters to an HTTP/2 request's headers (pseudo-headers included). */
export function rewriteH2(headers: Record<string, string | string[] | number | undefined>, forward: Forward): void {
  modifyHeaders(headers, forward.requestHeaders);
  if (forward.path !== undefined) headers[':path'] = forward.path;
  if (forward.authority !== undefined) headers[':authority'] = forward.authority;
}

/** A transport whose response head gets the ResponseHeaderModifier filters before it is sent. */
export function modifyingResponses<R>(transport: Transport<R>, mods: readonly HeaderModifier[], apply: (response: R, mods: readonly HeaderModifier[]) => void): Transport<R> {
  if (mods.length === 0) return transport;
  const safe = mods.map(withoutFraming);
  return {
    prepare: () => transport.prepare(),
    get replayable() {
      return transport.replayable;
    },
    attempt: (endpoint, n, handlers) => transport.attempt(endpoint, n, handlers),
    classify: (response) => transport.classify(response),
    status: (response) => transport.status(response),
    discard: (response) => transport.discard(response),
    respond(response, done) {
      apply(response, safe);
      transport.respond(response, done);
    },
    fail: (err) => transport.fail(err),
    get responded() {
      return transport.responded;
    },
    onClientGone: (listener) => transport.onClientGone(listener),
    get bytesIn() {
      return transport.bytesIn;
    },
    get bytesOut() {
      return transport.bytesOut;
    },
  };
}

/** ResponseHeaderModifier on an HTTP/1.1 upstream response head (its header lines, in order). */
export function modifyHttp1Response(attempt: UpstreamAttempt, mods: readonly HeaderModifier[]): void {
  const r = attempt.response;
  if (!r) return;
  const { names, values } = r;
  const drop = (name: string) => {
    for (let i = names.length - 1; i >= 0; i--) {
      if (names[i]!.toLowerCase() === name) {
        names.splice(i, 1);
        values.splice(i, 1);
      }
    }
  };
  for (const m of mods) {
    for (const h of m.set) {
      drop(h.name);
      names.push(h.name);
      values.push(h.value);
    }
    for (const h of m.add) {
      names.push(h.name);
      values.push(h.value);
    }
    for (const name of m.remove) drop(name);
  }
}

/** ResponseHeaderModifier on an HTTP/2 upstream response head. */
export function modifyH2Response(res: H2Response, mods: readonly HeaderModifier[]): void {
  modifyHeaders(res.headers as Record<string, string | string[] | undefined>, mods);
}
