// Structured logs with pino. One root logger per process; components take a child
// (`logger.child({ component: 'registry' })`). Access logs are ordinary lines with
// `type: "access"`, so they can be filtered without a second stream.
//
// The default destination is stdout, written asynchronously in batches: lines are gathered
// until LOG_BATCH_BYTES are waiting (or LOG_FLUSH_MS have passed) and then written with one
// write. Writing each line on its own cost the proxy about as much CPU as forwarding the
// request (one thread-pool round trip per access-log line; bench/NOTES.md). Envoy buffers its
// access logs the same way. Lines still waiting are written when the process exits.
import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

/** Bytes of log lines gathered before one write to stdout (pino's destination; below its 16 KiB maxWrite). */
export const LOG_BATCH_BYTES = 8192;
/** Longest a line waits for its batch, in ms. */
export const LOG_FLUSH_MS = 100;

export function createLogger(options: { level?: LevelWithSilent; name?: string; destination?: NodeJS.WritableStream } = {}): Logger {
  return pino(
    {
      level: options.level ?? 'info',
      base: options.name ? { name: options.name } : { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    options.destination ?? pino.destination({ sync: false, minLength: LOG_BATCH_BYTES, periodicFlush: LOG_FLUSH_MS }),
  );
}
