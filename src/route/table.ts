// The routes that apply to one Service port, for callers in one namespace, ordered by the
// Gateway API's precedence, and the decision for one request: which rule matched, which backend
// the weights chose, what the filters do. Pure: no sockets, the random source injected.
//
// Which routes apply (GAMMA): routes whose parentRefs name the Service (and this port, or no
// port). A route in the caller's namespace for a Service of another namespace is a consumer
// route: when there are any, only they apply to that caller; otherwise the Service's own
// namespace's (producer) routes do. Routes of a third namespace apply to no one.
// gRPC calls go by the GRPCRoutes when the Service has any, else by its HTTPRoutes; other
// requests by its HTTPRoutes. No applicable route: the request goes to the Service as before.
//
// Precedence between matches, across every rule of every applicable route (HTTPRoute):
//   1. an Exact path, then a RegularExpression path (longer pattern first), then a PathPrefix
//      (longer prefix first)
//   2. a method match
//   3. more header matches
//   4. more query parameter matches
// (GRPCRoute: more characters of the matched service, then of the method, then more header
// matches.) Ties: the older route (creationTimestamp), then "namespace/name" alphabetically,
// then the rule's and the match's order in the route.
import type { Backend, BackendTarget, HeaderModifier, Match, MeshRoute, PathModifier, Rule, RouteRef } from './model.ts';

/** What matching reads of a request. `headers`: lowercase names, as Node gives them. */
export interface RequestHead {
  readonly method: string;
  /** The request target in origin form: path and query. */
  readonly path: string;
  readonly authority: string;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly grpc: boolean;
}

interface Entry {
  readonly route: MeshRoute;
  readonly rule: Rule;
  readonly match: Match;
  readonly matchIndex: number;
}

export type Decision =
  /** No route of this request's kind applies: the request goes to the Service as before. */
  | { readonly type: 'none' }
  | { readonly type: 'forward'; readonly route: RouteRef; readonly forward: Forward }
  | { readonly type: 'redirect'; readonly route: RouteRef; readonly status: number; readonly location: string; readonly responseHeaders: readonly HeaderModifier[] }
  /** 404: routes apply, none matched. */
  | { readonly type: 'no-match' }
  /** 500: the matched rule has no usable backend (none, all weight 0, or the one chosen is invalid). */
  | { readonly type: 'invalid-backend'; readonly route: RouteRef; readonly message: string };

export interface Forward {
  readonly backend: Backend;
  /** The rule's, then the backend's. */
  readonly requestHeaders: readonly HeaderModifier[];
  readonly responseHeaders: readonly HeaderModifier[];
  /** The rewritten request target (URLRewrite path), query kept; undefined: unchanged. */
  readonly path: string | undefined;
  /** The rewritten authority (URLRewrite hostname); undefined: unchanged. */
  readonly authority: string | undefined;
  /** The mirrors this request goes to (each rule mirror sampled by its share). */
  readonly mirrors: readonly BackendTarget[];
  readonly requestTimeoutMs: number | null | undefined;
  readonly backendTimeoutMs: number | null | undefined;
}

export class RouteTable {
  readonly #http: readonly Entry[];
  readonly #grpc: readonly Entry[];

  private constructor(http: Entry[], grpc: Entry[]) {
    this.#http = http;
    this.#grpc = grpc;
  }

  /**
   * The routes for Service `parent` port `port` as callers in `callerNamespace` see them;
   * undefined when none applies (requests go to the Service as before).
   */
  static build(routes: readonly MeshRoute[], parent: { readonly namespace: string; readonly name: string }, port: number, callerNamespace: string): RouteTable | undefined {
    const attached = routes.filter((r) => r.parents.some((p) => p.namespace === parent.namespace && p.name === parent.name && (p.port === undefined || p.port === port)));
    if (attached.length === 0) return undefined;
    const consumer = callerNamespace !== parent.namespace ? attached.filter((r) => r.namespace === callerNamespace) : [];
    const applied = consumer.length ? consumer : attached.filter((r) => r.namespace === parent.namespace);
    if (applied.length === 0) return undefined;
    const http = entries(applied.filter((r) => r.kind === 'HTTPRoute')).sort(httpOrder);
    const grpc = entries(applied.filter((r) => r.kind === 'GRPCRoute')).sort(grpcOrder);
    return new RouteTable(http, grpc);
  }

