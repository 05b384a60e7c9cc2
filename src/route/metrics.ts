// tsmesh_route_requests_total{parent_service, route, backend_service, response_code}: requests
// a mesh route decided, by the Service the app called, the route ("Kind/namespace/name"; ""
// for a 404 no route matched), the backend Service actually used ("" when the route answered
// itself: a redirect, 404, 500) and the status. Cardinality follows the routes configured
// (parents x backends x codes), not the traffic. The request metrics themselves name the
// backend as destination_service (where the request went, like destination_workload).
import { Counter, type Registry } from 'prom-client';

export const ROUTE_METRIC = 'tsmesh_route_requests_total';
export const ROUTE_LABELS = ['parent_service', 'route', 'backend_service', 'response_code'] as const;

export class RouteMetrics {
  readonly #counter: Counter<(typeof ROUTE_LABELS)[number]>;

  private constructor(counter: Counter<(typeof ROUTE_LABELS)[number]>) {
    this.#counter = counter;
  }

  /** The counter on `registry` (one per registry, however many pipelines record to it). */
  static on(registry: Registry): RouteMetrics {
    const existing = registry.getSingleMetric(ROUTE_METRIC) as Counter<(typeof ROUTE_LABELS)[number]> | undefined;
    return new RouteMetrics(
      existing ??
        new Counter({
          name: ROUTE_METRIC,
          help: 'Requests a mesh route (HTTPRoute, GRPCRoute) decided, by the Service called, the route, the backend Service used and the response code',
          labelNames: ROUTE_LABELS,
          registers: [registry],
        }),
    );
  }

  record(parent: string, route: { kind: string; namespace: string; name: string } | undefined, backend: string | undefined, status: number): void {
    this.#counter.inc({ parent_service: parent, route: route ? `${route.kind}/${route.namespace}/${route.name}` : '', backend_service: backend ?? '', response_code: String(status) });
  }
}
