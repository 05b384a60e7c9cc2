// Routes: the Gateway API's HTTPRoute and GRPCRoute as a mesh uses them (GAMMA: a route whose
// parentRefs name a Service applies to the requests meshed pods send to that Service). The
// registry file and the discovery stream carry them in Kubernetes' own JSON shape
// (apiVersion, kind, metadata, spec), so a manifest that works in a cluster works in local
// mode. `validateRoute` checks one object and turns it into the normalized `MeshRoute` the
// matcher (./table.ts) uses; every problem names its field (`spec.rules[0].backendRefs[1].port`).
//
// What is outside the mesh subset is refused with a field-named reason rather than ignored
// (a filter tsmesh does not implement must not silently do nothing). What only applies to
// Gateways is ignored as the spec says (parentRefs to a Gateway, hostnames).
import * as v from '../schema/schema.ts';
import { parseDuration } from '../config/parse.ts';

export const GATEWAY_GROUP = 'gateway.networking.k8s.io';
export const ROUTE_API_VERSIONS = [`${GATEWAY_GROUP}/v1`, `${GATEWAY_GROUP}/v1beta1`, `${GATEWAY_GROUP}/v1alpha2`] as const;
export const ROUTE_KINDS = ['HTTPRoute', 'GRPCRoute'] as const;
export type RouteKind = (typeof ROUTE_KINDS)[number];

/** Longest regular expression accepted (they run per request: keep them small). */
export const MAX_REGEX_LENGTH = 1024;

const dnsLabel = v.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'must be a DNS label (lowercase letters, digits, -)').max(63);
const objectName = v.string().regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, 'must be a DNS name (lowercase letters, digits, -, .)').max(253);
const port = v.number().int().min(1).max(65535);
// RFC 7230 token: what an HTTP header name may be.
const headerName = v.string().regex(/^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$/, 'must be an HTTP header name').max(256);
const headerValue = v.string().max(4096).refine((v) => !/[\r\n\0]/.test(v), 'must not contain CR, LF or NUL');
// Gateway API durations: up to four number+unit pairs, units h, m, s, ms ("0s" disables).
const duration = v.string().regex(/^([0-9]{1,5}(h|m|s|ms)){1,4}$/, 'must be a Gateway API duration such as 500ms, 10s, 1m30s');

const parentRefSchema = v
  .object({
    group: v.string().optional(),
    kind: v.string().optional(),
    namespace: dnsLabel.optional(),
    name: v.string().min(1).max(253),
    port: port.optional(),
    sectionName: v.string().optional(),
  })
  .strict();

const headerMatchSchema = v
  .object({ type: v.oneOf(['Exact', 'RegularExpression']).default('Exact'), name: headerName, value: v.string().max(4096) })
  .strict();

const queryMatchSchema = v
  .object({ type: v.oneOf(['Exact', 'RegularExpression']).default('Exact'), name: v.string().min(1).max(256), value: v.string().max(4096) })
  .strict();

const pathMatchSchema = v
  .object({ type: v.oneOf(['Exact', 'PathPrefix', 'RegularExpression']).default('PathPrefix'), value: v.string().max(4096).default('/') })
  .strict();

