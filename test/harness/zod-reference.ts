// The zod schemas that src/schema/ replaced (first as they were at 633ed14), kept only for
// src/schema/schema.test.ts: each hand-written schema must give the same value and the same
// problems (path and message) as its zod original. A deliberate change to one of the sidecar's
// schemas is made here too, in zod, or that test fails. Not imported by the sidecar.
import { z } from 'zod';
import { isIP } from 'node:net';
import { parseDuration } from '../../src/config/parse.ts';
import { ROUTE_API_VERSIONS, GATEWAY_GROUP } from '../../src/route/model.ts';

// src/registry/model.ts
export const registry = (() => {
  const dnsLabel = z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'must be a DNS label (lowercase letters, digits, -)').max(63);
  // Pod names are DNS subdomains (generated ones are labels, but StatefulSets and hand-written pods may have dots).
  const dnsSubdomain = z.string().regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, 'must be a DNS name (lowercase letters, digits, -, .)').max(253);
  const port = z.number().int().min(1).max(65535);
  const ip = z.string().refine((s) => isIP(s) !== 0, 'must be an IP address');
  const stringMap = z.record(z.string(), z.string());

  const servicePortSchema = z
    .object({
      name: z.string().optional(),
      port,
      targetPort: port.optional(),
      protocol: z.enum(['TCP']).optional(),
    })
    .strict();

  // An address of a service as an EndpointSlice lists it (extension: what discovery carries; a
  // registry file may list them too). When a service has `endpoints`, they are its endpoints and
  // its selector is not used for them.
  const serviceEndpointSchema = z
    .object({
      ip,
      ready: z.boolean().default(true),
      pod: dnsSubdomain.optional(), // the pod's name (EndpointSlice targetRef), same namespace
    })
    .strict();

  const serviceSchema = z
    .object({
      name: dnsLabel,
      namespace: dnsLabel.default('default'),
      clusterIP: ip.optional(),
      ports: z.array(servicePortSchema).min(1, 'a service needs at least one port'),
      selector: stringMap.default({}),
      annotations: stringMap.default({}),
      endpoints: z.array(serviceEndpointSchema).optional(),
    })
    .strict();

  const podSchema = z
    .object({
      name: dnsSubdomain,
      namespace: dnsLabel.default('default'),
      ip,
      labels: stringMap.default({}),
      serviceAccount: z.string().min(1).default('default'),
      meshed: z.boolean().default(false),
      ready: z.boolean().default(true),
    })
    .strict();

  const registryFileSchema = z
    .object({
      services: z.array(serviceSchema).default([]),
      pods: z.array(podSchema).default([]),
      // HTTPRoute and GRPCRoute objects (src/route/model.ts checks each, naming its fields)
      routes: z.array(z.unknown()).default([]),
    })
    .strict();
  return { registryFileSchema };
})();

