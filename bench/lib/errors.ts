// Errors of the benchmark script. Each carries a stable code; the message names what failed
// and, where it helps, what to do about it.
export type BenchErrorCode =
  | 'BENCH_USAGE'
  | 'BENCH_TOOL_MISSING'
  | 'BENCH_SPAWN'
  | 'BENCH_PORT_BUSY'
  | 'BENCH_EXITED'
  | 'BENCH_NOT_LISTENING'
  | 'BENCH_PROBE'
  | 'BENCH_LOAD'
  | 'BENCH_CERTS'
  | 'BENCH_NETNS'
  | 'BENCH_INTERRUPTED';

export class BenchError extends Error {
  override readonly name = 'BenchError';
  readonly code: BenchErrorCode;
  constructor(code: BenchErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}
