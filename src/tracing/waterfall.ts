// The terminal waterfall of a trace: one line per span, in call order (a child under its
// parent, siblings by start time), with its service, name, start offset from the trace's
// first span, duration and a bar on a shared time axis. Spans from several sidecars are
// merged by their ids; a span whose parent is not among them starts a tree of its own.
import type { FinishedSpan } from './recorder.ts';

export interface WaterfallOptions {
  /** Bar width in characters (default 40). */
  readonly width?: number;
  /** ANSI colours: errors red, bars by service (default false). */
  readonly color?: boolean;
}

interface Row {
  readonly span: FinishedSpan;
  readonly depth: number;
}

const ms = (us: number) => `${(us / 1000).toFixed(3)} ms`;
const COLORS = ['\x1b[36m', '\x1b[33m', '\x1b[35m', '\x1b[32m', '\x1b[34m'];
const RED = '\x1b[31m';
const RESET = '\x1b[0m';

/** Renders every trace in `spans` (one block per trace id, in order of first start). */
export function renderWaterfall(spans: readonly FinishedSpan[], options: WaterfallOptions = {}): string {
  const byTrace = new Map<string, FinishedSpan[]>();
  for (const s of spans) {
    let list = byTrace.get(s.traceId);
    if (!list) byTrace.set(s.traceId, (list = []));
    list.push(s);
  }
  const traces = [...byTrace.values()].sort((a, b) => Math.min(...a.map((s) => s.startUs)) - Math.min(...b.map((s) => s.startUs)));
  return traces.map((t) => renderTrace(t, options)).join('\n');
}

function order(spans: readonly FinishedSpan[]): Row[] {
  const ids = new Set(spans.map((s) => s.spanId));
  const children = new Map<string | undefined, FinishedSpan[]>();
  for (const s of spans) {
    const parent = s.parentSpanId !== undefined && ids.has(s.parentSpanId) && s.parentSpanId !== s.spanId ? s.parentSpanId : undefined;
    let list = children.get(parent);
    if (!list) children.set(parent, (list = []));
    list.push(s);
  }
  for (const list of children.values()) list.sort((a, b) => a.startUs - b.startUs || a.spanId.localeCompare(b.spanId));
  const rows: Row[] = [];
  const seen = new Set<string>();
  const walk = (parent: string | undefined, depth: number) => {
    for (const s of children.get(parent) ?? []) {
      if (seen.has(s.spanId)) continue; // a cycle in bad input
      seen.add(s.spanId);
      rows.push({ span: s, depth });
      walk(s.spanId, depth + 1);
    }
  };
  walk(undefined, 0);
  // Spans caught in a parent cycle have no root: show them at the top level.
  for (const s of spans) if (!seen.has(s.spanId)) rows.push({ span: s, depth: 0 });
  return rows;
}

function renderTrace(spans: readonly FinishedSpan[], options: WaterfallOptions): string {
  const width = Math.max(10, Math.floor(options.width ?? 40));
  const color = options.color ?? false;
  const rows = order(spans);
  const t0 = Math.min(...spans.map((s) => s.startUs));
  const t1 = Math.max(...spans.map((s) => s.startUs + s.durationUs));
  const total = Math.max(1, t1 - t0);

  const services = [...new Set(rows.map((r) => r.span.service))];
  const label = (r: Row) => `${'  '.repeat(r.depth)}${r.span.name}`;
  const serviceW = Math.max('service'.length, ...services.map((s) => s.length));
  const nameW = Math.max('span'.length, ...rows.map((r) => label(r).length));
  const startCol = rows.map((r) => ms(r.span.startUs - t0));
  const durCol = rows.map((r) => ms(r.span.durationUs));
  const startW = Math.max('start'.length, ...startCol.map((s) => s.length));
  const durW = Math.max('duration'.length, ...durCol.map((s) => s.length));

  const lines = [
    `trace ${spans[0]!.traceId}  ${ms(total)}  ${spans.length} span${spans.length === 1 ? '' : 's'}`,
    `${'service'.padEnd(serviceW)}  ${'span'.padEnd(nameW)}  ${'start'.padStart(startW)}  ${'duration'.padStart(durW)}`,
  ];
  rows.forEach((r, i) => {
    const s = r.span;
    const from = Math.min(width - 1, Math.floor(((s.startUs - t0) / total) * width));
    const len = Math.max(1, Math.min(width - from, Math.round((s.durationUs / total) * width)));
    let bar = '█'.repeat(len);
    const err = s.status === 'error';
    if (color) bar = `${err ? RED : COLORS[services.indexOf(s.service) % COLORS.length]}${bar}${RESET}`;
    const errorType = s.attributes['error.type'];
    const note = err ? `  ${errorType ?? 'error'}${s.statusMessage && errorType === undefined ? `: ${s.statusMessage}` : ''}` : '';
    const status = s.attributes['http.response.status_code'];
    lines.push(
      `${s.service.padEnd(serviceW)}  ${label(r).padEnd(nameW)}  ${startCol[i]!.padStart(startW)}  ${durCol[i]!.padStart(durW)}  |${' '.repeat(from)}${bar}${' '.repeat(width - from - len)}|${status !== undefined ? ` ${status}` : ''}${note}`,
    );
  });
  return lines.join('\n') + '\n';
}
