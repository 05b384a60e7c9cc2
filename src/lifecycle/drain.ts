// The drain (SIGTERM, POST /quitquitquit): stop accepting, close idle connections (now and every
// 100 ms), tell HTTP/2 clients to go away, wait for the work in flight up to the deadline, then
// close everything. Once only: a second call returns the same promise.
import type { Logger } from '../log/log.ts';
import type { Tracker } from './tracker.ts';

export interface DrainSteps {
  readonly tracker: Tracker;
  readonly deadlineMs: number;
  readonly log: Logger;
  /** The listeners stop taking connections. */
  stopAccepting(): void;
  /** Idle keep-alive connections are closed (repeated while the drain lasts). */
  closeIdle(): void;
  /** HTTP/2 clients finish their streams and reconnect elsewhere. */
  goaway(): void;
  /** Closes everything that is left. */
  closeAll(): Promise<void>;
}

export class Drain {
  #draining = false;
  #drained: Promise<void> | undefined;
  readonly #s: DrainSteps;

  constructor(steps: DrainSteps) {
    this.#s = steps;
  }

  get draining(): boolean {
    return this.#draining;
  }

  readonly start = (): Promise<void> => {
    this.#drained ??= this.#run();
    return this.#drained;
  };

  async #run(): Promise<void> {
    const { tracker, log } = this.#s;
    this.#draining = true;
    log.info({ inFlight: tracker.active, deadlineMs: this.#s.deadlineMs }, 'draining: no new connections; waiting for in-flight requests');
    this.#s.stopAccepting();
    const idle = setInterval(() => this.#s.closeIdle(), 100);
    this.#s.closeIdle();
    this.#s.goaway();
    const finished = await tracker.drain(this.#s.deadlineMs);
    clearInterval(idle);
    log.info({ finished, inFlight: tracker.active }, finished ? 'drained' : 'drain deadline reached; closing what is left');
    await this.#s.closeAll();
  }
}