// src/route/model.ts
export const route = (() => {
  const dnsLabel = z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'must be a DNS label (lowercase letters, digits, -)').max(63);
  const objectName = z.string().regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, 'must be a DNS name (lowercase letters, digits, -, .)').max(253);
  const port = z.number().int().min(1).max(65535);
  // RFC 7230 token: what an HTTP header name may be.
  const headerName = z.string().regex(/^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$/, 'must be an HTTP header name').max(256);
  const headerValue = z.string().max(4096).refine((v) => !/[\r\n\0]/.test(v), 'must not contain CR, LF or NUL');
  // Gateway API durations: up to four number+unit pairs, units h, m, s, ms ("0s" disables).
  const duration = z.string().regex(/^([0-9]{1,5}(h|m|s|ms)){1,4}$/, 'must be a Gateway API duration such as 500ms, 10s, 1m30s');

  const parentRefSchema = z
    .object({
      group: z.string().optional(),
      kind: z.string().optional(),
      namespace: dnsLabel.optional(),
      name: z.string().min(1).max(253),
      port: port.optional(),
      sectionName: z.string().optional(),
    })
    .strict();

  const headerMatchSchema = z
    .object({ type: z.enum(['Exact', 'RegularExpression']).default('Exact'), name: headerName, value: z.string().max(4096) })
    .strict();

  const queryMatchSchema = z
    .object({ type: z.enum(['Exact', 'RegularExpression']).default('Exact'), name: z.string().min(1).max(256), value: z.string().max(4096) })
    .strict();

  const pathMatchSchema = z
    .object({ type: z.enum(['Exact', 'PathPrefix', 'RegularExpression']).default('PathPrefix'), value: z.string().max(4096).default('/') })
    .strict();

  const httpMatchSchema = z
    .object({
      path: pathMatchSchema.optional(),
      headers: z.array(headerMatchSchema).max(16).default([]),
      queryParams: z.array(queryMatchSchema).max(16).default([]),
      method: z.enum(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH']).optional(),
    })
    .strict();

  const grpcMethodMatchSchema = z
    .object({ type: z.enum(['Exact', 'RegularExpression']).default('Exact'), service: z.string().max(1024).optional(), method: z.string().max(1024).optional() })
    .strict();

  const grpcMatchSchema = z
    .object({ method: grpcMethodMatchSchema.optional(), headers: z.array(headerMatchSchema).max(16).default([]) })
    .strict();

  const headerModifierSchema = z
    .object({
      set: z.array(z.object({ name: headerName, value: headerValue }).strict()).max(16).default([]),
      add: z.array(z.object({ name: headerName, value: headerValue }).strict()).max(16).default([]),
      remove: z.array(headerName).max(16).default([]),
    })
    .strict();

  const backendObjectRef = {
    group: z.string().default(''),
    kind: z.string().default('Service'),
    name: z.string().min(1).max(253),
    namespace: dnsLabel.optional(),
    port: port.optional(),
  };

  const pathModifierSchema = z.discriminatedUnion('type', [
    z.object({ type: z.literal('ReplaceFullPath'), replaceFullPath: z.string().startsWith('/', 'must start with /').max(1024) }).strict(),
    // "" replaces the prefix with nothing: /foo/bar with prefix /foo becomes /bar
    z.object({ type: z.literal('ReplacePrefixMatch'), replacePrefixMatch: z.string().max(1024).refine((v) => v === '' || v.startsWith('/'), 'must start with / (or be empty)') }).strict(),
  ]);

  const hostname = z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/, 'must be a host name').max(253);

  const mirrorFilterSchema = z
    .object({
      type: z.literal('RequestMirror'),
      requestMirror: z
        .object({
          backendRef: z.object(backendObjectRef).strict(),
          percent: z.number().int().min(0).max(100).optional(),
          fraction: z.object({ numerator: z.number().int().min(0), denominator: z.number().int().min(1).default(100) }).strict().optional(),
        })
        .strict(),
    })
    .strict();

  const filterSchema = z.discriminatedUnion('type', [
    z.object({ type: z.literal('RequestHeaderModifier'), requestHeaderModifier: headerModifierSchema }).strict(),
    z.object({ type: z.literal('ResponseHeaderModifier'), responseHeaderModifier: headerModifierSchema }).strict(),
    z
      .object({
        type: z.literal('RequestRedirect'),
        requestRedirect: z
          .object({
            scheme: z.enum(['http', 'https']).optional(),
            hostname: hostname.optional(),
            path: pathModifierSchema.optional(),
            port: port.optional(),
            statusCode: z.union([z.literal(301), z.literal(302), z.literal(303), z.literal(307), z.literal(308)]).default(302),
          })
          .strict(),
      })
      .strict(),
    z.object({ type: z.literal('URLRewrite'), urlRewrite: z.object({ hostname: hostname.optional(), path: pathModifierSchema.optional() }).strict() }).strict(),
    mirrorFilterSchema,
  ]);

  const requestHeaderFilter = z.object({ type: z.literal('RequestHeaderModifier'), requestHeaderModifier: headerModifierSchema }).strict();
  const responseHeaderFilter = z.object({ type: z.literal('ResponseHeaderModifier'), responseHeaderModifier: headerModifierSchema }).strict();
  const backendFilterSchema = z.discriminatedUnion('type', [requestHeaderFilter, responseHeaderFilter]);

  const backendRefSchema = z
    .object({ ...backendObjectRef, weight: z.number().int().min(0).max(1_000_000).default(1), filters: z.array(backendFilterSchema).max(16).default([]) })
    .strict();

  const timeoutsSchema = z.object({ request: duration.optional(), backendRequest: duration.optional() }).strict();

  const httpRuleSchema = z
    .object({
      name: z.string().max(253).optional(),
      matches: z.array(httpMatchSchema).max(64).default([]),
      filters: z.array(filterSchema).max(16).default([]),
      backendRefs: z.array(backendRefSchema).max(16).default([]),
      timeouts: timeoutsSchema.optional(),
    })
    .strict();

  const grpcRuleSchema = z
    .object({
      name: z.string().max(253).optional(),
      matches: z.array(grpcMatchSchema).max(64).default([]),
      // GRPCRoute has no redirect or rewrite
      filters: z.array(z.discriminatedUnion('type', [requestHeaderFilter, responseHeaderFilter, mirrorFilterSchema])).max(16).default([]),
      backendRefs: z.array(backendRefSchema).max(16).default([]),
    })
    .strict();

  const metadataSchema = z.object({
    name: objectName,
    namespace: dnsLabel.default('default'),
    creationTimestamp: z.string().datetime({ offset: true }).optional(),
    generation: z.number().int().optional(),
  });

  const commonSpec = { parentRefs: z.array(parentRefSchema).min(1, 'a route needs a parentRef (the Service it applies to)').max(32), hostnames: z.array(z.string()).max(16).optional() };

  const httpRouteSchema = z.object({
    apiVersion: z.enum(ROUTE_API_VERSIONS).default(`${GATEWAY_GROUP}/v1`),
    kind: z.literal('HTTPRoute'),
    metadata: metadataSchema,
    spec: z.object({ ...commonSpec, rules: z.array(httpRuleSchema).max(64).default([{ matches: [], filters: [], backendRefs: [] }]) }).strict(),
    status: z.unknown().optional(),
  });

  const grpcRouteSchema = z.object({
    apiVersion: z.enum(ROUTE_API_VERSIONS).default(`${GATEWAY_GROUP}/v1`),
    kind: z.literal('GRPCRoute'),
    metadata: metadataSchema,
    spec: z.object({ ...commonSpec, rules: z.array(grpcRuleSchema).max(64).default([{ matches: [], filters: [], backendRefs: [] }]) }).strict(),
    status: z.unknown().optional(),
  });

  /** One route object as the registry file and the discovery stream carry it. */
  const routeSchema = z.discriminatedUnion('kind', [httpRouteSchema, grpcRouteSchema]);
  return { routeSchema };
})();

