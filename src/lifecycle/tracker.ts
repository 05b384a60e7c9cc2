// Counts the work in flight (HTTP exchanges and TCP connections) so a drain can wait for it,
// and so a cap on it can refuse more (503 overloaded) before one caller exhausts the proxy.
export class Tracker {
  #active = 0;
  readonly #max: number;

  constructor(maxActive = Infinity) {
    this.#max = maxActive;
  }

  /** At the cap: new work is refused. */
  get full(): boolean {
    return this.#active >= this.#max;
  }

  #draining = false;
  #waiters: (() => void)[] = [];

  get active(): number {
    return this.#active;
  }
  get draining(): boolean {
    return this.#draining;
  }

  begin(): void {
    this.#active++;
  }

  end(): void {
    this.#active--;
    if (this.#active <= 0 && this.#waiters.length) {
      for (const w of this.#waiters.splice(0)) w();
    }
  }

  /** Marks the drain started; resolves true when nothing is in flight, false at the deadline. */
  drain(deadlineMs: number): Promise<boolean> {
    this.#draining = true;
    if (this.#active <= 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), deadlineMs);
      this.#waiters.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }
}
