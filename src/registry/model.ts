// The registry: the sidecar's view of services, their endpoints and per-service policy.
// One model for every source (the YAML file in local mode and tests, the control plane's
// discovery stream in Kubernetes). A view is immutable; a source replaces it whole.
import * as v from '../schema/schema.ts';
import { isIP } from 'node:net';
import { ConfigError } from '../errors/errors.ts';
import { routeKey, validateRoute, type MeshRoute, type RouteInvalid } from '../route/model.ts';

const dnsLabel = v.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'must be a DNS label (lowercase letters, digits, -)').max(63);
// Pod names are DNS subdomains (generated ones are labels, but StatefulSets and hand-written pods may have dots).
const dnsSubdomain = v.string().regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, 'must be a DNS name (lowercase letters, digits, -, .)').max(253);
const port = v.number().int().min(1).max(65535);
const ip = v.string().refine((s) => isIP(s) !== 0, 'must be an IP address');
const stringMap = v.record(v.string());

const servicePortSchema = v
  .object({
    name: v.string().optional(),
    port,
    targetPort: port.optional(),
    protocol: v.oneOf(['TCP']).optional(),
  })
  .strict();

// An address of a service as an EndpointSlice lists it (extension: what discovery carries; a
// registry file may list them too). When a service has `endpoints`, they are its endpoints and
// its selector is not used for them.
const serviceEndpointSchema = v
  .object({
    ip,
    ready: v.boolean().default(true),
    pod: dnsSubdomain.optional(), // the pod's name (EndpointSlice targetRef), same namespace
  })
  .strict();

const serviceSchema = v
  .object({
    name: dnsLabel,
    namespace: dnsLabel.default('default'),
    clusterIP: ip.optional(),
    ports: v.array(servicePortSchema).min(1, 'a service needs at least one port'),
    selector: stringMap.default({}),
    annotations: stringMap.default({}),
    endpoints: v.array(serviceEndpointSchema).optional(),
  })
  .strict();

const podSchema = v
  .object({
    name: dnsSubdomain,
    namespace: dnsLabel.default('default'),
    ip,
    labels: stringMap.default({}),
    serviceAccount: v.string().min(1).default('default'),
    meshed: v.boolean().default(false),
    ready: v.boolean().default(true),
  })
  .strict();

export const registryFileSchema = v
  .object({
    services: v.array(serviceSchema).default([]),
    pods: v.array(podSchema).default([]),
    // HTTPRoute and GRPCRoute objects (src/route/model.ts checks each, naming its fields)
    routes: v.array(v.unknown()).default([]),
  })
  .strict();

export type ServiceSpec = v.Infer<typeof serviceSchema>;
export type ServiceEndpointSpec = v.Infer<typeof serviceEndpointSchema>;
export type PodSpec = v.Infer<typeof podSchema>;
export interface RegistryData {
  readonly services: readonly ServiceSpec[];
  readonly pods: readonly PodSpec[];
  /** The mesh routes (GAMMA), validated; none: every request goes to the Service it names. */
  readonly routes?: readonly MeshRoute[];
}

export interface ServicePort {
  readonly name: string | undefined;
  readonly port: number;
  readonly targetPort: number;
}

export interface Service {
  readonly name: string;
  readonly namespace: string;
  readonly clusterIP: string | undefined;
  readonly ports: readonly ServicePort[];
  readonly selector: Readonly<Record<string, string>>;
  readonly annotations: Readonly<Record<string, string>>;
  /** The EndpointSlices' addresses (discovery); undefined: the selector picks the pods. */
  readonly endpoints?: readonly ServiceEndpoint[] | undefined;
}

export interface ServiceEndpoint {
  readonly ip: string;
  readonly ready: boolean;
  readonly pod: string | undefined;
}

export interface Pod {
  readonly name: string;
  readonly namespace: string;
  readonly ip: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly serviceAccount: string;
  readonly meshed: boolean;
  readonly ready: boolean;
}

/** One address a request can be sent to: a pod's IP and the service's target port. */
export interface Endpoint {
  readonly key: string; // "ip:port", stable across views
  readonly ip: string;
  readonly port: number;
  readonly pod: Pod;
}

/** Validates raw registry data (parsed YAML or a discovery message); throws ConfigError naming each bad field. */
export function validateRegistry(raw: unknown, source: string): RegistryData {
  const result = registryFileSchema.safeParse(raw ?? {});
  if (!result.success) {
    throw new ConfigError(source, result.error.issues.map((i) => `${formatPath(i.path, raw)}: ${i.message}`));
  }
  const data = result.data;
  const problems: string[] = [];
  const routes: MeshRoute[] = [];
  const routeKeys = new Set<string>();
  data.routes.forEach((raw, i) => {
    try {
      const route = validateRoute(raw);
      const key = routeKey(route);
      if (routeKeys.has(key)) problems.push(`routes[${i}] (${route.name}): duplicate ${route.kind} ${route.namespace}/${route.name}`);
      routeKeys.add(key);
      routes.push(route);
    } catch (err) {
      const e = err as RouteInvalid;
      for (const p of e.problems) problems.push(`routes[${i}]${e.ref.name ? ` (${e.ref.name})` : ''}.${p}`);
    }
  });
  const seen = new Set<string>();
  data.services.forEach((s, i) => {
    const id = `${s.namespace}/${s.name}`;
    if (seen.has(id)) problems.push(`services[${i}] (${id}): duplicate service`);
    seen.add(id);
    const ports = new Set<number>();
    s.ports.forEach((p, j) => {
      if (ports.has(p.port)) problems.push(`services[${i}] (${id}).ports[${j}]: duplicate port ${p.port}`);
      ports.add(p.port);
    });
    const ips = new Set<string>();
    s.endpoints?.forEach((e, j) => {
      if (ips.has(e.ip)) problems.push(`services[${i}] (${id}).endpoints[${j}]: duplicate address ${e.ip}`);
      ips.add(e.ip);
    });
  });
  const podIds = new Set<string>();
  data.pods.forEach((p, i) => {
    const id = `${p.namespace}/${p.name}`;
    if (podIds.has(id)) problems.push(`pods[${i}] (${id}): duplicate pod`);
    podIds.add(id);
  });
  if (problems.length) throw new ConfigError(source, problems);
  return { services: data.services, pods: data.pods, routes };
}

function formatPath(path: readonly PropertyKey[], raw: unknown): string {
  let out = '';
  let node: unknown = raw;
  for (const part of path) {
    out += typeof part === 'number' ? `[${part}]` : out ? `.${String(part)}` : String(part);
    node = node && typeof node === 'object' ? (node as Record<PropertyKey, unknown>)[part] : undefined;
    if (typeof part === 'number' && node && typeof node === 'object' && typeof (node as { name?: unknown }).name === 'string') {
      out += ` (${(node as { name: string }).name})`;
    }
  }
  return out || '(root)';
}
