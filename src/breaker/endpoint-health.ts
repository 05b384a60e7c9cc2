// Per-endpoint health, consulted before balancing: for each (destination Service, endpoint), a
// windowed circuit breaker (opossum) and failure accrual (./accrual.ts), both fed by the
// shared response classification and both with that Service's policy. Two Services that reach
// the same pod keep separate state, each with its own settings; a policy change applies to the
// state in place (counts, open or ejected, are kept). State of endpoints that leave a Service
// is dropped.
import CircuitBreaker from 'opossum';
import type { Policy } from '../config/annotations.ts';
import type { Classification } from '../classify/classify.ts';
import type { Endpoint } from '../registry/model.ts';
import { FailureAccrual, type AccrualState, type Outcome } from './accrual.ts';

export interface BreakerSettings {
  errorThresholdPercentage: number;
  volumeThreshold: number;
  resetTimeout: number;
}

export function breakerSettings(policy: Policy): BreakerSettings {
  return {
    errorThresholdPercentage: policy['breaker-error-threshold'],
    volumeThreshold: policy['breaker-volume-threshold'],
    resetTimeout: policy['breaker-reset-timeout'],
  };
}

/** An attempt's result as the breaker sees it (one instance: nothing reads its stack). */
class AttemptFailed extends Error {}
const attemptFailed = new AttemptFailed('attempt failed');

/** What an open, half-open or ejected endpoint looks like to metrics: skipped (1) or not (0). */
export type HealthState = 'open' | 'half-open' | 'closed';

/** One attempt admitted to an endpoint: `settle` records its classification, once (undefined: abandoned, nothing to record). */
export interface Ticket {
  settle(c: Classification | undefined): void;
}

const ignore = (): void => undefined;

/** One attempt admitted (an object, not closures per attempt). */
class Admission implements Ticket {
  readonly #health: EndpointHealth;
  readonly #accrual: (outcome: Outcome) => void;
  /** admitted as the half-open breaker's probe */
  readonly probe: boolean;
  #settled = false;

  constructor(health: EndpointHealth, accrual: (outcome: Outcome) => void, probe: boolean) {
    this.#health = health;
    this.#accrual = accrual;
    this.probe = probe;
  }

  settle(c: Classification | undefined): void {
    if (this.#settled) return;
    this.#settled = true;
    // an abandoned attempt (the client went away) says nothing of the endpoint: neither a
    // failure nor a success in the breaker's window (it would dilute the error share)
    if (c === undefined) this.#health.abandoned(this);
    else this.#health.ended(this, !c.failure);
    this.#accrual(c === undefined ? 'abandoned' : !c.failure ? 'success' : c.unreachable ? 'unreachable' : 'failure');
    this.#health.report();
  }
}

export class EndpointHealth {
  readonly key: string;
  readonly service: string;
  readonly #breaker: CircuitBreaker<[boolean], boolean>;
  readonly #accrual: FailureAccrual;
  #probing = false;
  readonly #onState: (h: EndpointHealth) => void;
  #reported: HealthState = 'closed';
  /** The policy applied last (a Service's policy is one object until its annotations change). */
  #policy: Policy;

  constructor(key: string, service: string, policy: Policy, onState: (h: EndpointHealth) => void, now?: () => number) {
    this.key = key;
    this.service = service;
    this.#onState = onState;
    this.#accrual = new FailureAccrual({ threshold: policy['consecutive-failures'], now });
    this.#breaker = new CircuitBreaker(
      // fired once per attempt when it ends, with its result (see `ended`); opossum takes a
      // plain value as well as a Promise (its types declare only the Promise)
      ((ok: boolean) => {
        if (!ok) throw attemptFailed;
        return true;
      }) as unknown as (ok: boolean) => Promise<boolean>,
      // no latency percentiles (every attempt's latency kept for 10 s and sorted at each
      // failure and each second) and no snapshots: nothing here reads them
      { ...breakerSettings(policy), timeout: false, rollingCountTimeout: 10_000, rollingCountBuckets: 10, rollingPercentilesEnabled: false, enableSnapshots: false },
    );
    this.#policy = policy;
    this.#breaker.on('open', () => this.report());
    this.#breaker.on('halfOpen', () => this.report());
    this.#breaker.on('close', () => this.report());
  }

