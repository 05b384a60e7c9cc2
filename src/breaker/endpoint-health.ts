// Per-endpoint health, consulted by the balancer: a circuit breaker (opossum) fed by the shared
// response classification, and outlier ejection after connection failures. Keyed by
// endpoint ("ip:port"); state for endpoints that leave the registry is dropped.
import CircuitBreaker from 'opossum';
import type { Policy } from '../config/annotations.ts';

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

/** An attempt's result as the breaker sees it. */
class AttemptFailed extends Error {}

export class EndpointHealth {
  readonly key: string;
  readonly service: string;
  #breaker: CircuitBreaker<[Promise<boolean>], boolean>;
  #settings: BreakerSettings;
  #probing = false;
  #ejectedUntil = 0;
  #ejections = 0;
  readonly #onState: (h: EndpointHealth) => void;

  constructor(key: string, service: string, settings: BreakerSettings, onState: (h: EndpointHealth) => void) {
    this.key = key;
    this.service = service;
    this.#settings = settings;
    this.#onState = onState;
    this.#breaker = this.#make(settings);
  }

  #make(settings: BreakerSettings): CircuitBreaker<[Promise<boolean>], boolean> {
    const b = new CircuitBreaker(async (outcome: Promise<boolean>) => {
      if (!(await outcome)) throw new AttemptFailed();
      return true;
    }, { ...settings, timeout: false, rollingCountTimeout: 10_000, rollingCountBuckets: 10 });
    b.on('open', () => this.#onState(this));
    b.on('close', () => this.#onState(this));
    b.on('halfOpen', () => this.#onState(this));
    return b;
  }

  /** New policy values apply to a fresh breaker (its counts restart). */
  update(settings: BreakerSettings): void {
    const s = this.#settings;
    if (s.errorThresholdPercentage === settings.errorThresholdPercentage && s.volumeThreshold === settings.volumeThreshold && s.resetTimeout === settings.resetTimeout) return;
    this.#breaker.shutdown();
    this.#settings = settings;
    this.#breaker = this.#make(settings);
    this.#onState(this);
  }

  get open(): boolean {
    return this.#breaker.opened;
  }

  get state(): 'open' | 'half-open' | 'closed' {
    return this.#breaker.opened ? 'open' : this.#breaker.halfOpen ? 'half-open' : 'closed';
  }

  /** Whether the balancer may pick this endpoint now: closed, or half-open with no probe out. */
  get available(): boolean {
    if (this.#breaker.opened) return false;
    if (this.#breaker.halfOpen) return !this.#probing;
    return true;
  }

  get ejected(): boolean {
    return this.#ejectedUntil > Date.now();
  }

  /**
   * Passes one attempt through the breaker. `outcome` resolves true for success, false for a
   * failure. Returns false if the breaker refused the attempt (open, or a probe is out).
   */
  admit(outcome: Promise<boolean>): boolean {
    if (!this.available) return false;
    const probe = this.#breaker.halfOpen;
    if (probe) this.#probing = true;
    this.#breaker.fire(outcome).then(
      () => this.#settle(probe, true),
      () => this.#settle(probe, false),
    );
    return true;
  }

  #settle(probe: boolean, ok: boolean): void {
    if (probe) this.#probing = false;
    if (ok) this.#ejections = 0;
  }

  /** Connection failures eject the endpoint for a while, longer each time (5 s, 10 s, ... 60 s). */
  connectFailed(): void {
    this.#ejections++;
    this.#ejectedUntil = Date.now() + Math.min(60_000, 5_000 * this.#ejections);
  }

  close(): void {
    this.#breaker.shutdown();
  }
}

export class HealthTable {
  readonly #table = new Map<string, EndpointHealth>();
  readonly #onState: (h: EndpointHealth) => void;

  constructor(onState: (h: EndpointHealth) => void = () => undefined) {
    this.#onState = onState;
  }

  get(key: string, service: string, settings: BreakerSettings): EndpointHealth {
    let h = this.#table.get(key);
    if (!h) {
      h = new EndpointHealth(key, service, settings, this.#onState);
      this.#table.set(key, h);
    } else h.update(settings);
    return h;
  }

  peek(key: string): EndpointHealth | undefined {
    return this.#table.get(key);
  }

  /** Drops state of endpoints no longer in the registry; `onDrop` sees each one dropped. */
  retain(keep: (key: string) => boolean, onDrop: (h: EndpointHealth) => void = () => undefined): void {
    for (const [key, h] of this.#table) {
      if (!keep(key)) {
        h.close();
        this.#table.delete(key);
        onDrop(h);
      }
    }
  }

  snapshot(): { endpoint: string; service: string; open: boolean; ejected: boolean }[] {
    return [...this.#table.values()].map((h) => ({ endpoint: h.key, service: h.service, open: h.open, ejected: h.ejected }));
  }

  close(): void {
    for (const h of this.#table.values()) h.close();
    this.#table.clear();
  }
}