const httpMatchSchema = v
  .object({
    path: pathMatchSchema.optional(),
    headers: v.array(headerMatchSchema).max(16).default([]),
    queryParams: v.array(queryMatchSchema).max(16).default([]),
    method: v.oneOf(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH']).optional(),
  })
  .strict();

const grpcMethodMatchSchema = v
  .object({ type: v.oneOf(['Exact', 'RegularExpression']).default('Exact'), service: v.string().max(1024).optional(), method: v.string().max(1024).optional() })
  .strict();

const grpcMatchSchema = v
  .object({ method: grpcMethodMatchSchema.optional(), headers: v.array(headerMatchSchema).max(16).default([]) })
  .strict();

const headerModifierSchema = v
  .object({
    set: v.array(v.object({ name: headerName, value: headerValue }).strict()).max(16).default([]),
    add: v.array(v.object({ name: headerName, value: headerValue }).strict()).max(16).default([]),
    remove: v.array(headerName).max(16).default([]),
  })
  .strict();

const backendObjectRef = {
  group: v.string().default(''),
  kind: v.string().default('Service'),
  name: v.string().min(1).max(253),
  namespace: dnsLabel.optional(),
  port: port.optional(),
};

const pathModifierSchema = v.tagged('type', [
  v.object({ type: v.literal('ReplaceFullPath'), replaceFullPath: v.string().startsWith('/', 'must start with /').max(1024) }).strict(),
  // "" replaces the prefix with nothing: /foo/bar with prefix /foo becomes /bar
  v.object({ type: v.literal('ReplacePrefixMatch'), replacePrefixMatch: v.string().max(1024).refine((v) => v === '' || v.startsWith('/'), 'must start with / (or be empty)') }).strict(),
]);

const hostname = v.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/, 'must be a host name').max(253);

const mirrorFilterSchema = v
  .object({
    type: v.literal('RequestMirror'),
    requestMirror: v
      .object({
        backendRef: v.object(backendObjectRef).strict(),
        percent: v.number().int().min(0).max(100).optional(),
        fraction: v.object({ numerator: v.number().int().min(0), denominator: v.number().int().min(1).default(100) }).strict().optional(),
      })
      .strict(),
  })
  .strict();

const filterSchema = v.tagged('type', [
  v.object({ type: v.literal('RequestHeaderModifier'), requestHeaderModifier: headerModifierSchema }).strict(),
  v.object({ type: v.literal('ResponseHeaderModifier'), responseHeaderModifier: headerModifierSchema }).strict(),
  v
    .object({
      type: v.literal('RequestRedirect'),
      requestRedirect: v
        .object({
          scheme: v.oneOf(['http', 'https']).optional(),
          hostname: hostname.optional(),
          path: pathModifierSchema.optional(),
          port: port.optional(),
          statusCode: v.oneOf([301, 302, 303, 307, 308], 'Invalid input').default(302),
        })
        .strict(),
    })
    .strict(),
  v.object({ type: v.literal('URLRewrite'), urlRewrite: v.object({ hostname: hostname.optional(), path: pathModifierSchema.optional() }).strict() }).strict(),
  mirrorFilterSchema,
]);

const requestHeaderFilter = v.object({ type: v.literal('RequestHeaderModifier'), requestHeaderModifier: headerModifierSchema }).strict();
const responseHeaderFilter = v.object({ type: v.literal('ResponseHeaderModifier'), responseHeaderModifier: headerModifierSchema }).strict();
const backendFilterSchema = v.tagged('type', [requestHeaderFilter, responseHeaderFilter]);

const backendRefSchema = v
  .object({ ...backendObjectRef, weight: v.number().int().min(0).max(1_000_000).default(1), filters: v.array(backendFilterSchema).max(16).default([]) })
  .strict();

const timeoutsSchema = v.object({ request: duration.optional(), backendRequest: duration.optional() }).strict();

const httpRuleSchema = v
  .object({
    name: v.string().max(253).optional(),
    matches: v.array(httpMatchSchema).max(64).default([]),
    filters: v.array(filterSchema).max(16).default([]),
    backendRefs: v.array(backendRefSchema).max(16).default([]),
    timeouts: timeoutsSchema.optional(),
  })
  .strict();

const grpcRuleSchema = v
  .object({
    name: v.string().max(253).optional(),
    matches: v.array(grpcMatchSchema).max(64).default([]),
    // GRPCRoute has no redirect or rewrite
    filters: v.array(v.tagged('type', [requestHeaderFilter, responseHeaderFilter, mirrorFilterSchema])).max(16).default([]),
    backendRefs: v.array(backendRefSchema).max(16).default([]),
  })
  .strict();

const metadataSchema = v.object({
  name: objectName,
  namespace: dnsLabel.default('default'),
  creationTimestamp: v.string().datetime().optional(),
  generation: v.number().int().optional(),
});

