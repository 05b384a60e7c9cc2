// The outbound exchange's resilience state: per endpoint its latency (the balancer) and health
// (breaker, ejection), per destination its retry budget. Endpoints that leave the registry are
// forgotten (and their metric series with them); GET /config shows the state per endpoint.
import { P2CBalancer } from '../balance/p2c.ts';
import { HealthTable } from '../breaker/endpoint-health.ts';
import { RetryBudget } from '../retry/budget.ts';
import type { MeshMetrics } from '../metrics/mesh-metrics.ts';
import type { RegistryView } from '../registry/view.ts';

export interface EndpointState {
  ewmaMs?: number;
  pending?: number;
  breakerOpen: boolean;
  ejected: boolean;
  services: Record<string, unknown>;
}

export class Resilience {
  readonly balancer = new P2CBalancer();
  readonly health: HealthTable;
  readonly #budgets = new Map<string, RetryBudget>();
  readonly #metrics: MeshMetrics;

  constructor(metrics: MeshMetrics) {
    this.#metrics = metrics;
    this.health = new HealthTable({ onState: (h) => metrics.circuitBreaker(h.service, h.key, h.state) });
  }

  /** A destination's retry budget, made on first use; its ratio follows the policy in force. */
  readonly budgetFor = (destination: string, ratio: number): RetryBudget => {
    let b = this.#budgets.get(destination);
    if (!b) this.#budgets.set(destination, (b = new RetryBudget({ ratio })));
    else b.ratio = ratio;
    return b;
  };

  /** Keeps the state of the endpoints the registry still has. */
  retain(view: RegistryView): void {
    const live = new Map(view.services.map((s) => [`${s.name}.${s.namespace}`, new Set(s.ports.flatMap((p) => view.endpoints({ service: s, port: p }).map((e) => e.key)))]));
    const keys = new Set([...live.values()].flatMap((k) => [...k]));
    this.balancer.retain((key) => keys.has(key));
    // a destination that is no Service is a pod called directly: kept while the pod serves
    this.health.retain((service, key) => live.get(service)?.has(key) ?? keys.has(key), (h) => this.#metrics.forgetEndpoint(h.service, h.key));
  }

  /** GET /config: per endpoint its latency estimate, and per Service that reaches it its health. */
  endpointStates(): Record<string, EndpointState> {
    const latency = this.balancer.snapshot();
    const out: Record<string, EndpointState> = {};
    for (const { service, endpoint, ...state } of this.health.snapshot()) {
      const e = (out[endpoint] ??= { ...latency[endpoint], breakerOpen: false, ejected: false, services: {} });
      e.services[service] = state;
      e.breakerOpen ||= state.breaker === 'open';
      e.ejected ||= state.accrual === 'ejected';
    }
    return out;
  }

  close(): void {
    this.health.close();
  }
}
