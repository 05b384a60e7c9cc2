// What the results depend on: the tools (present? which version?), the machine, and how busy
// it was while the benchmark ran (other processes, hypervisor steal).
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, loadavg, release } from 'node:os';
import { BenchError } from './errors.ts';
import { NGINX } from './nginx.ts';

const tools: { command: string; args: string[]; pkg: string; pattern: RegExp }[] = [
  { command: 'h2load', args: ['--version'], pkg: 'nghttp2-client', pattern: /h2load (nghttp2\/[\d.]+)/ },
  { command: 'wrk', args: ['-v'], pkg: 'wrk', pattern: /wrk (\S+)/ },
  { command: NGINX, args: ['-v'], pkg: 'nginx', pattern: /(nginx\/[\d.]+)/ },
  { command: 'openssl', args: ['version'], pkg: 'openssl', pattern: /(OpenSSL [\d.]+\w*)/ },
];

export interface Versions {
  h2load: string;
  wrk: string;
  nginx: string;
  openssl: string;
}

/** Checks every tool is installed; throws one error naming all missing ones and their Debian packages. */
export function toolVersions(): Versions {
  const found: string[] = [];
  const missing: string[] = [];
  for (const t of tools) {
    const r = spawnSync(t.command, t.args, { encoding: 'utf8' });
    if (r.error) {
      missing.push(`${t.command} (apt-get install ${t.pkg})`);
      found.push('');
      continue;
    }
    const text = `${r.stdout}${r.stderr}`;
    found.push(t.pattern.exec(text)?.[1] ?? text.trim().split('\n')[0]);
  }
  if (missing.length > 0) throw new BenchError('BENCH_TOOL_MISSING', `missing tools: ${missing.join(', ')}`);
  const [h2load, wrk, nginx, openssl] = found;
  return { h2load, wrk, nginx, openssl };
}

export function nodeVersion(nodeBinary: string): string {
  const r = spawnSync(nodeBinary, ['--version'], { encoding: 'utf8' });
  return r.error ? `unknown (${nodeBinary}: ${r.error.message})` : r.stdout.trim();
}

export interface MachineInfo {
  cpuModel: string;
  cores: number;
  kernel: string;
}

export function machineInfo(): MachineInfo {
  const list = cpus();
  return { cpuModel: list[0]?.model.trim() ?? 'unknown', cores: list.length, kernel: release() };
}

export function loadAverage(): string {
  return loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
}

/** Jiffies from the first line of /proc/stat: total and the parts that tell about noise. */
export interface CpuSample {
  total: number;
  idle: number;
  steal: number;
}

export function cpuSample(): CpuSample {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest fields are already in user)
  const [user, nice, system, idle, iowait, irq, softirq, steal] = f;
  return { total: user + nice + system + idle + iowait + irq + softirq + steal, idle: idle + iowait, steal };
}

/** Share of the machine's CPU time that was hypervisor steal between two samples, in percent. */
export function stealPercent(a: CpuSample, b: CpuSample): number {
  const total = b.total - a.total;
  return total > 0 ? (100 * (b.steal - a.steal)) / total : 0;
}

export function gitDescribe(repoRoot: string): string {
  const head = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: repoRoot, encoding: 'utf8' });
  if (head.error || head.status !== 0) return 'unknown';
  const dirty = spawnSync('git', ['status', '--porcelain', '--', 'src', 'bin'], { cwd: repoRoot, encoding: 'utf8' });
  return `${head.stdout.trim()}${dirty.stdout.trim() ? ' (with uncommitted changes in src/ or bin/)' : ''}`;
}
