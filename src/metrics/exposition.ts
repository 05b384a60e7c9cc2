// A reader of the Prometheus text exposition format (version 0.0.4), strict enough to catch a
// malformed /metrics page: tests use it to check what the admin port serves, and scripts (the
// demo) to read counts back. Throws an ExpositionError naming the line that is wrong.

export interface Sample {
  /** The sample's own name (e.g. tsmesh_request_duration_seconds_bucket). */
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface Family {
  readonly name: string;
  readonly type: 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';
  readonly help: string;
  readonly samples: Sample[];
}

export class ExpositionError extends Error {
  override readonly name = 'ExpositionError';
  readonly code = 'TSMESH_METRICS_MALFORMED';
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);
const SUFFIXES: Record<string, readonly string[]> = { histogram: ['_bucket', '_sum', '_count'], summary: ['_sum', '_count'], counter: [], gauge: [], untyped: [] };

export function parseExposition(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const lines = text.split('\n');
  const fail = (i: number, msg: string): never => {
    throw new ExpositionError(`line ${i + 1}: ${msg}: ${JSON.stringify(lines[i])}`);
  };
  const family = (name: string): Family => {
    let f = families.get(name);
    if (!f) families.set(name, (f = { name, type: 'untyped', help: '', samples: [] }));
    return f;
  };
  lines.forEach((line, i) => {
    if (line.trim() === '') return;
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+)(?: (.*))?$/.exec(line);
      if (!m) return; // other comments are allowed
      const [, kind, name, rest = ''] = m;
      if (!NAME.test(name!)) fail(i, 'bad metric name');
      const f = family(name!);
      if (kind === 'TYPE') {
        if (!TYPES.has(rest)) fail(i, `unknown type "${rest}"`);
        if (f.samples.length) fail(i, 'TYPE after samples');
        (f as { type: string }).type = rest;
      } else (f as { help: string }).help = rest.replace(/\\n/g, '\n').replace(/\\\\/g, '\\');
      return;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(?:\s+(-?\d+))?\s*$/.exec(line);
    if (!m) return fail(i, 'not a sample line');
    const [, name, , body, raw] = m;
    const labels = body === undefined ? {} : parseLabels(body, (msg) => fail(i, msg));
    const v = parseValue(raw!);
    if (v === undefined) return fail(i, `bad value "${raw}"`);
    // The family: the sample name, or the name without a suffix its type allows.
    let f = families.get(name!);
    if (!f) {
      for (const [fname, fam] of families) {
        if (SUFFIXES[fam.type]!.some((s) => name === fname + s)) f = fam;
      }
    }
    f ??= family(name!);
    f.samples.push({ name: name!, labels, value: v });
  });
  for (const f of families.values()) if (f.type === 'histogram') checkHistogram(f);
  return families;
}

/** A float as Prometheus (Go's ParseFloat) reads it: NaN and Inf in any case ("Nan" is what prom-client writes). */
function parseValue(raw: string): number | undefined {
  if (/^nan$/i.test(raw)) return NaN;
  const inf = /^([+-]?)inf(inity)?$/i.exec(raw);
  if (inf) return inf[1] === '-' ? -Infinity : Infinity;
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(raw)) return undefined;
  return Number(raw);
}

function parseLabels(body: string, fail: (msg: string) => never): Record<string, string> {
  const labels: Record<string, string> = {};
  let i = 0;
  while (i < body.length) {
    const eq = body.indexOf('=', i);
    if (eq === -1) fail('label without a value');
    const key = body.slice(i, eq).trim();
    if (!LABEL.test(key)) fail(`bad label name "${key}"`);
    if (body[eq + 1] !== '"') fail(`label ${key}: value not quoted`);
    let j = eq + 2;
    let v = '';
    for (;;) {
      if (j >= body.length) fail(`label ${key}: unterminated value`);
      const c = body[j]!;
      if (c === '\\') {
        const n = body[j + 1];
        v += n === 'n' ? '\n' : n === '\\' ? '\\' : n === '"' ? '"' : fail(`label ${key}: bad escape \\${n}`);
        j += 2;
      } else if (c === '"') break;
      else {
        v += c;
        j++;
      }
    }
    if (key in labels) fail(`label ${key} twice`);
    labels[key] = v;
    i = j + 1;
    if (body[i] === ',') i++;
    else if (i < body.length) fail(`label ${key}: expected "," after the value`);
  }
  return labels;
}

/** Buckets cumulative, an +Inf bucket equal to _count, per label set. */
function checkHistogram(f: Family): void {
  const groups = new Map<string, { buckets: [number, number][]; count?: number }>();
  const keyOf = (labels: Readonly<Record<string, string>>) =>
    JSON.stringify(
      Object.entries(labels)
        .filter(([k]) => k !== 'le')
        .sort(),
    );
  for (const s of f.samples) {
    const g = groups.get(keyOf(s.labels)) ?? { buckets: [] };
    groups.set(keyOf(s.labels), g);
    if (s.name === `${f.name}_bucket`) g.buckets.push([s.labels['le'] === '+Inf' ? Infinity : Number(s.labels['le']), s.value]);
    else if (s.name === `${f.name}_count`) g.count = s.value;
  }
  for (const [key, g] of groups) {
    const sorted = [...g.buckets].sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < sorted.length; i++) if (sorted[i]![1] < sorted[i - 1]![1]) throw new ExpositionError(`${f.name}${key}: bucket le=${sorted[i]![0]} is below the one before`);
    const inf = sorted.find((b) => b[0] === Infinity);
    if (!inf) throw new ExpositionError(`${f.name}${key}: no le="+Inf" bucket`);
    if (g.count !== undefined && inf[1] !== g.count) throw new ExpositionError(`${f.name}${key}: +Inf bucket ${inf[1]} != _count ${g.count}`);
  }
}

/** The value of the sample `name` whose labels include `labels`; summed when several match; 0 when none. */
export function sampleValue(families: Map<string, Family>, name: string, labels: Readonly<Record<string, string>> = {}): number {
  let sum = 0;
  for (const f of families.values()) {
    for (const s of f.samples) {
      if (s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)) sum += s.value;
    }
  }
  return sum;
}
