// A retry budget per destination service (Linkerd's model): retries may add at most `ratio` of
// the recent requests, plus a floor of `minPerSecond` retries each second, over a 10 s window.
// When spent, failures go back to the client instead of turning an outage into a retry storm.
const BUCKETS = 10;
const BUCKET_MS = 1000;

export class RetryBudget {
  readonly #requests = new Array<number>(BUCKETS).fill(0);
  readonly #retries = new Array<number>(BUCKETS).fill(0);
  #bucket = 0;
  #bucketStart: number;
  readonly #created: number;
  readonly #minPerSecond: number;
  readonly #now: () => number;
  #ratio: number;

  constructor(options: { ratio: number; minPerSecond?: number; now?: () => number }) {
    this.#ratio = options.ratio;
    this.#minPerSecond = options.minPerSecond ?? 10;
    this.#now = options.now ?? Date.now;
    this.#bucketStart = this.#now();
    this.#created = this.#bucketStart;
  }

  set ratio(r: number) {
    this.#ratio = r;
  }

  #rotate(): void {
    const now = this.#now();
    let steps = Math.floor((now - this.#bucketStart) / BUCKET_MS);
    if (steps <= 0) return;
    this.#bucketStart += steps * BUCKET_MS;
    steps = Math.min(steps, BUCKETS);
    for (let i = 0; i < steps; i++) {
      this.#bucket = (this.#bucket + 1) % BUCKETS;
      this.#requests[this.#bucket] = 0;
      this.#retries[this.#bucket] = 0;
    }
  }

  /** Records an original request (not a retry). */
  request(): void {
    this.#rotate();
    this.#requests[this.#bucket]!++;
  }

  /** Takes one retry from the budget if there is one. */
  tryRetry(): boolean {
    this.#rotate();
    const requests = sum(this.#requests);
    const retries = sum(this.#retries);
    // the floor accrues a second at a time (no burst of a whole window's floor at start)
    const seconds = Math.min(BUCKETS, Math.max(1, Math.ceil((this.#now() - this.#created) / BUCKET_MS)));
    if (retries >= this.#ratio * requests + this.#minPerSecond * seconds) return false;
    this.#retries[this.#bucket]!++;
    return true;
  }
}

const sum = (a: number[]) => a.reduce((x, y) => x + y, 0);
