// Presenting a run: the table on the terminal, the Markdown section of bench/RESULTS.md
// (newest run first, older runs kept below) and the latency-by-percentile chart as plain SVG.
import { readFile, writeFile } from 'node:fs/promises';
import { percentile } from './stats.ts';
import { CASE_LABELS, type CaseId, type CaseSummary, type Measurement, type Ratio, type Goal, type GoalSet, baselineOf, baselineCase, isDirect } from './results.ts';

const ms = (v: number): string => (Number.isFinite(v) ? (Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2)) : '-');
const num = (v: number, digits: number): string => (Number.isFinite(v) ? v.toFixed(digits) : '-');
const int = (v: number): string => (Number.isFinite(v) ? String(Math.round(v)) : '-');
const x = (v: number): string => (Number.isFinite(v) ? `${v.toFixed(2)}x` : 'n/a');

const HEADER = ['case', 'p50 ms', 'p90 ms', 'p99 ms', 'added p50', 'added p90', 'added p99', 'CPU s/1000 req', 'RSS MiB', 'peak RSS MiB', 'highest req/s'];

function rows(summaries: readonly CaseSummary[]): string[][] {
  return summaries.map((s) => {
    const label = CASE_LABELS[s.caseId];
    if (s.status === 'not-available') return [label, `not available yet: ${s.reasons.join('; ')}`];
    if (s.status === 'failed') return [label, `FAILED: ${s.reasons.join('; ')}`];
    const pair = !isDirect(s.caseId);
    return [
      label,
      ms(s.latencyMs.p50),
      ms(s.latencyMs.p90),
      ms(s.latencyMs.p99),
      pair ? ms(s.addedMs.p50) : '',
      pair ? ms(s.addedMs.p90) : '',
      pair ? ms(s.addedMs.p99) : '',
      pair ? num(s.cpuPer1000, 3) : '',
      pair ? num(s.rssMiB, 1) : '',
      pair ? num(s.hwmMiB, 1) : '',
      int(s.maxRps),
    ];
  });
}

