// Native memory back to the system after a burst. After hundreds of connections close (TLS
// state, socket buffers), V8's heap and external memory shrink back, but glibc's malloc keeps
// the freed pages in its arenas: the sidecar's RSS stayed 40-65% above its level before a
// slow-reader burst (bench/soak/RESULTS.md), and one malloc_trim(0) brought it back. So a
// timer looks at RSS now and then and, when it is `growthBytes` above the lowest it has been
// (at start or after a trim), asks glibc to return what it no longer uses: after a burst RSS
// goes back down; under a heavy load the trim repeats every interval, a few milliseconds each.
// Where malloc_trim does not exist (musl, not Linux, no koffi) nothing happens. Like
// SO_ORIGINAL_DST (src/origdst/), a call into libc through koffi.
import { createRequire } from 'node:module';
import type { Logger } from '../log/log.ts';

interface Koffi {
  load(path: string | null): { func(signature: string): unknown };
}

/** glibc's malloc_trim(0), bound once; null where it does not exist. */
export function mallocTrim(): (() => number) | null {
  if (process.platform !== 'linux') return null;
  try {
    const koffi = createRequire(import.meta.url)('koffi') as Koffi;
    const trim = koffi.load(null).func('int malloc_trim(size_t pad)') as (pad: number) => number;
    return () => trim(0);
  } catch {
    return null; // musl has no malloc_trim
  }
}

export interface MemoryTrimOptions {
  readonly log: Logger;
  /** how often RSS is looked at (default 30 s) */
  readonly intervalMs?: number;
  /** RSS above its lowest that makes a trim (default 32 MiB) */
  readonly growthBytes?: number;
  /** the trim (default: glibc's malloc_trim) and the RSS reading, for tests */
  readonly trim?: (() => number) | null;
  readonly rss?: () => number;
}

/** Starts the timer (unref'd); stop() ends it. */
export function startMemoryTrim(options: MemoryTrimOptions): { stop(): void } {
  const trim = options.trim === undefined ? mallocTrim() : options.trim;
  if (!trim) return { stop() {} };
  const rss = options.rss ?? (() => process.memoryUsage.rss());
  const growth = options.growthBytes ?? 32 * 1024 * 1024;
  let floor = rss();
  const timer = setInterval(() => {
    const before = rss();
    if (before < floor + growth) return;
    trim();
    const after = rss();
    floor = Math.min(floor, after);
    options.log.debug({ rssBeforeMiB: Math.round(before / 1048576), rssAfterMiB: Math.round(after / 1048576) }, 'returned free native memory to the system (malloc_trim)');
  }, options.intervalMs ?? 30_000);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