const commonSpec = { parentRefs: v.array(parentRefSchema).min(1, 'a route needs a parentRef (the Service it applies to)').max(32), hostnames: v.array(v.string()).max(16).optional() };

const httpRouteSchema = v.object({
  apiVersion: v.oneOf(ROUTE_API_VERSIONS).default(`${GATEWAY_GROUP}/v1`),
  kind: v.literal('HTTPRoute'),
  metadata: metadataSchema,
  spec: v.object({ ...commonSpec, rules: v.array(httpRuleSchema).max(64).default([{ matches: [], filters: [], backendRefs: [] }]) }).strict(),
  status: v.unknown().optional(),
});

const grpcRouteSchema = v.object({
  apiVersion: v.oneOf(ROUTE_API_VERSIONS).default(`${GATEWAY_GROUP}/v1`),
  kind: v.literal('GRPCRoute'),
  metadata: metadataSchema,
  spec: v.object({ ...commonSpec, rules: v.array(grpcRuleSchema).max(64).default([{ matches: [], filters: [], backendRefs: [] }]) }).strict(),
  status: v.unknown().optional(),
});

/** One route object as the registry file and the discovery stream carry it. */
export const routeSchema = v.tagged('kind', [httpRouteSchema, grpcRouteSchema]);

// ---- the normalized model ------------------------------------------------------------------

export interface RouteRef {
  readonly kind: RouteKind;
  readonly namespace: string;
  readonly name: string;
}

/** A Service a route applies to (parentRef group "", kind Service); `port` limits it to one Service port. */
export interface RouteParent {
  readonly namespace: string;
  readonly name: string;
  readonly port: number | undefined;
}

export interface StringMatch {
  readonly type: 'Exact' | 'RegularExpression';
  readonly value: string;
  readonly re: RegExp | undefined;
}

export interface HeaderMatch extends StringMatch {
  readonly name: string; // lowercase
}

export interface QueryMatch extends StringMatch {
  readonly name: string; // case-sensitive
}

export interface PathMatch {
  readonly type: 'Exact' | 'PathPrefix' | 'RegularExpression';
  readonly value: string;
  readonly re: RegExp | undefined;
}

export interface GrpcMethodMatch {
  readonly type: 'Exact' | 'RegularExpression';
  readonly service: string | undefined;
  readonly method: string | undefined;
  readonly serviceRe: RegExp | undefined;
  readonly methodRe: RegExp | undefined;
}

export interface Match {
  /** HTTPRoute: the path (a match without one is PathPrefix "/"). */
  readonly path: PathMatch | undefined;
  readonly method: string | undefined;
  readonly headers: readonly HeaderMatch[];
  readonly query: readonly QueryMatch[];
  /** GRPCRoute: the service and method. */
  readonly grpc: GrpcMethodMatch | undefined;
}

export interface HeaderModifier {
  readonly set: readonly { readonly name: string; readonly value: string }[];
  readonly add: readonly { readonly name: string; readonly value: string }[];
  readonly remove: readonly string[];
}

export type PathModifier = { readonly type: 'ReplaceFullPath'; readonly value: string } | { readonly type: 'ReplacePrefixMatch'; readonly value: string };

export interface BackendTarget {
  readonly group: string;
  readonly kind: string;
  readonly namespace: string;
  readonly name: string;
  readonly port: number | undefined;
}

export interface Mirror {
  readonly backend: BackendTarget;
  /** Share of requests mirrored, 0..1. */
  readonly ratio: number;
}

export interface Redirect {
  readonly scheme: 'http' | 'https' | undefined;
  readonly hostname: string | undefined;
  readonly path: PathModifier | undefined;
  readonly port: number | undefined;
  readonly statusCode: 301 | 302 | 303 | 307 | 308;
}

export interface Backend extends BackendTarget {
  readonly weight: number;
  readonly requestHeaders: readonly HeaderModifier[];
  readonly responseHeaders: readonly HeaderModifier[];
}

