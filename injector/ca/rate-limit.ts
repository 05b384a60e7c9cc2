// Token buckets: one global, one per client, so a flood from one pod (or from everywhere)
// is answered with 429 before it costs a TokenReview or a signature.

export interface BucketSpec {
  /** Tokens added per second. */
  readonly ratePerSec: number;
  /** Bucket size: the burst allowed after a quiet period. */
  readonly burst: number;
}

export class TokenBucket {
  readonly #spec: BucketSpec;
  #tokens: number;
  #at: number;
  constructor(spec: BucketSpec, now: number) {
    this.#spec = spec;
    this.#tokens = spec.burst;
    this.#at = now;
  }
  #refill(now: number): void {
    if (now > this.#at) {
      this.#tokens = Math.min(this.#spec.burst, this.#tokens + ((now - this.#at) / 1000) * this.#spec.ratePerSec);
      this.#at = now;
    }
  }
  /** Takes one token; returns 0 when granted, else the milliseconds until one is available. */
  take(now: number): number {
    this.#refill(now);
    if (this.#tokens >= 1) {
      this.#tokens -= 1;
      return 0;
    }
    return Math.ceil(((1 - this.#tokens) / this.#spec.ratePerSec) * 1000);
  }
  /** Returns a token taken by a request that was then refused by another limiter. */
  giveBack(): void {
    this.#tokens = Math.min(this.#spec.burst, this.#tokens + 1);
  }
  isFull(now: number): boolean {
    this.#refill(now);
    return this.#tokens >= this.#spec.burst;
  }
}

/** Per-key buckets with a bounded number of keys (full buckets are dropped first: they carry no state). */
export class KeyedBuckets {
  readonly #spec: BucketSpec;
  readonly #maxKeys: number;
  readonly #buckets = new Map<string, TokenBucket>();
  constructor(spec: BucketSpec, maxKeys = 10_000) {
    this.#spec = spec;
    this.#maxKeys = maxKeys;
  }
  get(key: string, now: number): TokenBucket {
    let b = this.#buckets.get(key);
    if (!b) {
      if (this.#buckets.size >= this.#maxKeys) this.#prune(now);
      b = new TokenBucket(this.#spec, now);
      this.#buckets.set(key, b);
    }
    return b;
  }
  get size(): number {
    return this.#buckets.size;
  }
  #prune(now: number): void {
    for (const [k, b] of this.#buckets) if (b.isFull(now)) this.#buckets.delete(k);
    // Still full of busy clients: forget the oldest (Map order is insertion order).
    for (const k of this.#buckets.keys()) {
      if (this.#buckets.size < this.#maxKeys) break;
      this.#buckets.delete(k);
    }
  }
}
