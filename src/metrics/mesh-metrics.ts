// The mesh's Prometheus metrics (DESIGN.md "Metrics"), with the label names fixed here once.
// The pipelines resolve a series once per peers (an endpoint and destination service outbound,
// a connection inbound) and hold on to it, so a request is a few field writes: its count, sum
// and bucket in a cell of its own (./cells.ts), no label object and no label hashing (prom-client's
// children hash their labels on every inc and observe: ~2-2.6% of a busy sidecar, bench/NOTES.md).
// prom-client still names, formats and serves them with everything else on /metrics. Label
// values are normalised so that cardinality stays bounded (no paths, no ids; what the sidecar
// cannot name is "unknown"), and the number of series is capped ("overflow" past it).
import { collectDefaultMetrics, Counter, Gauge, type Registry } from 'prom-client';
import { UNKNOWN } from './workload.ts';
import { CellCounter, CellHistogram, Cells, type Cell } from './cells.ts';

export const METRIC_NAMES = {
  requests: 'tsmesh_requests_total',
  requestDuration: 'tsmesh_request_duration_seconds',
  retries: 'tsmesh_retries_total',
  circuitBreakerOpen: 'tsmesh_circuit_breaker_open',
  tcpConnections: 'tsmesh_tcp_connections_total',
  tlsHandshakeErrors: 'tsmesh_tls_handshake_errors_total',
  /** Registered by the identity provider (src/identity), not here. */
  certificateExpiry: 'tsmesh_certificate_expiry_seconds',
} as const;

/** Labels of tsmesh_requests_total and tsmesh_request_duration_seconds, in this order. */
export const REQUEST_LABELS = ['direction', 'source_workload', 'source_namespace', 'destination_workload', 'destination_namespace', 'destination_service', 'response_code', 'mtls'] as const;
/** Labels of tsmesh_tcp_connections_total. */
export const TCP_LABELS = ['direction', 'source_workload', 'source_namespace', 'destination_workload', 'destination_namespace', 'destination_service', 'mtls'] as const;
export const RETRY_LABELS = ['destination_service', 'reason'] as const;
export const BREAKER_LABELS = ['destination_service', 'endpoint'] as const;
export const TLS_ERROR_LABELS = ['direction', 'reason'] as const;

/** Upper bounds (seconds) of tsmesh_request_duration_seconds: sub-millisecond (the proxy's own cost) up to a minute. */
export const DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/** Reasons tsmesh_retries_total accepts (the retry-on conditions and a per-try timeout); anything else is "other". */
export const RETRY_REASONS = ['5xx', 'gateway-error', 'connect-failure', 'reset', 'retriable-4xx', 'timeout'] as const;

export type Direction = 'inbound' | 'outbound';

/** Who called whom: one request series without its response code. */
export interface Peers {
  readonly direction: Direction;
  readonly sourceWorkload: string | undefined;
  readonly sourceNamespace: string | undefined;
  readonly destinationWorkload: string | undefined;
  readonly destinationNamespace: string | undefined;
  /** "name.namespace" of the destination Service; undefined when the call went to no known service. */
  readonly destinationService: string | undefined;
  /** The hop was mutual TLS between sidecars. */
  readonly mtls: boolean;
}

/** A pre-bound request series: what the hot path holds on to. */
export interface RequestSeries {
  /** One finished request with `responseCode` (0 when there was no response) that took `seconds`. */
  record(responseCode: number, seconds: number): void;
  /** One TCP connection opened between the same peers. */
  connection(): void;
}

const value = (v: string | undefined): string => (v ? v : UNKNOWN);
const CODES: string[] = Array.from({ length: 600 }, (_, i) => String(i));
const codeLabel = (code: number): string => (Number.isInteger(code) && code >= 0 && code < 600 ? CODES[code]! : '0');

export interface MeshMetricsOptions {
  /** Also register the Node.js process metrics (prom-client's default metrics) unless the registry has them. Default true. */
  readonly processMetrics?: boolean;
  /** Most request series kept (label tuples without the code); past it, new tuples are recorded as "overflow". Default 2000. */
  readonly maxSeries?: number;
}

export class MeshMetrics {
  readonly registry: Registry;
  /** tsmesh_requests_total and tsmesh_request_duration_seconds: one cell per series and response code. */
  readonly #cells = new Cells<RequestLabels>(DURATION_BUCKETS);
  readonly #tcp: Counter<(typeof TCP_LABELS)[number]>;
  readonly #retries: Counter<(typeof RETRY_LABELS)[number]>;
  readonly #breaker: Gauge<(typeof BREAKER_LABELS)[number]>;
  readonly #tlsErrors: Counter<(typeof TLS_ERROR_LABELS)[number]>;
  readonly #series = new Map<string, RequestSeries>();
  readonly #overflowSeries = new Map<string, RequestSeries>();
  readonly #maxSeries: number;