export interface Rule {
  readonly index: number;
  readonly matches: readonly Match[];
  readonly requestHeaders: readonly HeaderModifier[];
  readonly responseHeaders: readonly HeaderModifier[];
  readonly redirect: Redirect | undefined;
  readonly rewrite: { readonly hostname: string | undefined; readonly path: PathModifier | undefined } | undefined;
  readonly mirrors: readonly Mirror[];
  readonly backends: readonly Backend[];
  /** timeouts.request (ms; null: no deadline) and timeouts.backendRequest (ms; null: none). undefined: the policy's. */
  readonly requestTimeoutMs: number | null | undefined;
  readonly backendTimeoutMs: number | null | undefined;
}

export interface MeshRoute extends RouteRef {
  /** ms since the epoch; undefined when the object has none (a registry file's routes may not). */
  readonly createdAt: number | undefined;
  readonly generation: number | undefined;
  readonly parents: readonly RouteParent[];
  readonly rules: readonly Rule[];
}

/** A route that failed validation: its identity (when readable) and the problems, each naming a field. */
export class RouteInvalid extends Error {
  readonly ref: Partial<RouteRef>;
  readonly problems: readonly string[];
  constructor(ref: Partial<RouteRef>, problems: readonly string[]) {
    super(problems.join('; '));
    this.ref = ref;
    this.problems = problems;
  }
}

