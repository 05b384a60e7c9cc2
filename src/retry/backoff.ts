// Exponential backoff with full jitter: the n-th retry waits a random time in
// [0, min(max, base * 2^(n-1))], so retries of many clients do not arrive in step.
export function backoffMs(retry: number, options: { baseMs?: number; maxMs?: number; random?: () => number } = {}): number {
  const base = options.baseMs ?? 25;
  const max = options.maxMs ?? 250;
  const ceiling = Math.min(max, base * 2 ** Math.max(0, retry - 1));
  return Math.floor((options.random ?? Math.random)() * ceiling);
}
