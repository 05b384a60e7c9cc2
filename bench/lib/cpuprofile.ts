// Summaries of a V8 .cpuprofile (node --cpu-prof): self time by function and by package, and
// inclusive time of chosen functions, as text tables. Used by bench/profile.ts and
// `node bench/profile.ts --summarize FILE...`.
import { readFile } from 'node:fs/promises';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface Row {
  readonly name: string;
  readonly ms: number;
  readonly share: number;
}

export interface ProfileSummary {
  readonly file: string;
  readonly totalMs: number;
  /** Self time of the idle and GC pseudo-frames, and of everything else. */
  readonly idleMs: number;
  readonly gcMs: number;
  readonly busyMs: number;
  readonly byFunction: Row[];
  readonly byPackage: Row[];
  /** Inclusive time (the function and what it calls) of the busiest entry points of ours. */
  readonly inclusive: Row[];
}

/** Where a frame's code lives: a package, a tsmesh folder, Node's own code, or a pseudo-frame. */
export function packageOf(url: string, functionName: string): string {
  if (!url) {
    if (functionName === '(garbage collector)') return '(gc)';
    if (functionName === '(idle)' || functionName === '(program)' || functionName === '(root)') return functionName;
    return '(native)';
  }
  const nm = url.lastIndexOf('/node_modules/');
  if (nm !== -1) {
    const rest = url.slice(nm + '/node_modules/'.length).split('/');
    return rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  if (url.startsWith('node:')) {
    const m = /^node:(?:internal\/)?([^/]+)/.exec(url);
    return `node:${m?.[1] ?? url.slice(5)}`;
  }
  const src = /\/(src|bench|bin|injector)\/(.*)$/.exec(url);
  if (src) {
    const parts = src[2]!.split('/');
    return `tsmesh ${src[1]}/${parts.length > 1 ? parts[0] : parts[0]!.replace(/\.ts$/, '')}`;
  }
  return url;
}

const shortUrl = (url: string): string => {
  const nm = url.lastIndexOf('/node_modules/');
  if (nm !== -1) return url.slice(nm + '/node_modules/'.length);
  const src = /\/((?:src|bench|bin|injector)\/.*)$/.exec(url);
  if (src) return src[1]!;
  return url.replace(/^node:/, '');
};

export async function summarizeProfile(file: string, top = 25): Promise<ProfileSummary> {
  const profile = JSON.parse(await readFile(file, 'utf8')) as CpuProfile;
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of profile.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  // Self time per node: the time delta after each sample goes to the sampled node.
  const selfUs = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const dt = profile.timeDeltas[i + 1] ?? 0;
    const id = profile.samples[i]!;
    selfUs.set(id, (selfUs.get(id) ?? 0) + Math.max(0, dt));
  }
  const fn = new Map<string, number>();
  const pkg = new Map<string, number>();
  const incl = new Map<string, number>();
  let totalUs = 0;
  let idleUs = 0;
  let gcUs = 0;
  for (const [id, us] of selfUs) {
    const n = byId.get(id)!;
    const { functionName, url, lineNumber } = n.callFrame;
    totalUs += us;
    if (functionName === '(idle)') idleUs += us;
    if (functionName === '(garbage collector)') gcUs += us;
    const key = `${functionName || '(anonymous)'} ${url ? `${shortUrl(url)}:${lineNumber + 1}` : ''}`.trim();
    fn.set(key, (fn.get(key) ?? 0) + us);
    const p = packageOf(url, functionName);
    pkg.set(p, (pkg.get(p) ?? 0) + us);
    // Inclusive time of tsmesh frames: each of our functions on the stack once.
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const f = byId.get(cur)!.callFrame;
      if (!/\/(src|bench)\//.test(f.url) || f.url.includes('/node_modules/')) continue;
      const k = `${f.functionName || '(anonymous)'} ${shortUrl(f.url)}:${f.lineNumber + 1}`;
      if (seen.has(k)) continue;
      seen.add(k);
      incl.set(k, (incl.get(k) ?? 0) + us);
    }
  }
  const busyUs = totalUs - idleUs;
  const rows = (m: Map<string, number>, n: number): Row[] =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([name, us]) => ({ name, ms: us / 1000, share: busyUs > 0 ? us / busyUs : 0 }));
  return {
    file,
    totalMs: totalUs / 1000,
    idleMs: idleUs / 1000,
    gcMs: gcUs / 1000,
    busyMs: busyUs / 1000,
    byFunction: rows(new Map([...fn].filter(([k]) => !k.startsWith('(idle)'))), top),
    byPackage: rows(new Map([...pkg].filter(([k]) => k !== '(idle)')), top),
    inclusive: rows(incl, top),
  };
}

export function formatSummary(s: ProfileSummary): string {
  const table = (title: string, rows: Row[]) =>
    [`  ${title}`, ...rows.map((r) => `    ${r.ms.toFixed(0).padStart(7)} ms ${(r.share * 100).toFixed(1).padStart(5)}%  ${r.name}`)].join('\n');
  return [
    `${s.file}`,
    `  sampled ${(s.totalMs / 1000).toFixed(1)} s: busy ${s.busyMs.toFixed(0)} ms (GC ${s.gcMs.toFixed(0)} ms, ${s.busyMs > 0 ? ((s.gcMs / s.busyMs) * 100).toFixed(1) : '0'}% of busy), idle ${s.idleMs.toFixed(0)} ms; shares below are of busy time`,
    table('self time by package', s.byPackage),
    table('self time by function', s.byFunction),
    table('inclusive time of tsmesh functions', s.inclusive),
  ].join('\n');
}
