// Failure accrual (Linkerd's name; Istio's consecutive-errors outlier detection): an endpoint
// that fails `threshold` requests in a row, or that cannot be connected to at all, is ejected
// for a backoff that doubles with each ejection in a row (1 s, 2 s, 4 s ... 60 s). When the
// backoff ends, exactly one request probes it: a success closes it (and resets the backoff),
// a failure ejects it again for longer. Unlike the windowed breaker it does not need a share of
// failures in a window that may hold many older successes: five failures in a row are enough.
//   closed    counts consecutive failures; a success resets the count
//   ejected   skipped until the backoff ends
//   probing   the backoff ended: available to one request at a time until its result
// Results of requests admitted before an ejection that arrive during it change nothing.

/** The accrual's defaults, in one place (the threshold is the `consecutive-failures` policy). */
export const ACCRUAL_DEFAULTS = { baseEjectionMs: 1000, maxEjectionMs: 60_000 } as const;

export type AccrualState = 'closed' | 'ejected' | 'probing';

/** One attempt as the accrual sees it: its outcome settles it once (abandoned: no result, e.g. the client went away). */
export type Outcome = 'success' | 'failure' | 'unreachable' | 'abandoned';

export interface AccrualOptions {
  /** consecutive failures that eject the endpoint; 0 counts none (connection failures still eject) */
  threshold: number;
  now?: () => number;
  baseEjectionMs?: number;
  maxEjectionMs?: number;
}

export class FailureAccrual {
  threshold: number;
  readonly #now: () => number;
  readonly #base: number;
  readonly #max: number;
  #consecutive = 0;
  #ejections = 0;
  #ejectedUntil = 0;
  #probeOut = false;
  /** bumped at each ejection: attempts admitted before it do not count after it */
  #epoch = 0;

  constructor(options: AccrualOptions) {
    this.threshold = options.threshold;
    this.#now = options.now ?? Date.now;
    this.#base = options.baseEjectionMs ?? ACCRUAL_DEFAULTS.baseEjectionMs;
    this.#max = options.maxEjectionMs ?? ACCRUAL_DEFAULTS.maxEjectionMs;
  }

  get state(): AccrualState {
    if (this.#ejections === 0) return 'closed';
    return this.#now() < this.#ejectedUntil ? 'ejected' : 'probing';
  }

  /** Failures in a row so far (closed state). */
  get consecutiveFailures(): number {
    return this.#consecutive;
  }

  /** ms until the backoff ends (0 when not ejected). */
  get ejectedForMs(): number {
    return this.state === 'ejected' ? this.#ejectedUntil - this.#now() : 0;
  }

  /** Whether a request may go to the endpoint now. */
  get available(): boolean {
    const state = this.state;
    return state === 'closed' || (state === 'probing' && !this.#probeOut);
  }

  /**
   * Lets one request through (the caller checked `available`, or sends anyway because every
   * endpoint is ejected); its `settle` records the result once.
   */
  admit(): (outcome: Outcome) => void {
    const epoch = this.#epoch;
    const probe = this.state === 'probing' && !this.#probeOut;
    if (probe) this.#probeOut = true;
    let settled = false;
    return (outcome) => {
      if (settled) return;
      settled = true;
      if (probe) this.#probeOut = false;
      if (outcome === 'abandoned') return;
      if (epoch !== this.#epoch && !probe) return; // admitted before the ejection
      this.#record(outcome, probe);
    };
  }

  #record(outcome: Outcome, probe: boolean): void {
    if (outcome === 'success') {
      if (probe || this.#ejections === 0) {
        this.#ejections = 0;
        this.#consecutive = 0;
      }
      return;
    }
    if (this.#ejections > 0 && !probe) return; // ejected already; only the probe decides
    this.#consecutive++;
    if (outcome === 'unreachable' || probe || (this.threshold > 0 && this.#consecutive >= this.threshold)) this.#eject();
  }

  #eject(): void {
    this.#ejections++;
    this.#epoch++;
    this.#consecutive = 0;
    this.#ejectedUntil = this.#now() + Math.min(this.#max, this.#base * 2 ** (this.#ejections - 1));
  }
}
