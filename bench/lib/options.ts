// Command-line options of bench/run.ts, with every default spelled out here once.
import { parseArgs } from 'node:util';
import { BenchError } from './errors.ts';
import type { CaseId } from './results.ts';

export const ALL_CASES: readonly CaseId[] = [
  'direct',
  'nginx-plain',
  'nginx-mtls',
  'tsmesh-plain',
  'tsmesh-mtls',
  'tsmesh-mtls-traced',
  'netns-direct',
  'netns-nginx-mtls',
  'netns-tsmesh-mtls',
  'netns-tsmesh-mtls-traced',
];

export interface Options {
  passes: number;
  /** Requests per second of the fixed-rate run (Istio: 1000). */
  rate: number;
  /** Client connections of the fixed-rate run (Istio: 16). */
  connections: number;
  /** Measured seconds of each fixed-rate run. */
  seconds: number;
  /** Seconds of load before each measured run (not measured: connections, JIT, pools). */
  warmupSeconds: number;
  wrkSeconds: number;
  wrkConnections: number;
  wrkThreads: number;
  cases: CaseId[];
  record: boolean;
  quick: boolean;
  note: string | undefined;
  keepTemp: boolean;
  /** One h2load per connection, started 1/rate apart, instead of one h2load whose connections send in step. */
  spread: boolean;
}

export const HELP = `Usage: npm run bench -- [options]     (or: node bench/run.ts [options], with Node 24)

Measures, side by side in one run, what a proxy pair adds at a fixed 1000 requests/s over 16
connections with 1 KB bodies: direct, nginx pair (plain, mTLS), tsmesh pair (plain, mTLS at the
default trace sampling 0.01, mTLS at 100%), all on loopback addresses; then, as root, the real
topology (pods as network namespaces, iptables, the Service's ClusterIP): direct, nginx pair
mTLS, tsmesh pair mTLS at 0.01 and at 100%. The sidecars export spans to a stand-in OTLP
collector. See docs/benchmark.md.

Options:
  --quick               one short pass (about a minute); not recorded unless --record
  --passes N            passes over all cases (default 2; --quick: 1)
  --duration S          measured seconds of each fixed-rate run (default 15; --quick: 5)
  --warmup S            unmeasured seconds of load before each fixed-rate run (default 2; --quick: 1)
  --rate R              requests per second of the fixed-rate run (default 1000)
  --connections C       connections of the fixed-rate run (default 16)
  --wrk-duration S      seconds of the highest-throughput run (default 8; --quick: 3)
  --wrk-connections C   connections of the highest-throughput run (default 64)
  --wrk-threads T       wrk threads (default 2)
  --cases LIST          comma-separated subset of: ${ALL_CASES.join(', ')}
                        (direct always runs; netns-direct when a netns- case is asked for)
  --record / --no-record  write bench/RESULTS.md and bench/results/ (default: on, off with --quick)
  --note TEXT           a note printed at the top of the recorded section
  --spread              diagnostic: one h2load per connection, started 1/rate apart, so requests
                        arrive evenly instead of in bursts of C (see docs/benchmark.md)
  --keep-temp           keep the temp folder (configs, certificates, logs) at the end
  -h, --help            this text
`;

function positive(name: string, value: string | undefined, fallback: number, { integer = false } = {}): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) {
    throw new BenchError('BENCH_USAGE', `--${name} must be a positive ${integer ? 'integer' : 'number'}, got "${value}"`);
  }
  return n;
}

/** Parses argv; returns undefined for --help. Throws BenchError naming the bad option. */
export function parseOptions(argv: string[]): Options | undefined {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        quick: { type: 'boolean' },
        passes: { type: 'string' },
        duration: { type: 'string' },
        warmup: { type: 'string' },
        rate: { type: 'string' },
        connections: { type: 'string' },
        'wrk-duration': { type: 'string' },
        'wrk-connections': { type: 'string' },
        'wrk-threads': { type: 'string' },
        cases: { type: 'string' },
        record: { type: 'boolean' },
        'no-record': { type: 'boolean' },
        note: { type: 'string' },
        'keep-temp': { type: 'boolean' },
        spread: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    });
  } catch (err) {
    throw new BenchError('BENCH_USAGE', (err as Error).message);
  }
  const v = parsed.values;
  if (v.help) return undefined;
  const quick = v.quick ?? false;
  let cases: CaseId[] = [...ALL_CASES];
  if (v.cases !== undefined) {
    const asked = v.cases.split(',').map((c) => c.trim()).filter(Boolean);
    const bad = asked.filter((c) => !(ALL_CASES as readonly string[]).includes(c));
    if (bad.length > 0) throw new BenchError('BENCH_USAGE', `--cases: unknown case ${bad.map((b) => `"${b}"`).join(', ')} (use ${ALL_CASES.join(', ')})`);
    const netns = asked.some((c) => c.startsWith('netns-'));
    cases = ALL_CASES.filter((c) => c === 'direct' || (c === 'netns-direct' && netns) || asked.includes(c));
  }
  if (v.record && v['no-record']) throw new BenchError('BENCH_USAGE', '--record and --no-record contradict each other');
  const rate = positive('rate', v.rate, 1000);
  const connections = positive('connections', v.connections, 16, { integer: true });
  return {
    quick,
    passes: positive('passes', v.passes, quick ? 1 : 2, { integer: true }),
    seconds: positive('duration', v.duration, quick ? 5 : 15, { integer: true }),
    warmupSeconds: positive('warmup', v.warmup, quick ? 1 : 2, { integer: true }),
    rate,
    connections,
    wrkSeconds: positive('wrk-duration', v['wrk-duration'], quick ? 3 : 8, { integer: true }),
    wrkConnections: positive('wrk-connections', v['wrk-connections'], 64, { integer: true }),
    wrkThreads: positive('wrk-threads', v['wrk-threads'], 2, { integer: true }),
    cases,
    record: v.record ?? (v['no-record'] ? false : !quick),
    note: v.note,
    keepTemp: v['keep-temp'] ?? false,
    spread: v.spread ?? false,
  };
}
