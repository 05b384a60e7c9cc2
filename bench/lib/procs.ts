// Processes the benchmark starts: spawn with output to a log file, wait until a server
// listens, stop a whole process tree, and read CPU time and memory from /proc.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { openSync, closeSync, readFileSync, readdirSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { BenchError } from './errors.ts';

const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

/** A process the benchmark started; every one is tracked so Ctrl-C and errors stop them all. */
export interface Proc {
  readonly name: string;
  readonly child: ChildProcess;
  readonly pid: number;
  readonly logFile: string;
  /** Resolves with the exit code (or signal name) when the process ends. */
  readonly exited: Promise<number | string>;
  exitStatus: number | string | undefined;
}

const running = new Set<Proc>();

export function startProcess(name: string, command: string, args: string[], options: { logFile: string; env?: NodeJS.ProcessEnv; cwd?: string }): Proc {
  const fd = openSync(options.logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(command, args, { stdio: ['ignore', fd, fd], env: options.env ?? process.env, cwd: options.cwd });
  } finally {
    closeSync(fd);
  }
  if (child.pid === undefined) throw new BenchError('BENCH_SPAWN', `${name}: could not start ${command}`);
  const proc: Proc = {
    name,
    child,
    pid: child.pid,
    logFile: options.logFile,
    exitStatus: undefined,
    exited: new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        proc.exitStatus = signal ?? code ?? -1;
        running.delete(proc);
        resolve(proc.exitStatus);
      });
    }),
  };
  child.on('error', () => {}); // reported through 'exit' / exitStatus
  running.add(proc);
  return proc;
}

/** Runs a command to its end with a hard time limit; returns its stdout (stderr is appended on failure). */
export async function runToEnd(name: string, command: string, args: string[], options: { timeoutMs: number; logFile: string }): Promise<{ code: number | string; output: string }> {
  const proc = startProcess(name, command, args, { logFile: options.logFile });
  const timer = setTimeout(() => void stopTree(proc), options.timeoutMs);
  const code = await proc.exited;
  clearTimeout(timer);
  return { code, output: readFileSync(options.logFile, 'utf8') };
}

export function tail(file: string, lines = 8): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no output)';
  }
}

/** Throws if something already listens on host:port (another engineer's test, a leftover run). */
export async function assertPortFree(host: string, port: number): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const server = createServer();
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(new BenchError('BENCH_PORT_BUSY', `${host}:${port} is already in use (${err.code}); stop whatever listens there and run again`)),
    );
    server.listen(port, host, () => server.close(() => resolve()));
  });
}

/** Waits until host:port accepts a TCP connection; fails early if `proc` exits. */
export async function waitListening(proc: Proc, host: string, port: number, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (proc.exitStatus !== undefined) {
      throw new BenchError('BENCH_EXITED', `${proc.name} exited (${proc.exitStatus}) before listening on ${host}:${port}:\n${tail(proc.logFile)}`);
    }
    if (await canConnect(host, port)) return;
    if (Date.now() > deadline) {
      throw new BenchError('BENCH_NOT_LISTENING', `${proc.name} is not listening on ${host}:${port} after ${timeoutMs / 1000}s:\n${tail(proc.logFile)}`);
    }
    await sleep(100);
  }
}

function canConnect(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** SIGTERM to the process and its descendants, SIGKILL to whatever is left after a grace period. */
export async function stopTree(proc: Proc, graceMs = 3000): Promise<void> {
  if (proc.exitStatus !== undefined) return;
  const pids = [proc.pid, ...descendants(proc.pid)];
  for (const pid of pids) signal(pid, 'SIGTERM');
  const done = await Promise.race([proc.exited.then(() => true), sleep(graceMs).then(() => false)]);
  if (!done) signal(proc.pid, 'SIGKILL');
  for (const pid of pids.slice(1)) if (alive(pid)) signal(pid, 'SIGKILL');
  await proc.exited;
}

/** Stops every process still running (used at the end, on errors and on Ctrl-C). */
export async function stopAll(): Promise<void> {
  await Promise.all([...running].map((p) => stopTree(p)));
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

interface StatFields {
  ppid: number;
  /** utime + stime + cutime + cstime, in seconds. */
  cpuSeconds: number;
}

function readStat(pid: number): StatFields | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) may hold spaces: the fields after it start at the last ')'.
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // f[0] is field 3 (state): ppid is field 4, utime..cstime are fields 14..17.
  const ticks = Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
  return { ppid: Number(f[1]), cpuSeconds: ticks / CLOCK_TICKS };
}

/** Every process below `root` (children, grandchildren, ...). */
export function descendants(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const st = readStat(Number(entry));
    if (!st) continue;
    const list = children.get(st.ppid) ?? [];
    list.push(Number(entry));
    children.set(st.ppid, list);
  }
  const out: number[] = [];
  const queue = [root];
  while (queue.length > 0) {
    for (const c of children.get(queue.shift()!) ?? []) {
      out.push(c);
      queue.push(c);
    }
  }
  return out;
}

/** CPU seconds (user + system, including reaped children) of the given processes and all their descendants. */
export function treeCpuSeconds(roots: readonly number[]): number {
  let total = 0;
  for (const root of roots) {
    for (const pid of [root, ...descendants(root)]) total += readStat(pid)?.cpuSeconds ?? 0;
  }
  return total;
}

export interface Memory {
  /** Sum of VmRSS over the processes and their descendants, in KiB. */
  rssKiB: number;
  /** Sum of VmHWM (peak RSS) over the same processes, in KiB. */
  hwmKiB: number;
  /** Sum of RssAnon (the part of RSS that is the processes' own memory, not mapped files such as the executable), in KiB. */
  anonKiB: number;
  processes: number;
}

/** The memory of the largest of `roots` (each with its descendants): one proxy of a pair. */
export function largestTreeMemory(roots: readonly number[]): Memory {
  return roots.map((r) => treeMemory([r])).reduce((a, b) => (b.rssKiB > a.rssKiB ? b : a), { rssKiB: 0, hwmKiB: 0, anonKiB: 0, processes: 0 });
}

export function treeMemory(roots: readonly number[]): Memory {
  const mem: Memory = { rssKiB: 0, hwmKiB: 0, anonKiB: 0, processes: 0 };
  for (const root of roots) {
    for (const pid of [root, ...descendants(root)]) {
      let text: string;
      try {
        text = readFileSync(`/proc/${pid}/status`, 'utf8');
      } catch {
        continue;
      }
      mem.rssKiB += Number(/^VmRSS:\s+(\d+)/m.exec(text)?.[1] ?? 0);
      mem.hwmKiB += Number(/^VmHWM:\s+(\d+)/m.exec(text)?.[1] ?? 0);
      mem.anonKiB += Number(/^RssAnon:\s+(\d+)/m.exec(text)?.[1] ?? 0);
      mem.processes += 1;
    }
  }
  return mem;
}