/** The summary as aligned text for the terminal. */
export function textTable(summaries: readonly CaseSummary[]): string {
  const body = rows(summaries);
  const widths = HEADER.map((h, i) => Math.max(h.length, ...body.filter((r) => r.length === HEADER.length).map((r) => r[i].length)));
  const line = (r: string[]) => (r.length === HEADER.length ? r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ') : `${r[0].padEnd(widths[0])}  ${r[1]}`);
  return [line(HEADER), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}

function mdTable(header: string[], body: string[][]): string {
  const cell = (c: string) => c.replace(/\|/g, '\\|');
  const out = [`| ${header.join(' | ')} |`, `|${header.map((_, i) => (i === 0 ? ' --- ' : ' ---: ')).join('|')}|`];
  for (const r of body) {
    const full = r.length >= header.length ? r : [...r, ...Array<string>(header.length - r.length).fill('')];
    out.push(`| ${full.map(cell).join(' | ')} |`);
  }
  return out.join('\n');
}

export function markdownTable(summaries: readonly CaseSummary[]): string {
  return mdTable(HEADER, rows(summaries));
}

/** The goal lines of each set: a heading, then what, the value, the limit, met or missed. */
export function goalSetLines(sets: readonly GoalSet[]): string[] {
  return sets.flatMap((set) => [`Issue 17 goals, ${set.label}:`, ...goalLines(set.goals).map((l) => `  - ${l}`)]);
}

/** The goal lines: what, the value, the limit, met or missed. */
export function goalLines(list: readonly Goal[]): string[] {
  const v = (g: Goal, n: number) => (g.unit === 'x' ? x(n) : `${n.toFixed(1)} MiB`);
  return list.map((g) => `${g.met ? 'met' : 'MISSED'}: ${g.what} ${v(g, g.limit)}: ${v(g, g.value)}${g.detail ? ` (${g.detail})` : ''}`);
}

export function ratioLines(list: readonly Ratio[]): string[] {
  return list.map((r) => `tsmesh/nginx, ${r.label}: ${r.values.map((v) => `${v.name} ${x(v.ratio)}`).join(', ')}`);
}

/** Every pass's own figures, so drift and outliers are visible behind the medians. */
export function perPassTable(all: readonly Measurement[]): string {
  const header = ['pass', 'case', 'requests', 'req/s sent', 'p50 ms', 'p90 ms', 'p99 ms', 'p99.9 ms', 'added p50', 'added p90', 'added p99', 'CPU s', 'CPU s/1000 req', 'idle RSS MiB', 'RSS MiB', 'peak RSS MiB', 'highest req/s', 'errors'];
  const body = all.map((m) => {
    const name = isDirect(m.caseId) ? `${m.caseId} (${m.position})` : m.caseId;
    if (m.status !== 'ok' || !m.latencyMs) return [String(m.pass), name, `${m.status}: ${m.reason ?? ''}`];
    const base = baselineOf(all, m.pass, baselineCase(m.caseId));
    const added = (q: 'p50' | 'p90' | 'p99') => (isDirect(m.caseId) || !base ? '' : ms(m.latencyMs![q] - base[q]));
    return [
      String(m.pass),
      name,
      String(m.requests ?? ''),
      int(m.achievedRps ?? NaN),
      ms(m.latencyMs.p50),
      ms(m.latencyMs.p90),
      ms(m.latencyMs.p99),
      ms(m.latencyMs.p999),
      added('p50'),
      added('p90'),
      added('p99'),
      m.cpuSeconds === undefined ? '' : num(m.cpuSeconds, 2),
      m.cpuPer1000 === undefined ? '' : num(m.cpuPer1000, 3),
      m.idleRssMiB === undefined ? '' : num(m.idleRssMiB, 1),
      m.rssMiB === undefined ? '' : num(m.rssMiB, 1),
      m.hwmMiB === undefined ? '' : num(m.hwmMiB, 1),
      m.maxRps === undefined ? '' : int(m.maxRps),
      String(m.errors ?? 0),
    ];
  });
  return mdTable(header, body);
}

const MARKER = '<!-- runs: newest first. bench/run.ts inserts each recorded run below this line. -->';

const PREAMBLE = `# Benchmark results

Recorded by \`npm run bench\` (bench/run.ts); how to run it and what each column means:
[docs/benchmark.md](../docs/benchmark.md). Each run is a section, the newest first; older runs
stay below. The newest latency chart is always [results/latency.svg](results/latency.svg); each
run also links its own copy.

${MARKER}
`;

/** Inserts `section` as the newest run of RESULTS.md (creating the file if needed). */
export async function recordRun(file: string, section: string): Promise<void> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    text = PREAMBLE;
  }
  const at = text.indexOf(MARKER);
  const next = at < 0 ? `${text.trimEnd()}\n\n${MARKER}\n\n${section}\n` : `${text.slice(0, at + MARKER.length)}\n\n${section.trimEnd()}\n${text.slice(at + MARKER.length)}`;
  await writeFile(file, next.replace(/\n{3,}/g, '\n\n'));
}

// ---- the chart ----

const COLORS: Record<CaseId, string> = {
  direct: '#6b6b6b',
  'nginx-plain': '#3182bd',
  'nginx-mtls': '#08306b',
  'tsmesh-plain': '#fd8d3c',
  'tsmesh-mtls': '#a63603',
  'tsmesh-mtls-traced': '#e6550d',
  'netns-direct': '#bdbdbd',
  'netns-nginx-mtls': '#6baed6',
  'netns-tsmesh-mtls': '#7f2704',
  'netns-tsmesh-mtls-traced': '#fdae6b',
};

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

function niceStep(range: number, ticks: number): number {
  const raw = range / ticks;
  const pow = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * pow >= raw) return m * pow;
  return 10 * pow;
}

