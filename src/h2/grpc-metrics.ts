// gRPC calls by status: tsmesh_grpc_calls_total, one count per finished call (HTTP/2 stream with
// a gRPC content type) in either direction, labelled with the peers (as tsmesh_requests_total)
// and `grpc_status`: the status name (OK, UNAVAILABLE, ...), "unknown" for a number outside the
// canonical 17, "none" when the call ended without one (reset, cut). The HTTP view of the same
// calls stays in tsmesh_requests_total (response_code 200 for most gRPC answers).
import { Counter, type Registry } from 'prom-client';
import type { Peers } from '../metrics/mesh-metrics.ts';
import { UNKNOWN } from '../metrics/workload.ts';
import { grpcStatusLabel } from './grpc.ts';

export const GRPC_CALLS_METRIC = 'tsmesh_grpc_calls_total';
export const GRPC_LABELS = ['direction', 'source_workload', 'source_namespace', 'destination_workload', 'destination_namespace', 'destination_service', 'grpc_status'] as const;

const value = (v: string | undefined): string => (v ? v : UNKNOWN);

export class GrpcMetrics {
  readonly #calls: Counter<(typeof GRPC_LABELS)[number]>;
  readonly #bound = new Map<string, { inc(): void }>();
  readonly #maxSeries: number;

  constructor(registry: Registry, options: { maxSeries?: number } = {}) {
    this.#maxSeries = options.maxSeries ?? 4000;
    this.#calls = new Counter({ name: GRPC_CALLS_METRIC, help: 'gRPC calls the sidecar proxied, by direction, source and destination workload and namespace, destination service and gRPC status', labelNames: GRPC_LABELS, registers: [registry] });
  }

  /** One finished call between `peers` that ended with `grpcStatus` (undefined: none). */
  record(peers: Peers, grpcStatus: number | undefined): void {
    const status = grpcStatusLabel(grpcStatus);
    let key = `${peers.direction}\0${peers.sourceWorkload}\0${peers.sourceNamespace}\0${peers.destinationWorkload}\0${peers.destinationNamespace}\0${peers.destinationService}\0${status}`;
    let counter = this.#bound.get(key);
    if (!counter) {
      const over = this.#bound.size >= this.#maxSeries;
      if (over) key = `${peers.direction}\0overflow\0${status}`;
      counter = this.#bound.get(key);
      if (!counter) {
        counter = this.#calls.labels({
          direction: peers.direction,
          source_workload: over ? 'overflow' : value(peers.sourceWorkload),
          source_namespace: over ? 'overflow' : value(peers.sourceNamespace),
          destination_workload: over ? 'overflow' : value(peers.destinationWorkload),
          destination_namespace: over ? 'overflow' : value(peers.destinationNamespace),
          destination_service: over ? 'overflow' : value(peers.destinationService),
          grpc_status: status,
        });
        this.#bound.set(key, counter);
      }
    }
    counter.inc();
  }
}
