// Load balancing by power of two choices over a peak-EWMA of latency weighted by in-flight
// requests (Linkerd's balancer): pick two endpoints at random, send to the one whose
// cost = estimate x (pending + 1) is lower.
//
// The estimate forgets: it decays toward zero with the time since it was last updated,
// computed when it is read (a time constant of `decayMs`). An endpoint that stopped getting
// traffic after one slow answer (or after its first one, which paid for the connection's
// handshakes) therefore looks cheaper again within a second or two and gets a new sample;
// without that, a stale high estimate would keep it out for good.
//   sample above the estimate   the estimate jumps to it at once (peak-sensitive)
//   sample below it             it is pulled toward the sample with a weight that grows with
//                               the time since the last update
//   failure                     counts as a sample of `failurePenalty` times the larger of the
//                               estimate and the default, so an endpoint that fails fast
//                               never looks faster than one that answers
// A new endpoint starts at `defaultRttMs`, and its first sample is not taken (it includes the
// connection's set-up); the pending factor keeps a new endpoint from taking every request.
// Costs within `tieFactor` of each other are a tie, decided at random, so that a few percent of
// noise between identical endpoints does not send every sequential call to one of them.
import type { Endpoint } from '../registry/model.ts';

/** The balancer's defaults, in one place. */
export const BALANCER_DEFAULTS = {
  /** the estimate of an endpoint not yet measured */
  defaultRttMs: 5,
  /** time constant of the decay: after this long unused, an estimate is down to 37 %. Linkerd
   * uses 10 s. A latency spike (30x on a busy machine) moves traffic to the other endpoint
   * until it is forgotten; at 100 ms that takes a third of a second, so two identical
   * endpoints each get 30-70 % of sequential calls over any two seconds, and an endpoint 10x
   * slower still gets under 10 % (docs/resilience.md) */
  decayMs: 150,
  /** a failed attempt weighs this many times the estimate (or the default, when larger) */
  failurePenalty: 10,
  /** two costs within this factor of each other are a tie, decided at random: without it a
   * few percent of noise between two identical endpoints sends one of them every call */
  tieFactor: 1.25,
} as const;

export interface BalancerOptions {
  /** a monotonic clock in ms (performance.now) */
  now?: () => number;
  random?: () => number;
  defaultRttMs?: number;
  decayMs?: number;
  failurePenalty?: number;
  tieFactor?: number;
}

class Estimate {
  #ms: number;
  #stamp: number;
  /** samples taken; the first one is not (see the top of the file) */
  samples = 0;
  pending = 0;

  constructor(ms: number, now: number) {
    this.#ms = ms;
    this.#stamp = now;
  }

  /** The estimate at `now`, decayed since the last update. */
  read(now: number, decayMs: number): number {
    const elapsed = Math.max(0, now - this.#stamp);
    if (elapsed > 0) {
      this.#ms *= Math.exp(-elapsed / decayMs);
      this.#stamp = now;
    }
    return this.#ms;
  }

  observe(sampleMs: number, now: number, decayMs: number): void {
    const elapsed = Math.max(0, now - this.#stamp);
    this.#stamp = now;
    if (sampleMs > this.#ms) this.#ms = sampleMs;
    else {
      const w = Math.exp(-elapsed / decayMs);
      this.#ms = this.#ms * w + sampleMs * (1 - w);
    }
  }
}

export interface Lease {
  /**
   * Ends the attempt: `rttMs` is its latency to the response head, or undefined when it was
   * abandoned (no sample); `failed` when the endpoint failed it (connect failure, reset, 5xx).
   */
  done(rttMs: number | undefined, failed?: boolean): void;
}

export class P2CBalancer {
  readonly #estimates = new Map<string, Estimate>();
  readonly #now: () => number;
  readonly #random: () => number;
  readonly #defaultRttMs: number;
  readonly #decayMs: number;
  readonly #penalty: number;
  readonly #tie: number;

  constructor(options: BalancerOptions = {}) {
    this.#now = options.now ?? (() => performance.now());
    this.#random = options.random ?? Math.random;
    this.#defaultRttMs = options.defaultRttMs ?? BALANCER_DEFAULTS.defaultRttMs;
    this.#decayMs = options.decayMs ?? BALANCER_DEFAULTS.decayMs;
    this.#penalty = options.failurePenalty ?? BALANCER_DEFAULTS.failurePenalty;
    this.#tie = options.tieFactor ?? BALANCER_DEFAULTS.tieFactor;
  }

  /** Chooses among `candidates` (already filtered for health by the caller). */
  pick(candidates: readonly Endpoint[]): Endpoint | undefined {
    const n = candidates.length;
    if (n <= 1) return candidates[0];
    const i = Math.floor(this.#random() * n);
    let j = Math.floor(this.#random() * (n - 1));
    if (j >= i) j++;
    const a = candidates[i]!;
    const b = candidates[j]!;
    const now = this.#now();
    const ca = this.cost(a.key, now);
    const cb = this.cost(b.key, now);
    // costs within the tolerance of each other are a tie (measurement noise): either, at random
    if (Math.max(ca, cb) <= Math.min(ca, cb) * this.#tie) return this.#random() < 0.5 ? a : b;
    return ca < cb ? a : b;
  }

  /** estimate x (pending + 1), as the balancer compares it at `now`. */
  cost(key: string, now = this.#now()): number {
    const e = this.#get(key);
    return e.read(now, this.#decayMs) * (e.pending + 1);
  }

  /** Marks a request in flight to `endpoint`; the lease records its outcome when done. */
  start(endpoint: Endpoint): Lease {
    const e = this.#get(endpoint.key);
    e.pending++;
    let released = false;
    return {
      done: (rttMs, failed = false) => {
        if (released) return;
        released = true;
        e.pending--;
        if (rttMs === undefined && !failed) return;
        const now = this.#now();
        if (failed) {
          const penalty = Math.max(e.read(now, this.#decayMs), this.#defaultRttMs, rttMs ?? 0) * this.#penalty;
          e.observe(penalty, now, this.#decayMs);
        } else if (e.samples++ > 0) e.observe(Math.max(rttMs!, 0.01), now, this.#decayMs);
      },
    };
  }

  /** Drops the state of endpoints that left the registry. */
  retain(keep: (key: string) => boolean): void {
    for (const key of this.#estimates.keys()) if (!keep(key)) this.#estimates.delete(key);
  }

  snapshot(): Record<string, { ewmaMs: number; pending: number }> {
    const now = this.#now();
    return Object.fromEntries([...this.#estimates].map(([k, e]) => [k, { ewmaMs: Math.round(e.read(now, this.#decayMs) * 100) / 100, pending: e.pending }]));
  }

  #get(key: string): Estimate {
    let e = this.#estimates.get(key);
    if (!e) {
      e = new Estimate(this.#defaultRttMs, this.#now());
      this.#estimates.set(key, e);
    }
    return e;
  }
}
