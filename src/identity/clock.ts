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

/** A clock that moves only when told to (tests). */
export class ManualClock implements Clock {
  #now: number;
  #timers: { at: number; seq: number; fn: () => void }[] = [];
  #seq = 0;
  constructor(start = Date.now()) {
    this.#now = start;
  }
  now(): number {
    return this.#now;
  }
  setTimer(fn: () => void, ms: number): Timer {
    const t = { at: this.#now + Math.max(0, ms), seq: this.#seq++, fn };
    this.#timers.push(t);
    return { cancel: () => void (this.#timers = this.#timers.filter((x) => x !== t)) };
  }
  /** Timers waiting, e.g. to see that a retry is scheduled. */
  get pending(): number {
    return this.#timers.length;
  }
  /** When the next timer fires (or undefined). */
  get nextAt(): number | undefined {
    return this.#timers.length ? Math.min(...this.#timers.map((t) => t.at)) : undefined;
  }
  /**
   * Moves time forward by `ms`, firing due timers in order; after each, lets pending promise
   * work settle (I/O included, with a macrotask turn) so async work it started can schedule the next.
   */
  async advance(ms: number): Promise<void> {
    const end = this.#now + ms;
    for (;;) {
      const due = this.#timers.filter((t) => t.at <= end).sort((a, b) => a.at - b.at || a.seq - b.seq)[0];
      if (!due) break;
      this.#timers = this.#timers.filter((t) => t !== due);
      this.#now = Math.max(this.#now, due.at);
      due.fn();
      await new Promise((r) => setImmediate(r));
    }
    this.#now = end;
  }
}