/**
 * Latency by percentile, one line per configuration (all its passes pooled), on a "nines"
 * axis (p50, p90, p99, p99.9 equally spaced), the usual way to show a latency distribution.
 */
export function latencySvg(series: readonly { caseId: CaseId; sortedMs: Float64Array }[], title: string, subtitle: string): string {
  // The legend is a column on the right, 40 px a series, wide enough for the netns labels.
  const W = 1000;
  const H = Math.max(500, 64 + 40 * series.length + 40);
  const m = { left: 70, right: 330, top: 64, bottom: 56 };
  const pw = W - m.left - m.right;
  const ph = H - m.top - m.bottom;
  const maxNines = 3; // up to p99.9
  const present = series.filter((s) => s.sortedMs.length > 0);
  const top = Math.max(0.1, ...present.map((s) => percentile(s.sortedMs, 0.999)));
  const step = niceStep(top, 6);
  const yMax = Math.ceil((top * 1.05) / step) * step;
  const px = (nines: number) => m.left + (nines / maxNines) * pw;
  const py = (v: number) => m.top + ph - (Math.min(v, yMax) / yMax) * ph;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`);
  out.push(`<text x="${m.left}" y="24" font-size="16" font-weight="bold">${esc(title)}</text>`);
  out.push(`<text x="${m.left}" y="44" fill="#444">${esc(subtitle)}</text>`);
  for (let v = 0; v <= yMax + 1e-9; v += step) {
    out.push(`<line x1="${m.left}" x2="${m.left + pw}" y1="${py(v).toFixed(1)}" y2="${py(v).toFixed(1)}" stroke="#e3e3e3"/>`);
    out.push(`<text x="${m.left - 8}" y="${(py(v) + 4).toFixed(1)}" text-anchor="end">${+v.toFixed(3)}</text>`);
  }
  const xTicks: [number, string][] = [
    [0, 'p0'],
    [Math.log10(2), 'p50'],
    [Math.log10(4), 'p75'],
    [1, 'p90'],
    [2, 'p99'],
    [3, 'p99.9'],
  ];
  for (const [n, label] of xTicks) {
    out.push(`<line x1="${px(n).toFixed(1)}" x2="${px(n).toFixed(1)}" y1="${m.top}" y2="${m.top + ph}" stroke="#e3e3e3"/>`);
    out.push(`<text x="${px(n).toFixed(1)}" y="${m.top + ph + 18}" text-anchor="middle">${label}</text>`);
  }
  out.push(`<rect x="${m.left}" y="${m.top}" width="${pw}" height="${ph}" fill="none" stroke="#999"/>`);
  out.push(`<text x="${m.left + pw / 2}" y="${H - 12}" text-anchor="middle">percentile</text>`);
  out.push(`<text transform="translate(18 ${m.top + ph / 2}) rotate(-90)" text-anchor="middle">latency (ms)</text>`);
  present.forEach((s, i) => {
    const points: string[] = [];
    const steps = 300;
    for (let k = 0; k <= steps; k++) {
      const nines = (k / steps) * maxNines;
      const q = 1 - 10 ** -nines;
      const v = q <= 0 ? s.sortedMs[0] : percentile(s.sortedMs, q);
      points.push(`${px(nines).toFixed(1)},${py(v).toFixed(1)}`);
    }
    const color = COLORS[s.caseId];
    out.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${points.join(' ')}"/>`);
    const ly = m.top + 10 + i * 40;
    const lx = m.left + pw + 16;
    out.push(`<line x1="${lx}" x2="${lx + 22}" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="3"/>`);
    out.push(`<text x="${lx + 28}" y="${ly + 4}">${esc(CASE_LABELS[s.caseId])}</text>`);
    const p = (q: number) => percentile(s.sortedMs, q).toFixed(2);
    out.push(`<text x="${lx + 28}" y="${ly + 20}" fill="#555" font-size="11">p50 ${p(0.5)}  p99 ${p(0.99)} ms (n=${s.sortedMs.length})</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
