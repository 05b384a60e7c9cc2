// The measurements of one run and how they are summarised: the latency a pair adds is the
// case's percentile minus the direct run's percentile in the same pass (the mean of the direct
// runs at the start and at the end of that pass); each figure is then the median over passes.
import { median, percentile } from './stats.ts';

export type CaseId =
  | 'direct'
  | 'nginx-plain'
  | 'nginx-mtls'
  | 'tsmesh-plain'
  | 'tsmesh-mtls'
  | 'tsmesh-mtls-traced'
  | 'netns-direct'
  | 'netns-nginx-mtls'
  | 'netns-tsmesh-mtls'
  | 'netns-tsmesh-mtls-traced';

export const CASE_LABELS: Record<CaseId, string> = {
  direct: 'direct (no proxy)',
  'nginx-plain': 'nginx pair, plain',
  'nginx-mtls': 'nginx pair, mTLS between the two',
  'tsmesh-plain': 'tsmesh pair, plain',
  'tsmesh-mtls': 'tsmesh pair, mTLS between the two',
  'tsmesh-mtls-traced': 'tsmesh pair, mTLS, tracing at 100%',
  'netns-direct': 'netns: direct to the ClusterIP (no proxy)',
  'netns-nginx-mtls': 'netns: nginx pair, mTLS',
  'netns-tsmesh-mtls': 'netns: tsmesh pair, mTLS, ClusterIP via iptables',
  'netns-tsmesh-mtls-traced': 'netns: tsmesh pair, mTLS, tracing at 100%',
};

/** The cases with no proxy: the baselines "added" latency is measured against. */
export const isDirect = (id: CaseId): boolean => id === 'direct' || id === 'netns-direct';

/** The direct case of `id`'s topology (loopback addresses, or pods as network namespaces). */
export const baselineCase = (id: CaseId): CaseId => (id.startsWith('netns-') ? 'netns-direct' : 'direct');

export const QUANTILES = { p50: 0.5, p90: 0.9, p99: 0.99, p999: 0.999 } as const;
export type Quantile = keyof typeof QUANTILES;

export type Status = 'ok' | 'failed' | 'not-available';

/** One case in one pass. Latencies in milliseconds, memory in MiB. */
export interface Measurement {
  caseId: CaseId;
  pass: number;
  /** For direct: the run at the start or at the end of the pass. */
  position?: 'start' | 'end';
  status: Status;
  reason?: string;
  latencyMs?: Record<Quantile | 'max', number>;
  requests?: number;
  achievedRps?: number;
  errors?: number;
  /** CPU seconds (user + system) of the pair's processes over the fixed-rate window. */
  cpuSeconds?: number;
  cpuPer1000?: number;
  /** RSS right after the pair started and answered one request, before any load. */
  idleRssMiB?: number;
  rssMiB?: number;
  hwmMiB?: number;
  processes?: number;
  /** One proxy of the pair (the larger): RSS idle, RSS and RssAnon at the end of the fixed-rate run. */
  proxyIdleRssMiB?: number;
  proxyRssMiB?: number;
  proxyAnonMiB?: number;
  maxRps?: number;
  /** tsmesh only: the mtls label the server-side sidecar's metrics report. */
  observedMtls?: string;
  warnings: string[];
  /** Every duration (ms, ascending): for the chart; not written to JSON. */
  durationsMs?: Float64Array;
}

export function latencyOf(sortedMs: Float64Array): Record<Quantile | 'max', number> {
  return {
    p50: percentile(sortedMs, QUANTILES.p50),
    p90: percentile(sortedMs, QUANTILES.p90),
    p99: percentile(sortedMs, QUANTILES.p99),
    p999: percentile(sortedMs, QUANTILES.p999),
    max: sortedMs.length ? sortedMs[sortedMs.length - 1] : NaN,
  };
}