// src/discovery/protocol.ts
export const discovery = (() => {
  const key = z.string().regex(/^[a-z0-9-]{1,63}\/[a-z0-9-]{1,63}$/, 'must be "namespace/name"');
  const keys = z.array(key).max(10_000);

  const clientMessageSchema = z.discriminatedUnion('type', [
    z.object({
      type: z.literal('hello'),
      pod: z.object({ name: z.string().max(253), namespace: z.string().max(63), ip: z.string().max(45) }).strict(),
      subscribe: keys,
    }).strict(),
    z.object({
      type: z.literal('ack'),
      version: z.number().int().min(0),
      subscribe: keys.optional(),
      unsubscribe: keys.optional(),
    }).strict(),
  ]);

  const indexEntry = z.tuple([key, z.string().nullable(), z.array(z.number().int()), z.array(z.string())]);
  // Details are checked one by one with the registry's own schema (./client.ts): a bad one is
  // refused alone, the rest of the message applies.
  const details = z.record(z.string(), z.unknown().nullable());

  const serverMessageSchema = z.discriminatedUnion('type', [
    z.object({ type: z.literal('snapshot'), version: z.number().int(), stream: z.string(), index: z.array(indexEntry), services: details }),
    z.object({
      type: z.literal('update'),
      version: z.number().int(),
      index: z.object({ set: z.array(indexEntry), delete: z.array(key) }).optional(),
      services: details.optional(),
    }),
  ]);

  // parseServiceDetail's first check
  const serviceDetailShape = z.object({ service: z.unknown(), pods: z.array(z.unknown()), routes: z.array(z.unknown()).max(1000).optional() }).strict();
  return { clientMessageSchema, serverMessageSchema, serviceDetailShape };
})();

