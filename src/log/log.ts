// Structured logs with pino. One root logger per process; components take a child
// (`logger.child({ component: 'registry' })`). Access logs are ordinary lines with
// `type: "access"`, so they can be filtered without a second stream.
//
// The default destination is stdout, written asynchronously in batches: lines are gathered
// until LOG_BATCH_BYTES are waiting (or LOG_FLUSH_MS have passed) and then written with one
// write. Writing each line on its own cost the proxy about as much CPU as forwarding the
// request (one thread-pool round trip per access-log line; bench/NOTES.md). Envoy buffers its
// access logs the same way. Lines still waiting are written when the process exits.
//
// The batch is gathered here (LineBatch), a line being one string append, and handed to
// pino's destination (sonic-boom) whole. sonic-boom gathering them itself measured the UTF-8
// length of everything waiting at each line (its batch flattened and scanned again per line:
// ~9 us and ~3 KB of garbage per access line at 8 KiB; bench/NOTES.md, issue 17).
import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

/** Bytes of log lines gathered before one write to stdout (below sonic-boom's 16 KiB maxWrite). */
export const LOG_BATCH_BYTES = 8192;
/** Longest a line waits for its batch, in ms. */
export const LOG_FLUSH_MS = 100;

/** Where a batch goes: pino's destination (sonic-boom), or any stream with the same methods. */
export interface BatchTarget {
  write(chunk: string): unknown;
  flush?(cb?: (err?: Error | null) => void): void;
  flushSync?(): void;
}

/**
 * Lines gathered into one string until `batchBytes` characters wait (a line of non-ASCII text
 * counts its characters, not its bytes: the threshold is a batch size, the bytes are the same)
 * or `flushMs` pass, then written to `target` with one write. `flush`/`flushSync` write what
 * waits first, so pino's `logger.flush()` and the exit hooks see every line, in order.
 */
export class LineBatch {
  readonly #target: BatchTarget;
  readonly #batch: number;
  #pending = '';
  readonly #timer: NodeJS.Timeout | undefined;

  constructor(target: BatchTarget, options: { batchBytes?: number; flushMs?: number } = {}) {
    this.#target = target;
    this.#batch = options.batchBytes ?? LOG_BATCH_BYTES;
    const flushMs = options.flushMs ?? LOG_FLUSH_MS;
    if (flushMs > 0) {
      this.#timer = setInterval(() => this.push(), flushMs);
      this.#timer.unref();
    }
  }

  write(line: string): boolean {
    this.#pending += line;
    if (this.#pending.length >= this.#batch) this.push();
    return true;
  }

  /** Hands what waits to the target now. */
  push(): void {
    if (this.#pending.length === 0) return;
    const chunk = this.#pending;
    this.#pending = '';
    this.#target.write(chunk);
  }

  flush(cb?: (err?: Error | null) => void): void {
    this.push();
    if (this.#target.flush) this.#target.flush(cb);
    else cb?.();
  }

  flushSync(): void {
    this.push();
    this.#target.flushSync?.();
  }

  /** Stops the timer (the lines waiting are pushed). */
  close(): void {
    clearInterval(this.#timer);
    this.push();
  }
}

// Lines waiting in a batch go to the destination before pino's own exit hooks flush it
// (prepended: they run first whatever was registered before).
const batches = new Set<LineBatch>();
let hooked = false;
function pushAtExit(batch: LineBatch): void {
  batches.add(batch);
  if (hooked) return;
  hooked = true;
  const pushAll = () => {
    for (const b of batches) b.push();
  };
  process.prependListener('beforeExit', pushAll);
  process.prependListener('exit', pushAll);
}

export function createLogger(options: { level?: LevelWithSilent; name?: string; destination?: NodeJS.WritableStream } = {}): Logger {
  let destination: NodeJS.WritableStream | LineBatch | undefined = options.destination;
  if (destination === undefined) {
    // sonic-boom writes each batch as it comes (one write in flight, the next batch waits);
    // minLength 1 rather than 0 keeps its flush(cb) waiting for the write (a batch is never 1 byte)
    const batch = new LineBatch(pino.destination({ sync: false, minLength: 1 }));
    pushAtExit(batch);
    destination = batch;
  }
  return pino(
    {
      level: options.level ?? 'info',
      base: options.name ? { name: options.name } : { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination as NodeJS.WritableStream,
  );
}
