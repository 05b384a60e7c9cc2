// The discovery stream's wire format, shared by the control plane (injector/discovery) and the
// sidecar (./client.ts, ./state.ts). One WebSocket per sidecar on the control plane's port 8443
// (GET /v1/discovery, subprotocol tsmesh-discovery.v1), over TLS with the sidecar's mesh
// certificate as its client certificate. Every message is one JSON text frame.
//
// control plane -> sidecar
//   snapshot: on connect (and after a sidecar fell behind): the whole index, and the details of
//             the services the sidecar asked for. It replaces everything the sidecar had.
//   update:   what changed since the last message: index entries set or deleted, service details
//             (null: the service is gone). Versions grow by one per coalesced push.
// sidecar -> control plane
//   hello:    first message: who it is (the certificate says which service account; this says
//             which pod), and the services it wants details of (kept across reconnects).
//   ack:      the last version applied, with any services to subscribe to or drop.
//
// The index is what every sidecar needs to recognise a destination: per service its key
// ("namespace/name"), ClusterIP, ports and the IPs of its endpoints. A service's details are
// registry data (../registry/model.ts): the Service with its EndpointSlices' addresses, and
// the pods behind them (meshed or not, service account).
import * as v from '../schema/schema.ts';
import { registryFileSchema, type PodSpec, type ServiceSpec } from '../registry/model.ts';
import { validateRoute, type MeshRoute, type RouteInvalid } from '../route/model.ts';

export const DISCOVERY_PATH = '/v1/discovery';
export const DISCOVERY_PROTOCOL = 'tsmesh-discovery.v1';

/** [key "namespace/name", ClusterIP or null, service ports, endpoint IPs] */
export type IndexEntry = [key: string, clusterIP: string | null, ports: number[], ips: string[]];

export interface ServiceDetail {
  readonly service: ServiceSpec;
  readonly pods: readonly PodSpec[];
  /**
   * The mesh routes (HTTPRoute, GRPCRoute objects) whose parentRefs name this service; absent
   * when there are none. The sidecar validates each; an invalid one is left out alone.
   */
  readonly routes?: readonly unknown[];
}

/** A service's details as the sidecar keeps them: its routes validated. */
export interface CheckedServiceDetail {
  readonly service: ServiceSpec;
  readonly pods: readonly PodSpec[];
  readonly routes: readonly MeshRoute[];
  /** Problems of routes that were left out, each naming the route and the field. */
  readonly routeProblems: readonly string[];
}

export type ServerMessage =
  | { type: 'snapshot'; version: number; stream: string; index: IndexEntry[]; services: Record<string, ServiceDetail | null> }
  | { type: 'update'; version: number; index?: { set: IndexEntry[]; delete: string[] }; services?: Record<string, ServiceDetail | null> };

export type ClientMessage =
  | { type: 'hello'; pod: { name: string; namespace: string; ip: string }; subscribe: string[] }
  | { type: 'ack'; version: number; subscribe?: string[]; unsubscribe?: string[] };

const key = v.string().regex(/^[a-z0-9-]{1,63}\/[a-z0-9-]{1,63}$/, 'must be "namespace/name"');
const keys = v.array(key).max(10_000);

export const clientMessageSchema = v.tagged('type', [
  v.object({
    type: v.literal('hello'),
    pod: v.object({ name: v.string().max(253), namespace: v.string().max(63), ip: v.string().max(45) }).strict(),
    subscribe: keys,
  }).strict(),
  v.object({
    type: v.literal('ack'),
    version: v.number().int().min(0),
    subscribe: keys.optional(),
    unsubscribe: keys.optional(),
  }).strict(),
]);

const indexEntry = v.tuple([key, v.string().nullable(), v.array(v.number().int()), v.array(v.string())]);
// Details are checked one by one with the registry's own schema (./state.ts): a bad one is
// refused alone, the rest of the message applies.
const details = v.record(v.unknown().nullable());

export const serverMessageSchema = v.tagged('type', [
  v.object({ type: v.literal('snapshot'), version: v.number().int(), stream: v.string(), index: v.array(indexEntry), services: details }),
  v.object({
    type: v.literal('update'),
    version: v.number().int(),
    index: v.object({ set: v.array(indexEntry), delete: v.array(key) }).optional(),
    services: details.optional(),
  }),
]);

export type ParsedServerMessage = v.Infer<typeof serverMessageSchema>;

/** One service's details before its parts are checked (the registry's schema, then each route). */
export const serviceDetailShape = v.object({ service: v.unknown(), pods: v.array(v.unknown()), routes: v.array(v.unknown()).max(1000).optional() }).strict();

/** Checks one service's details with the registry schema; the error names the bad fields. */
export function parseServiceDetail(raw: unknown, serviceKey: string): CheckedServiceDetail {
  const r = serviceDetailShape.safeParse(raw);
  if (!r.success) throw new Error(`${serviceKey}: not { service, pods, routes? }`);
  const data = registryFileSchema.safeParse({ services: [r.data.service], pods: r.data.pods });
  if (!data.success) throw new Error(`${serviceKey}: ${issuesText(data.error.issues)}`);
  const service = data.data.services[0]!;
  if (`${service.namespace}/${service.name}` !== serviceKey) throw new Error(`${serviceKey}: carries service ${service.namespace}/${service.name}`);
  const routes: MeshRoute[] = [];
  const routeProblems: string[] = [];
  for (const [i, route] of (r.data.routes ?? []).entries()) {
    try {
      routes.push(validateRoute(route));
    } catch (err) {
      const e = err as RouteInvalid;
      routeProblems.push(`${serviceKey} routes[${i}]${e.ref?.name ? ` (${e.ref.kind} ${e.ref.namespace}/${e.ref.name})` : ''}: ${(e.problems ?? [e.message]).join('; ')}`);
    }
  }
  return { service, pods: data.data.pods, routes, routeProblems };
}

/** Checks one message from the control plane; the error names the bad fields. */
export function parseServerMessage(raw: unknown): ParsedServerMessage {
  const parsed = serverMessageSchema.safeParse(raw);
  if (!parsed.success) throw new Error(`not a discovery message: ${issuesText(parsed.error.issues)}`);
  return parsed.data;
}

/** "path: message; ..." for the problems a schema found. */
function issuesText(issues: readonly { path: readonly PropertyKey[]; message: string }[]): string {
  return issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
}
