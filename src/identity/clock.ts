// Time as a dependency: the identity provider schedules rotation, retries and expiry through a
// Clock, so tests drive a certificate's whole life in milliseconds (ManualClock) without
// monkey-patching timers.

export interface Timer {
  cancel(): void;
}

export interface Clock {
  now(): number;
  /** Calls `fn` once after `ms`; the timer does not keep the process alive. */
  setTimer(fn: () => void, ms: number): Timer;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimer(fn, ms) {
    // setTimeout's limit is 2^31-1 ms (~24.8 days); longer waits are chained.
    const MAX = 2_147_483_647;
    let handle: NodeJS.Timeout;
    const arm = (left: number): void => {
      handle = setTimeout(() => (left > MAX ? arm(left - MAX) : fn()), Math.min(Math.max(0, left), MAX));
      handle.unref();
    };
    arm(ms);
    return { cancel: () => clearTimeout(handle) };
  },
};

/**
 * A clock for tests whose timers fire only when told to. Its time is either manual (a number:
 * moved by `advance`) or read from a function (e.g. `Date.now`, so certificates stay valid for
 * real TLS while rotation and retries are triggered at will with `fireNext`).
 */
export class ManualClock implements Clock {
  #now: number;
  readonly #source: (() => number) | undefined;
  #timers: { at: number; seq: number; fn: () => void }[] = [];
  #seq = 0;
  constructor(start: number | (() => number) = Date.now()) {
    this.#source = typeof start === 'function' ? start : undefined;
    this.#now = typeof start === 'function' ? start() : start;
  }
  now(): number {
    return this.#source ? this.#source() : this.#now;
  }
  setTimer(fn: () => void, ms: number): Timer {
    const t = { at: this.now() + Math.max(0, ms), seq: this.#seq++, fn };
    this.#timers.push(t);
    return { cancel: () => void (this.#timers = this.#timers.filter((x) => x !== t)) };
  }
  /** Timers waiting, e.g. to see that a retry is scheduled. */
  get pending(): number {
    return this.#timers.length;
  }
  /** When the next timer is due (or undefined). */
  get nextAt(): number | undefined {
    return this.#earliest()?.at;
  }
  #earliest(limit = Infinity): { at: number; seq: number; fn: () => void } | undefined {
    return this.#timers.filter((t) => t.at <= limit).sort((a, b) => a.at - b.at || a.seq - b.seq)[0];
  }
  #fire(t: { at: number; fn: () => void }): void {
    this.#timers = this.#timers.filter((x) => x !== t);
    if (!this.#source) this.#now = Math.max(this.#now, t.at);
    t.fn();
  }
  /** Fires the earliest timer now, whenever it is due (manual time jumps to it). False if none. */
  fireNext(): boolean {
    const t = this.#earliest();
    if (!t) return false;
    this.#fire(t);
    return true;
  }
  /**
   * Manual time only: moves forward by `ms`, firing due timers in order; after each, one
   * macrotask turn lets the work it started schedule more (await the component's own events
   * for slower work).
   */
  async advance(ms: number): Promise<void> {
    if (this.#source) throw new Error('advance() needs a manual clock; this one follows a time source (use fireNext)');
    const end = this.#now + ms;
    for (let t = this.#earliest(end); t; t = this.#earliest(end)) {
      this.#fire(t);
      await new Promise((r) => setImmediate(r));
    }
    this.#now = end;
  }
}