/** Checks one route object and normalizes it; throws RouteInvalid with each problem's field. */
export function validateRoute(raw: unknown): MeshRoute {
  const ref = refOf(raw);
  const parsed = routeSchema.safeParse(raw);
  if (!parsed.success) throw new RouteInvalid(ref, parsed.error.issues.map((i) => `${formatPath(i.path)}: ${i.message}`));
  const r = parsed.data;
  const ns = r.metadata.namespace;
  const problems: string[] = [];
  const parents: RouteParent[] = [];
  r.spec.parentRefs.forEach((p) => {
    // A parentRef to a Gateway (or anything but a core Service) is not the mesh's: ignored.
    if ((p.group ?? GATEWAY_GROUP) !== '' || (p.kind ?? 'Gateway') !== 'Service') return;
    parents.push({ namespace: p.namespace ?? ns, name: p.name, port: p.port });
  });
  const backend = (b: { group: string; kind: string; name: string; namespace?: string | undefined; port?: number | undefined }, at: string): BackendTarget => {
    if (b.group === '' && b.kind === 'Service' && b.port === undefined) problems.push(`${at}.port: a Service backend needs a port`);
    return { group: b.group, kind: b.kind, name: b.name, namespace: b.namespace ?? ns, port: b.port };
  };
  const rules: Rule[] = r.spec.rules.map((rule, i) => {
    const at = `spec.rules[${i}]`;
    const matches: Match[] = rule.matches.map((m, j) =>
      r.kind === 'GRPCRoute' ? grpcMatch(m as v.Infer<typeof grpcMatchSchema>, `${at}.matches[${j}]`, problems) : httpMatch(m as v.Infer<typeof httpMatchSchema>, `${at}.matches[${j}]`, problems),
    );
    const requestHeaders: HeaderModifier[] = [];
    const responseHeaders: HeaderModifier[] = [];
    const mirrors: Mirror[] = [];
    let redirect: Redirect | undefined;
    let rewrite: Rule['rewrite'];
    const seen = new Set<string>();
    rule.filters.forEach((f, j) => {
      const fat = `${at}.filters[${j}]`;
      if (f.type !== 'RequestMirror' && seen.has(f.type)) problems.push(`${fat}.type: ${f.type} may appear once per rule`);
      seen.add(f.type);
      switch (f.type) {
        case 'RequestHeaderModifier':
          requestHeaders.push(modifier(f.requestHeaderModifier));
          break;
        case 'ResponseHeaderModifier':
          responseHeaders.push(modifier(f.responseHeaderModifier));
          break;
        case 'RequestRedirect': {
          const rr = f.requestRedirect;
          redirect = { scheme: rr.scheme, hostname: rr.hostname, path: pathModifier(rr.path), port: rr.port, statusCode: rr.statusCode };
          break;
        }
        case 'URLRewrite':
          rewrite = { hostname: f.urlRewrite.hostname, path: pathModifier(f.urlRewrite.path) };
          break;
        case 'RequestMirror': {
          const m = f.requestMirror;
          if (m.percent !== undefined && m.fraction !== undefined) problems.push(`${fat}.requestMirror: percent and fraction are exclusive`);
          if (m.fraction && m.fraction.numerator > m.fraction.denominator) problems.push(`${fat}.requestMirror.fraction: numerator must not exceed denominator`);
          const ratio = m.fraction ? m.fraction.numerator / m.fraction.denominator : m.percent !== undefined ? m.percent / 100 : 1;
          mirrors.push({ backend: backend(m.backendRef, `${fat}.requestMirror.backendRef`), ratio });
          break;
        }
      }
    });
    if (redirect && rewrite) problems.push(`${at}.filters: RequestRedirect and URLRewrite cannot be used together`);
    if (redirect && rule.backendRefs.length) problems.push(`${at}.backendRefs: a rule with RequestRedirect has no backendRefs`);
    const prefixOnly = (mod: PathModifier | undefined, where: string) => {
      if (mod?.type !== 'ReplacePrefixMatch') return;
      const ok = matches.length > 0 && matches.every((m) => m.path?.type === 'PathPrefix');
      if (!ok) problems.push(`${where}.path.replacePrefixMatch: needs every match of the rule to be a PathPrefix path match`);
    };
    prefixOnly(redirect?.path, `${at}.filters (RequestRedirect)`);
    prefixOnly(rewrite?.path, `${at}.filters (URLRewrite)`);
    const backends: Backend[] = rule.backendRefs.map((b, j) => ({
      ...backend(b, `${at}.backendRefs[${j}]`),
      weight: b.weight,
      requestHeaders: b.filters.flatMap((f) => (f.type === 'RequestHeaderModifier' ? [modifier(f.requestHeaderModifier)] : [])),
      responseHeaders: b.filters.flatMap((f) => (f.type === 'ResponseHeaderModifier' ? [modifier(f.responseHeaderModifier)] : [])),
    }));
    const timeouts = 'timeouts' in rule ? rule.timeouts : undefined;
    const requestTimeoutMs = timeouts?.request === undefined ? undefined : parseDuration(timeouts.request) || null;
    const backendTimeoutMs = timeouts?.backendRequest === undefined ? undefined : parseDuration(timeouts.backendRequest) || null;
    if (typeof requestTimeoutMs === 'number' && typeof backendTimeoutMs === 'number' && backendTimeoutMs > requestTimeoutMs) {
      problems.push(`${at}.timeouts.backendRequest: must not be longer than timeouts.request`);
    }
    return { index: i, matches, requestHeaders, responseHeaders, redirect, rewrite, mirrors, backends, requestTimeoutMs, backendTimeoutMs };
  });
  if (problems.length) throw new RouteInvalid(ref, problems);
  const createdAt = r.metadata.creationTimestamp ? Date.parse(r.metadata.creationTimestamp) : undefined;
  return { kind: r.kind, namespace: ns, name: r.metadata.name, createdAt, generation: r.metadata.generation, parents, rules };
}