  /** The first entry (by precedence) that matches; undefined: none does. */
  match(head: RequestHead): { route: MeshRoute; rule: Rule; match: Match } | undefined {
    const list = head.grpc && this.#grpc.length ? this.#grpc : this.#http;
    if (list.length === 0) return undefined;
    const { path, query } = splitTarget(head.path);
    let params: URLSearchParams | undefined;
    for (const e of list) {
      const m = e.match;
      if (m.grpc && !grpcMatches(m, path)) continue;
      if (m.path && !pathMatches(m, path)) continue;
      if (m.method !== undefined && m.method !== head.method) continue;
      if (!m.headers.every((h) => stringMatches(h, headerValue(head.headers[h.name])))) continue;
      if (m.query.length) {
        params ??= new URLSearchParams(query);
        if (!m.query.every((q) => stringMatches(q, params!.get(q.name) ?? undefined))) continue;
      }
      return e;
    }
    return undefined;
  }

  /** The decision for one request; `random` returns 0 <= x < 1 (weights, mirror shares). */
  decide(head: RequestHead, random: () => number): Decision {
    if (!(head.grpc && this.#grpc.length) && this.#http.length === 0) return { type: 'none' };
    const hit = this.match(head);
    if (!hit) return { type: 'no-match' };
    const { route, rule, match } = hit;
    const ref: RouteRef = { kind: route.kind, namespace: route.namespace, name: route.name };
    const { path, query } = splitTarget(head.path);
    if (rule.redirect) {
      return { type: 'redirect', route: ref, status: rule.redirect.statusCode, location: redirectLocation(rule.redirect, head.authority, path, query, match), responseHeaders: rule.responseHeaders };
    }
    const backend = pickBackend(rule.backends, random);
    if (!backend) return { type: 'invalid-backend', route: ref, message: rule.backends.length ? 'every backendRef of the matched rule has weight 0' : 'the matched rule has no backendRefs' };
    const problem = backendProblem(backend, route);
    if (problem) return { type: 'invalid-backend', route: ref, message: problem };
    const rewrite = rule.rewrite;
    return {
      type: 'forward',
      route: ref,
      forward: {
        backend,
        requestHeaders: [...rule.requestHeaders, ...backend.requestHeaders],
        responseHeaders: [...rule.responseHeaders, ...backend.responseHeaders],
        path: rewrite?.path ? modifyPath(rewrite.path, path, match) + query : undefined,
        authority: rewrite?.hostname,
        mirrors: rule.mirrors.filter((m) => m.ratio >= 1 || (m.ratio > 0 && random() < m.ratio)).map((m) => m.backend),
        requestTimeoutMs: rule.requestTimeoutMs,
        backendTimeoutMs: rule.backendTimeoutMs,
      },
    };
  }
}

/** Why a backend cannot be sent to, before looking it up: not a Service, or in another namespace (no ReferenceGrant support). */
export function backendProblem(b: BackendTarget, route: RouteRef): string | undefined {
  if (b.group !== '' || b.kind !== 'Service') return `backendRef ${b.group || 'core'}/${b.kind} ${b.name} is not a Service`;
  if (b.namespace !== route.namespace) return `backendRef ${b.namespace}/${b.name} is in another namespace than the route (ReferenceGrant is not supported)`;
  if (b.port === undefined) return `backendRef ${b.name} has no port`;
  return undefined;
}

function entries(routes: MeshRoute[]): Entry[] {
  const out: Entry[] = [];
  for (const route of routes) {
    for (const rule of route.rules) {
      const matches = rule.matches.length ? rule.matches : [DEFAULT_MATCH];
      matches.forEach((match, matchIndex) => out.push({ route, rule, match, matchIndex }));
    }
  }
  return out;
}

// A rule without matches matches every request (HTTPRoute: PathPrefix "/").
const DEFAULT_MATCH: Match = { path: undefined, method: undefined, headers: [], query: [], grpc: undefined };

const PATH_RANK = { Exact: 0, RegularExpression: 1, PathPrefix: 2 } as const;

function httpOrder(a: Entry, b: Entry): number {
  const pa = a.match.path ?? { type: 'PathPrefix' as const, value: '/' };
  const pb = b.match.path ?? { type: 'PathPrefix' as const, value: '/' };
  return (
    PATH_RANK[pa.type] - PATH_RANK[pb.type] ||
    pb.value.length - pa.value.length ||
    Number(b.match.method !== undefined) - Number(a.match.method !== undefined) ||
    b.match.headers.length - a.match.headers.length ||
    b.match.query.length - a.match.query.length ||
    tieBreak(a, b)
  );
}

function grpcOrder(a: Entry, b: Entry): number {
  return (
    (b.match.grpc?.service?.length ?? 0) - (a.match.grpc?.service?.length ?? 0) ||
    (b.match.grpc?.method?.length ?? 0) - (a.match.grpc?.method?.length ?? 0) ||
    b.match.headers.length - a.match.headers.length ||
    tieBreak(a, b)
  );
}

function tieBreak(a: Entry, b: Entry): number {
  const ta = a.route.createdAt ?? Number.MAX_SAFE_INTEGER;
  const tb = b.route.createdAt ?? Number.MAX_SAFE_INTEGER;
  if (ta !== tb) return ta - tb;
  const na = `${a.route.namespace}/${a.route.name}`;
  const nb = `${b.route.namespace}/${b.route.name}`;
  if (na !== nb) return na < nb ? -1 : 1;
  return a.rule.index - b.rule.index || a.matchIndex - b.matchIndex;
}

function splitTarget(target: string): { path: string; query: string } {
  const q = target.indexOf('?');
  return q === -1 ? { path: target || '/', query: '' } : { path: target.slice(0, q) || '/', query: target.slice(q) };
}

function pathMatches(m: Match, path: string): boolean {
  const p = m.path!;
  switch (p.type) {
    case 'Exact':
      return path === p.value;
    case 'PathPrefix':
      // element-wise: /foo matches /foo, /foo/ and /foo/bar, not /foobar
      return p.value === '/' || path === p.value || (path.startsWith(p.value) && path.charCodeAt(p.value.length) === 47);
    case 'RegularExpression':
      return p.re !== undefined && p.re.test(path);
  }
}

/** gRPC: the path is /package.Service/Method. */
function grpcMatches(m: Match, path: string): boolean {
  const g = m.grpc!;
  const slash = path.lastIndexOf('/');
  if (slash <= 0) return false;
  const service = path.slice(1, slash);
  const method = path.slice(slash + 1);
  if (g.type === 'Exact') return (g.service === undefined || g.service === service) && (g.method === undefined || g.method === method);
  return (g.serviceRe === undefined || g.serviceRe.test(service)) && (g.methodRe === undefined || g.methodRe.test(method));
}

function stringMatches(m: { readonly type: 'Exact' | 'RegularExpression'; readonly value: string; readonly re: RegExp | undefined }, value: string | undefined): boolean {
  if (value === undefined) return false;
  return m.type === 'Exact' ? value === m.value : m.re !== undefined && m.re.test(value);
}

function headerValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(',') : v;
}

/** Weighted choice; weight 0 is never chosen; undefined when no backend has weight. */
export function pickBackend(backends: readonly Backend[], random: () => number): Backend | undefined {
  let total = 0;
  for (const b of backends) total += b.weight;
  if (total === 0) return undefined;
  let x = random() * total;
  for (const b of backends) {
    if (b.weight === 0) continue;
    if (x < b.weight) return b;
    x -= b.weight;
  }
  return backends.findLast((b) => b.weight > 0);
}

/** A path modifier applied to `path` (no query) matched by `match`. */
export function modifyPath(mod: PathModifier, path: string, match: Match): string {
  if (mod.type === 'ReplaceFullPath') return mod.value;
  const prefix = match.path?.type === 'PathPrefix' ? match.path.value : '/';
  const rest = prefix === '/' ? path : path.slice(prefix.length); // '' or '/...'
  const joined = mod.value.replace(/\/$/, '') + (rest === '' || rest.startsWith('/') ? rest : `/${rest}`);
  return joined === '' ? '/' : joined;
}

const WELL_KNOWN_PORT = { http: 80, https: 443 } as const;

/** The Location of a RequestRedirect: scheme, host, port and path from the filter, the rest from the request. */
export function redirectLocation(r: NonNullable<Rule['redirect']>, authority: string, path: string, query: string, match: Match): string {
  const { host, port: requestPort } = splitHostPort(authority);
  const scheme = r.scheme ?? 'http';
  // A scheme given without a port means that scheme's well-known port; else the request's port.
  const port = r.port ?? (r.scheme ? undefined : requestPort);
  const shownPort = port === undefined || port === WELL_KNOWN_PORT[scheme] ? '' : `:${port}`;
  const hostname = r.hostname ?? host;
  const target = r.path ? modifyPath(r.path, path, match) : path;
  return `${scheme}://${hostname.includes(':') ? `[${hostname}]` : hostname}${shownPort}${target}${query}`;
}

function splitHostPort(authority: string): { host: string; port: number | undefined } {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(authority) ?? /^([^:]*)(?::(\d+))?$/.exec(authority);
  if (!m) return { host: authority, port: undefined };
  return { host: m[1] ?? '', port: m[2] === undefined ? undefined : Number(m[2]) };
}

/** Applies header modifiers in order: set (replace), add (append to an existing value), remove. */
export function modifyHeaders(headers: Record<string, string | string[] | number | undefined>, mods: readonly HeaderModifier[]): void {
  for (const mod of mods) {
    for (const h of mod.set) headers[h.name] = h.value;
    for (const h of mod.add) {
      const prev = headers[h.name];
      headers[h.name] = prev === undefined ? h.value : Array.isArray(prev) ? [...prev, h.value] : `${prev},${h.value}`;
    }
    for (const name of mod.remove) delete headers[name];
  }
}