  /**
   * Applies the Service's current policy. opossum reads these three options from the breaker's
   * `options` at each decision (its types do not declare the field), so the window's counts
   * and an open state stay; test/resilience.test.ts holds it to that.
   */
  update(policy: Policy): void {
    if (policy === this.#policy) return;
    this.#policy = policy;
    Object.assign((this.#breaker as unknown as { options: BreakerSettings }).options, breakerSettings(policy));
    this.#accrual.threshold = policy['consecutive-failures'];
  }

  /** The windowed breaker's state. */
  get breaker(): HealthState {
    return this.#breaker.opened ? 'open' : this.#breaker.halfOpen ? 'half-open' : 'closed';
  }

  get accrual(): AccrualState {
    return this.#accrual.state;
  }

  /** Skipped by the breaker or by accrual (half-open and probing count): what the gauge shows. */
  get state(): HealthState {
    const breaker = this.breaker;
    if (breaker !== 'closed') return breaker;
    const accrual = this.#accrual.state;
    return accrual === 'ejected' ? 'open' : accrual === 'probing' ? 'half-open' : 'closed';
  }

  /** The breaker lets a request through: closed, or half-open with no probe out. */
  get breakerAvailable(): boolean {
    if (this.#breaker.opened) return false;
    if (this.#breaker.halfOpen) return !this.#probing;
    return true;
  }

  /** Whether the balancer may pick this endpoint now. */
  get available(): boolean {
    return this.breakerAvailable && this.#accrual.available;
  }

  /** Lets one attempt through both; the ticket records its result in both. */
  admit(): Ticket {
    const probe = this.#breaker.halfOpen && !this.#probing;
    if (probe) this.#probing = true;
    return new Admission(this, this.#accrual.admit(), probe);
  }

  /**
   * An attempt ended: the windowed breaker counts it now (a call and its result together, as
   * Envoy's outlier detection counts on completion), not when it started. While the breaker is
   * open or half-open only the probe's result counts: the results of attempts that started
   * before it opened change nothing, as in failure accrual.
   */
  ended(attempt: Admission, ok: boolean): void {
    if (attempt.probe) {
      // the probe is out until the breaker has taken its result (closed or opened again)
      this.#breaker.fire(ok).then(this.#probeSettled, this.#probeSettled);
    } else if (this.#breaker.closed) {
      this.#breaker.fire(ok).then(undefined, ignore);
    }
  }

  /** An attempt the client abandoned: not counted; an abandoned probe frees the probe's slot. */
  abandoned(attempt: Admission): void {
    if (attempt.probe) this.#probing = false;
  }

  readonly #probeSettled = (): void => {
    this.#probing = false;
  };

  /** Tells the metrics when the state they show changed. */
  report(): void {
    const state = this.state;
    if (state === this.#reported) return;
    this.#reported = state;
    this.#onState(this);
  }

  snapshot(): { breaker: HealthState; accrual: AccrualState; consecutiveFailures: number; ejectedForMs: number } {
    this.report();
    return { breaker: this.breaker, accrual: this.#accrual.state, consecutiveFailures: this.#accrual.consecutiveFailures, ejectedForMs: Math.round(this.#accrual.ejectedForMs) };
  }

  close(): void {
    this.#breaker.shutdown();
  }
}

export interface HealthTableOptions {
  /** A (Service, endpoint)'s state as metrics show it changed. */
  onState?: (h: EndpointHealth) => void;
  /** The clock of failure accrual (ms). */
  now?: () => number;
}

export class HealthTable {
  /** service -> endpoint key -> health */
  readonly #table = new Map<string, Map<string, EndpointHealth>>();
  readonly #onState: (h: EndpointHealth) => void;
  readonly #now: (() => number) | undefined;

  constructor(options: HealthTableOptions = {}) {
    this.#onState = options.onState ?? (() => undefined);
    this.#now = options.now;
  }

  /** The state of `endpoint` for `service`, made on first use, with `policy` applied. */
  get(service: string, key: string, policy: Policy): EndpointHealth {
    let endpoints = this.#table.get(service);
    if (!endpoints) this.#table.set(service, (endpoints = new Map()));
    let h = endpoints.get(key);
    if (!h) endpoints.set(key, (h = new EndpointHealth(key, service, policy, this.#onState, this.#now)));
    else h.update(policy);
    return h;
  }

  /**
   * The endpoints of `service` a request may go to now: those neither open nor ejected; when
   * accrual has ejected all of them, those the breaker still lets through (rather than fail);
   * empty when every breaker is open.
   */
  usable(service: string, policy: Policy, endpoints: readonly Endpoint[]): readonly Endpoint[] {
    // the common case, every endpoint available: the list itself, nothing made per request
    let all = true;
    for (const ep of endpoints) {
      if (!this.get(service, ep.key, policy).available) {
        all = false;
        break;
      }
    }
    if (all) return endpoints;
    const states = endpoints.map((ep) => [ep, this.get(service, ep.key, policy)] as const);
    const available = states.filter(([, h]) => h.available).map(([ep]) => ep);
    if (available.length > 0) return available;
    return states.filter(([, h]) => h.breakerAvailable).map(([ep]) => ep);
  }

  /** Admits one attempt of `service` to `endpoint` (one `usable` returned). */
  admit(service: string, endpoint: Endpoint): Ticket {
    const h = this.#table.get(service)?.get(endpoint.key);
    if (!h) throw new Error(`no health state for ${endpoint.key} of ${service}: call usable() first`);
    return h.admit();
  }

  /** Drops the state of (service, endpoint) pairs no longer in the registry; `onDrop` sees each one. */
  retain(keep: (service: string, key: string) => boolean, onDrop: (h: EndpointHealth) => void = () => undefined): void {
    for (const [service, endpoints] of this.#table) {
      for (const [key, h] of endpoints) {
        if (keep(service, key)) continue;
        h.close();
        endpoints.delete(key);
        onDrop(h);
      }
      if (endpoints.size === 0) this.#table.delete(service);
    }
  }

  snapshot(): { service: string; endpoint: string; breaker: HealthState; accrual: AccrualState; consecutiveFailures: number; ejectedForMs: number }[] {
    return [...this.#table.values()].flatMap((endpoints) => [...endpoints.values()].map((h) => ({ service: h.service, endpoint: h.key, ...h.snapshot() })));
  }

  close(): void {
    for (const endpoints of this.#table.values()) for (const h of endpoints.values()) h.close();
    this.#table.clear();
  }
}
