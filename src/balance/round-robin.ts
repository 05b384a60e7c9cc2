// Round-robin across a service port's endpoints (the resilience work replaces it with power
// of two choices over latency). Keyed by service port so each service rotates on its own.
import type { Endpoint } from '../registry/model.ts';

export interface Balancer {
  pick(key: string, endpoints: readonly Endpoint[]): Endpoint | undefined;
}

export function roundRobin(): Balancer {
  const next = new Map<string, number>();
  return {
    pick(key, endpoints) {
      if (endpoints.length === 0) return undefined;
      const i = next.get(key) ?? 0;
      next.set(key, (i + 1) % endpoints.length);
      return endpoints[i % endpoints.length];
    },
  };
}