export interface CaseSummary {
  caseId: CaseId;
  status: Status;
  reasons: string[];
  passes: number;
  latencyMs: Record<Quantile, number>;
  addedMs: Record<Quantile, number>;
  cpuPer1000: number;
  rssMiB: number;
  hwmMiB: number;
  processes: number;
  proxyIdleRssMiB: number;
  proxyRssMiB: number;
  proxyAnonMiB: number;
  maxRps: number;
  achievedRps: number;
  errors: number;
  observedMtls?: string;
}

const NAN_Q = (): Record<Quantile, number> => ({ p50: NaN, p90: NaN, p99: NaN, p999: NaN });

/** The direct baseline of a pass: the mean of its start and end runs (whichever succeeded). */
export function baselineOf(all: readonly Measurement[], pass: number, direct: CaseId = 'direct'): Record<Quantile, number> | undefined {
  const runs = all.filter((m) => m.caseId === direct && m.pass === pass && m.status === 'ok' && m.latencyMs);
  if (runs.length === 0) return undefined;
  const out = NAN_Q();
  for (const q of Object.keys(QUANTILES) as Quantile[]) out[q] = runs.reduce((s, m) => s + m.latencyMs![q], 0) / runs.length;
  return out;
}

export function summarize(all: readonly Measurement[], caseId: CaseId): CaseSummary {
  const runs = all.filter((m) => m.caseId === caseId);
  const ok = runs.filter((m) => m.status === 'ok');
  const status: Status = runs.some((m) => m.status === 'failed') ? 'failed' : ok.length > 0 ? 'ok' : 'not-available';
  const reasons = [...new Set(runs.filter((m) => m.reason).map((m) => m.reason!))];
  const med = (f: (m: Measurement) => number | undefined) => median(ok.map((m) => f(m) ?? NaN));
  const latencyMs = NAN_Q();
  const addedMs = NAN_Q();
  for (const q of Object.keys(QUANTILES) as Quantile[]) {
    latencyMs[q] = med((m) => m.latencyMs?.[q]);
    if (!isDirect(caseId)) addedMs[q] = med((m) => (m.latencyMs ? m.latencyMs[q] - (baselineOf(all, m.pass, baselineCase(caseId))?.[q] ?? NaN) : NaN));
  }
  return {
    caseId,
    status,
    reasons,
    passes: ok.length,
    latencyMs,
    addedMs,
    cpuPer1000: med((m) => m.cpuPer1000),
    rssMiB: med((m) => m.rssMiB),
    hwmMiB: med((m) => m.hwmMiB),
    processes: med((m) => m.processes),
    proxyIdleRssMiB: med((m) => m.proxyIdleRssMiB),
    proxyRssMiB: med((m) => m.proxyRssMiB),
    proxyAnonMiB: med((m) => m.proxyAnonMiB),
    maxRps: med((m) => m.maxRps),
    achievedRps: med((m) => m.achievedRps),
    errors: runs.reduce((s, m) => s + (m.errors ?? 0), 0),
    observedMtls: [...new Set(ok.map((m) => m.observedMtls).filter(Boolean))].join('+') || undefined,
  };
}

export interface Ratio {
  label: string;
  tsmesh: CaseId;
  nginx: CaseId;
  values: { name: string; ratio: number }[];
}