// src/config/settings.ts
export const settings = (() => {
  const port = z.coerce.number().int().min(0).max(65535);
  const duration = z.string().transform((s, ctx) => {
    try {
      return parseDuration(s);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message });
      return z.NEVER;
    }
  });

  const bytes = z.string().transform((s, ctx) => {
    const m = /^(\d+)(Ki|Mi|Gi|k|M|G)?$/.exec(s.trim());
    if (!m) {
      ctx.addIssue({ code: 'custom', message: `"${s}" is not a size (bytes, or e.g. 64Ki, 10Mi)` });
      return z.NEVER;
    }
    const unit = { Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, k: 1000, M: 1000 ** 2, G: 1000 ** 3 }[m[2] ?? ''] ?? 1;
    return Number(m[1]) * unit;
  });
  const count = z.coerce.number().int().min(1).max(10_000_000);

  const envSchema = z.object({
    POD_NAME: z.string().default('unknown'),
    POD_NAMESPACE: z.string().default('default'),
    POD_IP: z.string().refine((s) => isIP(s) !== 0, 'must be an IP address').optional(),
    SERVICE_ACCOUNT: z.string().default('default'),
    TSMESH_ANNOTATIONS: z.string().default('/etc/tsmesh/podinfo/annotations'),
    TSMESH_LABELS: z.string().default('/etc/tsmesh/podinfo/labels'),
    TSMESH_CONTROL_PLANE: z.url().default('https://tsmesh-injector.tsmesh-system.svc:8443'),
    TSMESH_REGISTRY: z.string().optional(),
    TSMESH_TLS_DIR: z.string().optional(),
    TSMESH_TRUST_DOMAIN: z.string().regex(/^[a-z0-9.-]+$/, 'must be a DNS-like name').default('cluster.local'),
    TSMESH_OUTBOUND_PORT: port.default(15001),
    TSMESH_INBOUND_PORT: port.default(15006),
    TSMESH_ADMIN_PORT: port.default(15020),
    TSMESH_BIND_ADDRESS: z.string().refine((s) => isIP(s) !== 0, 'must be an IP address').default('0.0.0.0'),
    TSMESH_DRAIN_TIMEOUT: duration.default(20_000),
    TSMESH_DETECT_TIMEOUT: duration.default(100),
    TSMESH_WATCH_INTERVAL: duration.default(1000),
    TSMESH_MAX_CONNECTIONS: count.default(4096),
    TSMESH_MAX_REQUESTS: count.default(2048),
    TSMESH_HEADERS_TIMEOUT: duration.default(10_000),
    TSMESH_IDLE_TIMEOUT: duration.default(60_000),
    TSMESH_TCP_IDLE_TIMEOUT: duration.default(3_600_000),
    TSMESH_MAX_REQUEST_BODY: bytes.optional(),
    TSMESH_MAX_UPSTREAM_CONNECTIONS: count.default(1024),
    TSMESH_APP_PROBES: z.string().optional(),
  });
  return { envSchema };
})();

// src/admin/app-probes.ts
export const appProbes = (() => {
  const probeSchema = z
    .object({
      port: z.number().int().min(1).max(65535),
      path: z.string().startsWith('/').default('/'),
      scheme: z.enum(['HTTP', 'HTTPS']).default('HTTP'),
      host: z.string().min(1).optional(),
      headers: z.array(z.object({ name: z.string().min(1), value: z.string() })).optional(),
    })
    .strict();

  const probesSchema = z.record(z.string(), probeSchema);
  return { probesSchema };
})();