function httpMatch(m: v.Infer<typeof httpMatchSchema>, at: string, problems: string[]): Match {
  let path: PathMatch | undefined;
  if (m.path) {
    const { type, value } = m.path;
    if (type !== 'RegularExpression' && !value.startsWith('/')) problems.push(`${at}.path.value: must start with /`);
    if (type === 'RegularExpression') path = { type, value, re: compile(value, `${at}.path.value`, problems) };
    // A prefix's trailing slash does not matter: /foo/ matches /foo and /foo/bar.
    else path = { type, value: type === 'PathPrefix' && value.length > 1 ? value.replace(/\/+$/, '') || '/' : value, re: undefined };
  }
  return {
    path: path ?? { type: 'PathPrefix', value: '/', re: undefined },
    method: m.method,
    headers: firstByName(m.headers.map((h, k) => ({ name: h.name.toLowerCase(), type: h.type, value: h.value, re: h.type === 'RegularExpression' ? compile(h.value, `${at}.headers[${k}].value`, problems) : undefined }))),
    query: firstByName(m.queryParams.map((q, k) => ({ name: q.name, type: q.type, value: q.value, re: q.type === 'RegularExpression' ? compile(q.value, `${at}.queryParams[${k}].value`, problems) : undefined }))),
    grpc: undefined,
  };
}

function grpcMatch(m: v.Infer<typeof grpcMatchSchema>, at: string, problems: string[]): Match {
  const mm = m.method;
  if (mm && mm.service === undefined && mm.method === undefined) problems.push(`${at}.method: needs a service or a method`);
  const re = (v: string | undefined, field: string) => (mm?.type === 'RegularExpression' && v !== undefined ? compile(v, `${at}.method.${field}`, problems) : undefined);
  return {
    path: undefined,
    method: undefined,
    headers: firstByName(m.headers.map((h, k) => ({ name: h.name.toLowerCase(), type: h.type, value: h.value, re: h.type === 'RegularExpression' ? compile(h.value, `${at}.headers[${k}].value`, problems) : undefined }))),
    query: [],
    grpc: mm ? { type: mm.type, service: mm.service, method: mm.method, serviceRe: re(mm.service, 'service'), methodRe: re(mm.method, 'method') } : undefined,
  };
}

/** The spec: when a match lists a header (or query parameter) twice, the first entry counts. */
function firstByName<T extends { name: string }>(items: T[]): T[] {
  const seen = new Set<string>();
  return items.filter((i) => !seen.has(i.name) && seen.add(i.name));
}

/** Regular expressions match the whole value (as RE2's FullMatch does). */
function anchored(value: string): RegExp {
  return new RegExp(`^(?:${value})$`);
}

function compile(value: string, at: string, problems: string[]): RegExp | undefined {
  if (value.length > MAX_REGEX_LENGTH) {
    problems.push(`${at}: a regular expression of at most ${MAX_REGEX_LENGTH} characters`);
    return undefined;
  }
  try {
    return anchored(value);
  } catch (err) {
    problems.push(`${at}: not a valid regular expression: ${(err as Error).message}`);
    return undefined;
  }
}

function modifier(m: v.Infer<typeof headerModifierSchema>): HeaderModifier {
  return {
    set: m.set.map((h) => ({ name: h.name.toLowerCase(), value: h.value })),
    add: m.add.map((h) => ({ name: h.name.toLowerCase(), value: h.value })),
    remove: m.remove.map((h) => h.toLowerCase()),
  };
}

function pathModifier(p: v.Infer<typeof pathModifierSchema> | undefined): PathModifier | undefined {
  if (!p) return undefined;
  return p.type === 'ReplaceFullPath' ? { type: p.type, value: p.replaceFullPath } : { type: p.type, value: p.replacePrefixMatch };
}

function refOf(raw: unknown): Partial<RouteRef> {
  const o = raw && typeof raw === 'object' ? (raw as { kind?: unknown; metadata?: { name?: unknown; namespace?: unknown } }) : {};
  const kind = (ROUTE_KINDS as readonly unknown[]).includes(o.kind) ? (o.kind as RouteKind) : undefined;
  const name = typeof o.metadata?.name === 'string' ? o.metadata.name : undefined;
  const namespace = typeof o.metadata?.namespace === 'string' ? o.metadata.namespace : 'default';
  return { ...(kind ? { kind } : {}), ...(name ? { name } : {}), namespace };
}

function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) out += typeof part === 'number' ? `[${part}]` : out ? `.${String(part)}` : String(part);
  return out || '(route)';
}

export const routeKey = (r: RouteRef): string => `${r.kind}/${r.namespace}/${r.name}`;