/** tsmesh / nginx for each figure, plain against plain and mTLS against mTLS. */
export function ratios(summaries: readonly CaseSummary[]): Ratio[] {
  const by = new Map(summaries.map((s) => [s.caseId, s]));
  const pairs: [string, CaseId, CaseId][] = [
    ['plain', 'tsmesh-plain', 'nginx-plain'],
    ['mTLS (tracing at the default sampling, 0.01)', 'tsmesh-mtls', 'nginx-mtls'],
    ['mTLS, tracing at 100%', 'tsmesh-mtls-traced', 'nginx-mtls'],
    ['netns topology, mTLS (sampling 0.01)', 'netns-tsmesh-mtls', 'netns-nginx-mtls'],
    ['netns topology, mTLS, tracing at 100%', 'netns-tsmesh-mtls-traced', 'netns-nginx-mtls'],
  ];
  const out: Ratio[] = [];
  for (const [label, t, n] of pairs) {
    const a = by.get(t);
    const b = by.get(n);
    if (!a || !b || a.status !== 'ok' || b.status !== 'ok') continue;
    // A ratio of an added latency that came out at or below zero (noise in a cheap pair) means nothing: n/a.
    const r = (x: number, y: number) => (x > 0 && y > 0 ? x / y : NaN);
    out.push({
      label,
      tsmesh: t,
      nginx: n,
      values: [
        { name: 'added p50', ratio: r(a.addedMs.p50, b.addedMs.p50) },
        { name: 'added p90', ratio: r(a.addedMs.p90, b.addedMs.p90) },
        { name: 'added p99', ratio: r(a.addedMs.p99, b.addedMs.p99) },
        { name: 'CPU per 1000 req', ratio: r(a.cpuPer1000, b.cpuPer1000) },
        { name: 'RSS', ratio: r(a.rssMiB, b.rssMiB) },
        { name: 'highest req/s', ratio: r(a.maxRps, b.maxRps) },
      ],
    });
  }
  return out;
}

export interface Goal {
  readonly what: string;
  readonly value: number;
  readonly limit: number;
  readonly met: boolean;
  /** How the value is written (a ratio "1.23x" or MiB). */
  readonly unit: 'x' | 'MiB';
  readonly detail?: string;
}

/** One set of goal lines: a tsmesh mTLS case against its nginx counterpart, in one topology. */
export interface GoalSet {
  readonly label: string;
  readonly goals: Goal[];
}

/**
 * Issue 17's goals for the full pipeline (mTLS, tracing, metrics, access logs): tsmesh's mTLS
 * pair against nginx's and one tsmesh sidecar's memory, in each topology that ran, at the
 * default sampling and at 100%. A set is left out when its cases did not both run.
 */
export function goals(summaries: readonly CaseSummary[]): GoalSet[] {
  const by = new Map(summaries.map((s) => [s.caseId, s]));
  const sets: [string, CaseId, CaseId][] = [
    ['loopback, tracing at the default sampling (0.01)', 'tsmesh-mtls', 'nginx-mtls'],
    ['loopback, tracing at 100%', 'tsmesh-mtls-traced', 'nginx-mtls'],
    ['pods as network namespaces, iptables, ClusterIP; sampling 0.01', 'netns-tsmesh-mtls', 'netns-nginx-mtls'],
    ['pods as network namespaces, iptables, ClusterIP; tracing at 100%', 'netns-tsmesh-mtls-traced', 'netns-nginx-mtls'],
  ];
  const r = (x: number, y: number) => (x > 0 && y > 0 ? x / y : NaN);
  const at = (what: string, value: number, limit: number, unit: 'x' | 'MiB', atMost: boolean, detail?: string): Goal => ({
    what,
    value,
    limit,
    unit,
    met: Number.isFinite(value) && (atMost ? value <= limit : value >= limit),
    ...(detail ? { detail } : {}),
  });
  const out: GoalSet[] = [];
  for (const [label, tId, nId] of sets) {
    const t = by.get(tId);
    const n = by.get(nId);
    if (!t || !n || t.status !== 'ok' || n.status !== 'ok') continue;
    out.push({
      label,
      goals: [
        at('CPU per 1000 req, tsmesh/nginx at most', r(t.cpuPer1000, n.cpuPer1000), 3, 'x', true),
        at('added p50, tsmesh/nginx at most', r(t.addedMs.p50, n.addedMs.p50), 2, 'x', true),
        at('added p99, tsmesh/nginx at most', r(t.addedMs.p99, n.addedMs.p99), 3, 'x', true),
        at('highest req/s, tsmesh/nginx at least', r(t.maxRps, n.maxRps), 1, 'x', false),
        at('RSS of one sidecar under load at most', t.proxyRssMiB, 80, 'MiB', true),
        at('RssAnon of one sidecar under load at most', t.proxyAnonMiB, 35, 'MiB', true),
        at('RSS of one sidecar idle at most', t.proxyIdleRssMiB, 62, 'MiB', true),
      ],
    });
  }
  return out;
}
