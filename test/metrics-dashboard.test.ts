// deploy/grafana/tsmesh-dashboard.json must use the metric and label names the sidecar exports
// (a renamed label would leave a panel silently empty).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { BREAKER_LABELS, METRIC_NAMES, REQUEST_LABELS, RETRY_LABELS, TCP_LABELS, TLS_ERROR_LABELS } from '../src/metrics/mesh-metrics.ts';
import { SPANS_DROPPED_METRIC } from '../src/tracing/export.ts';

const LABELS: Record<string, readonly string[]> = {
  [METRIC_NAMES.requests]: REQUEST_LABELS,
  [`${METRIC_NAMES.requestDuration}_bucket`]: [...REQUEST_LABELS, 'le'],
  [METRIC_NAMES.retries]: RETRY_LABELS,
  [METRIC_NAMES.circuitBreakerOpen]: BREAKER_LABELS,
  [METRIC_NAMES.tcpConnections]: TCP_LABELS,
  [METRIC_NAMES.tlsHandshakeErrors]: TLS_ERROR_LABELS,
  [METRIC_NAMES.certificateExpiry]: [],
  [SPANS_DROPPED_METRIC]: ['reason'],
};
// Labels Prometheus adds when it scrapes (kubernetes_sd relabelling) and prom-client's process metrics.
const SCRAPE_LABELS = ['pod', 'namespace', 'instance', 'job'];
const PROCESS_METRICS = ['process_cpu_seconds_total', 'process_resident_memory_bytes'];

interface Panel {
  title: string;
  targets?: { expr: string }[];
}

test('every dashboard query uses exported metric names and their labels only', async () => {
  const dash = JSON.parse(await readFile(new URL('../deploy/grafana/tsmesh-dashboard.json', import.meta.url), 'utf8')) as { uid: string; panels: Panel[]; templating: { list: { name: string; query: unknown }[] } };
  assert.equal(dash.uid, 'tsmesh-golden');
  const exprs: [string, string][] = dash.panels.flatMap((p) => (p.targets ?? []).map((t): [string, string] => [p.title, t.expr]));
  for (const v of dash.templating.list) if (typeof v.query === 'object' && v.query !== null) exprs.push([`variable ${v.name}`, (v.query as { query: string }).query]);
  assert.ok(exprs.length >= 18);
  const used = new Set<string>();
  for (const [title, expr] of exprs) {
    const metrics = [...expr.matchAll(/\b((?:tsmesh|process|nodejs)_[a-z_]+)\b/g)].map((m) => m[1]!);
    assert.ok(metrics.length > 0, `${title}: no metric in ${expr}`);
    const allowed = new Set<string>(['le', ...SCRAPE_LABELS]);
    for (const m of metrics) {
      used.add(m);
      assert.ok(m in LABELS || PROCESS_METRICS.includes(m), `${title}: ${m} is not a metric tsmesh exports`);
      for (const l of LABELS[m] ?? []) allowed.add(l);
    }
    // Matchers {a="..."} of each metric, and grouping labels by (...) / label_values(..., x).
    for (const sel of expr.matchAll(/\b([a-z_]+)\{([^}]*)\}/g)) {
      for (const mm of sel[2]!.matchAll(/([a-z_]+)\s*(?:=~|!~|!=|=)/g)) {
        assert.ok((LABELS[sel[1]!] ?? SCRAPE_LABELS).includes(mm[1]!), `${title}: ${sel[1]} has no label ${mm[1]}`);
      }
    }
    for (const by of expr.matchAll(/by \(([^)]*)\)/g)) {
      for (const l of by[1]!.split(',').map((s) => s.trim())) assert.ok(allowed.has(l), `${title}: grouping by ${l}, not a label of ${metrics.join(', ')}`);
    }
    const lv = /label_values\([^,]+,\s*([a-z_]+)\)/.exec(expr);
    if (lv) assert.ok(allowed.has(lv[1]!), `${title}: label_values of ${lv[1]}`);
  }
  for (const m of [METRIC_NAMES.requests, `${METRIC_NAMES.requestDuration}_bucket`, METRIC_NAMES.retries, METRIC_NAMES.circuitBreakerOpen]) assert.ok(used.has(m), `the golden metric ${m} has a panel`);
});
