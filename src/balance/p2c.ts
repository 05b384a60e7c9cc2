// Load balancing by power of two choices over a peak-EWMA of latency weighted by in-flight
// requests, as Linkerd does: pick two endpoints at random, send to the one whose
// latency * (pending + 1) is lower. A slower observation raises the estimate at once
// (peak-sensitive); faster ones pull it down with a weight that grows with the time since the
// last one. An endpoint not yet measured wins while it has nothing in flight, so a new pod
// gets traffic at once, one request at a time until its first answer.
import type { Endpoint } from '../registry/model.ts';

const DECAY_MS = 10_000;

class Stats {
  ewma: number | undefined;
  pending = 0;
  stamp = performance.now();

  cost(): number {
    if (this.ewma === undefined) return this.pending === 0 ? 0 : Number.MAX_VALUE;
    return this.ewma * (this.pending + 1);
  }

  observe(rttMs: number, now: number): void {
    const rtt = Math.max(rttMs, 0.01);
    if (this.ewma === undefined || rtt > this.ewma) this.ewma = rtt;
    else {
      const w = Math.exp(-Math.max(0, now - this.stamp) / DECAY_MS);
      this.ewma = this.ewma * w + rtt * (1 - w);
    }
    this.stamp = now;
  }
}

export interface Lease {
  /** Records the attempt's latency (to the response head), or only releases it (undefined). */
  done(rttMs: number | undefined): void;
}

export class P2CBalancer {
  readonly #stats = new Map<string, Stats>();
  readonly #random: () => number;

  constructor(options: { random?: () => number } = {}) {
    this.#random = options.random ?? Math.random;
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
    return this.#get(a.key).cost() <= this.#get(b.key).cost() ? a : b;
  }

  /** Marks a request in flight to `endpoint`; the lease records its latency when done. */
  start(endpoint: Endpoint): Lease {
    const s = this.#get(endpoint.key);
    s.pending++;
    let released = false;
    return {
      done: (rttMs) => {
        if (released) return;
        released = true;
        s.pending--;
        if (rttMs !== undefined) s.observe(rttMs, performance.now());
      },
    };
  }

  /** Drops the state of endpoints that left the registry. */
  retain(keep: (key: string) => boolean): void {
    for (const key of this.#stats.keys()) if (!keep(key)) this.#stats.delete(key);
  }

  snapshot(): Record<string, { ewmaMs: number | null; pending: number }> {
    return Object.fromEntries([...this.#stats].map(([k, s]) => [k, { ewmaMs: s.ewma === undefined ? null : Math.round(s.ewma * 100) / 100, pending: s.pending }]));
  }

  #get(key: string): Stats {
    let s = this.#stats.get(key);
    if (!s) {
      s = new Stats();
      this.#stats.set(key, s);
    }
    return s;
  }
}