  constructor(registry: Registry, options: MeshMetricsOptions = {}) {
    this.registry = registry;
    this.#maxSeries = options.maxSeries ?? 2000;
    const registers = [registry];
    new CellCounter(this.#cells, { name: METRIC_NAMES.requests, help: 'HTTP requests the sidecar proxied, by direction, source and destination workload and namespace, destination service, response code and mTLS', labelNames: REQUEST_LABELS, registers });
    new CellHistogram(this.#cells, { name: METRIC_NAMES.requestDuration, help: 'Duration of the HTTP requests the sidecar proxied, from the request to the end of the response, in seconds', labelNames: REQUEST_LABELS, buckets: DURATION_BUCKETS, registers });
    this.#tcp = new Counter({ name: METRIC_NAMES.tcpConnections, help: 'TCP connections the sidecar proxied (counted when opened), by direction, peers and mTLS', labelNames: TCP_LABELS, registers });
    this.#retries = new Counter({ name: METRIC_NAMES.retries, help: 'Retries the sidecar made (attempts after the first), by destination service and the condition that caused them', labelNames: RETRY_LABELS, registers });
    this.#breaker = new Gauge({ name: METRIC_NAMES.circuitBreakerOpen, help: "1 while an endpoint's circuit breaker is open or half-open, 0 when closed", labelNames: BREAKER_LABELS, registers });
    this.#tlsErrors = new Counter({ name: METRIC_NAMES.tlsHandshakeErrors, help: 'TLS handshakes that failed, by direction and reason (the TLS error code)', labelNames: TLS_ERROR_LABELS, registers });
    if ((options.processMetrics ?? true) && !registry.getSingleMetric('process_cpu_user_seconds_total')) collectDefaultMetrics({ register: registry });
  }

  /** The series for `peers`, created once per label tuple; hold on to it where the peers stay the same. */
  series(peers: Peers): RequestSeries {
    const key = `${peers.direction}\0${peers.sourceWorkload}\0${peers.sourceNamespace}\0${peers.destinationWorkload}\0${peers.destinationNamespace}\0${peers.destinationService}\0${peers.mtls}`;
    let s = this.#series.get(key);
    if (!s) {
      if (this.#series.size >= this.#maxSeries) return this.#overflow(peers);
      s = this.#makeSeries(peers);
      this.#series.set(key, s);
    }
    return s;
  }

  /** One finished request: series(peers).record(responseCode, seconds). */
  request(peers: Peers, responseCode: number, seconds: number): void {
    this.series(peers).record(responseCode, seconds);
  }

  /** One TCP connection opened: series(peers).connection(). */
  tcpConnection(peers: Peers): void {
    this.series(peers).connection();
  }

  /** One retry to `destinationService` because of `reason` (a retry-on condition, or "timeout" for a per-try timeout). */
  retry(destinationService: string | undefined, reason: string): void {
    this.#retries.inc({ destination_service: value(destinationService), reason: (RETRY_REASONS as readonly string[]).includes(reason) ? reason : 'other' });
  }

  /** An endpoint's breaker changed state; half-open counts as open. */
  circuitBreaker(destinationService: string | undefined, endpoint: string, state: 'open' | 'half-open' | 'closed'): void {
    this.#breaker.set({ destination_service: value(destinationService), endpoint }, state === 'closed' ? 0 : 1);
  }

  /** An endpoint left the registry: drop its breaker series. */
  forgetEndpoint(destinationService: string | undefined, endpoint: string): void {
    this.#breaker.remove({ destination_service: value(destinationService), endpoint });
  }

  /** A failed TLS handshake; `reason` is the error's code (e.g. ERR_SSL_TLSV1_ALERT_UNKNOWN_CA). */
  tlsHandshakeError(direction: Direction, reason: string | undefined): void {
    this.#tlsErrors.inc({ direction, reason: tlsReason(reason) });
  }

  #makeSeries(peers: Peers): RequestSeries {
    const base = {
      direction: peers.direction,
      source_workload: value(peers.sourceWorkload),
      source_namespace: value(peers.sourceNamespace),
      destination_workload: value(peers.destinationWorkload),
      destination_namespace: value(peers.destinationNamespace),
      destination_service: value(peers.destinationService),
      mtls: peers.mtls ? 'true' : 'false',
    } as const;
    return new Series(this.#cells, base, this.#tcp.labels(base));
  }

  // Past the bound: one shared series per direction and mTLS, and nothing more is remembered.
  #overflow(peers: Peers): RequestSeries {
    const key = `${peers.direction}\0${peers.mtls}`;
    let s = this.#overflowSeries.get(key);
    if (!s) {
      s = this.#makeSeries({ direction: peers.direction, sourceWorkload: 'overflow', sourceNamespace: 'overflow', destinationWorkload: 'overflow', destinationNamespace: 'overflow', destinationService: 'overflow', mtls: peers.mtls });
      this.#overflowSeries.set(key, s);
    }
    return s;
  }
}

type RequestLabels = Record<(typeof REQUEST_LABELS)[number], string>;
type BaseLabels = Omit<RequestLabels, 'response_code'>;

/** One series: its cells by response code (the last one used first: most requests repeat it). */
class Series implements RequestSeries {
  readonly #cells: Cells<RequestLabels>;
  readonly #base: BaseLabels;
  readonly #tcp: { inc(): void };
  readonly #byCode = new Map<number, Cell>();
  #lastCode = -1;
  #last: Cell | undefined;

  constructor(cells: Cells<RequestLabels>, base: BaseLabels, tcp: { inc(): void }) {
    this.#cells = cells;
    this.#base = base;
    this.#tcp = tcp;
  }

  record(responseCode: number, seconds: number): void {
    let cell = responseCode === this.#lastCode ? this.#last : this.#byCode.get(responseCode);
    if (!cell) {
      cell = this.#cells.add({ ...this.#base, response_code: codeLabel(responseCode) }); // an impossible code shares "0"'s cell
      this.#byCode.set(responseCode, cell);
    }
    this.#lastCode = responseCode;
    this.#last = cell;
    cell.observe(seconds >= 0 && Number.isFinite(seconds) ? seconds : 0);
  }

  connection(): void {
    this.#tcp.inc();
  }
}

function tlsReason(code: string | undefined): string {
  if (!code) return UNKNOWN;
  return /^[A-Z0-9_]{1,64}$/.test(code) ? code : 'other';
}
