// A small cluster out of Linux network namespaces, with the real interception: one namespace
// per pod (eth0 on a shared bridge, its own IP), a "node" namespace holding the bridge and a
// kube-proxy stand-in (DNAT of each Service's VIP to its endpoints), /etc/netns/<ns>/hosts as
// each pod's DNS (service names -> VIP), the registry file for the sidecars, and per pod
// optionally `tsmesh init` and a sidecar running as UID 1337. Used by `tsmesh demo` (netns
// mode) and by the end-to-end tests (test/harness/netns.ts).
//
//   const cluster = await netnsCluster({
//     pods: [{ name: 'pod-a', labels: { app: 'web-app' }, sidecar: true }, { name: 'pod-b' }],
//     services: [{ name: 'pod-service', ports: [{ port: 80, targetPort: 8080 }], selector: { app: 'web-app' } }],
//   });
//   try {
//     cluster.spawn('pod-a', [cluster.node, 'app.js'], { uid: APP_UID });
//     const res = await cluster.curl('pod-b', 'http://pod-service/');
//   } finally {
//     await cluster.close();
//   }
//
// Names carry the process's PID and a random suffix, so clusters of processes running side by
// side do not collide; namespaces of dead processes are removed when a cluster starts.
// Everything is removed by close(), and by exit/SIGINT/SIGTERM/SIGHUP hooks if the process
// never gets there. Needs root, iproute2 (ip, ss), iptables, util-linux (setpriv); curl() needs curl.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, mkdir, writeFile, rename, rm, chmod, access, constants, stat } from 'node:fs/promises';
import { createCA, writeWorkloadIdentity } from './identity.ts';
import { realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, delimiter, sep } from 'node:path';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { formatPodInfo } from '../config/podinfo.ts';
import { LocalClusterError } from './errors.ts';

/** The `tsmesh` executable of this checkout (what `tsmesh init` and the sidecars run). */
export const TSMESH_BIN = fileURLToPath(new URL('../../bin/tsmesh.js', import.meta.url));
export const PROXY_UID = 1337;
export const APP_UID = 1000;

const PREFIX = 'tsm-';
const SUBNET = '10.77.0';
const SUBNET6 = 'fd77::';
const GATEWAY = `${SUBNET}.1`;
const GATEWAY6 = `${SUBNET6}1`;
const FIRST_POD = 10;
const FIRST_VIP = '10.96.0.';

export interface PodOptions {
  readonly name: string;
  readonly namespace?: string;
  readonly labels?: Record<string, string>;
  readonly serviceAccount?: string;
  /** written to the pod's downward-API annotations file (read by `tsmesh init` and the sidecar) */
  readonly annotations?: Record<string, string>;
  /** start `tsmesh proxy` as UID 1337 in the pod (default false) */
  readonly sidecar?: boolean;
  /** run `tsmesh init` in the pod: true, or the flags to give it (default: when it has a sidecar) */
  readonly init?: boolean | readonly string[];
  readonly ready?: boolean;
}

export interface ServiceOptions {
  readonly name: string;
  readonly namespace?: string;
  /** default: the next free address of 10.96.0.0/24, owned by no namespace */
  readonly clusterIP?: string;
  readonly ports: readonly { name?: string; port: number; targetPort?: number }[];
  readonly selector: Record<string, string>;
  readonly annotations?: Record<string, string>;
}

export interface ClusterOptions {
  readonly pods: readonly PodOptions[];
  readonly services?: readonly ServiceOptions[];
  /** give every pod an IPv6 address too (fd77::/64) */
  readonly ipv6?: boolean;
  /** extra environment of each sidecar */
  readonly sidecarEnv?: (pod: Pod) => Record<string, string>;
  /** give each meshed pod a workload certificate from one embedded CA (TSMESH_TLS_DIR): mTLS between the sidecars */
  readonly mtls?: boolean;
  /** how long to wait for each sidecar's admin port (default 15 s) */
  readonly sidecarTimeoutMs?: number;
  /** the Node.js (24+) that runs tsmesh and node() code in the pods (default: this process's) */
  readonly node?: string;
  /** the `tsmesh` executable run by init and the sidecars (default: this checkout's bin/tsmesh.js) */
  readonly tsmesh?: string;
}

export interface Pod {
  readonly name: string;
  readonly namespace: string;
  /** the network namespace: `ip netns exec <netns> ...` */
  readonly netns: string;
  readonly ip: string;
  readonly ip6: string | undefined;
  readonly labels: Record<string, string>;
  readonly serviceAccount: string;
  readonly meshed: boolean;
  readonly annotationsFile: string;
  /** the sidecar process, when the pod has one */
  sidecar: PodProcess | undefined;
}

export interface Service {
  readonly name: string;
  readonly namespace: string;
  readonly clusterIP: string;
  readonly ports: readonly { name?: string; port: number; targetPort: number }[];
  /** IPs of the pods behind it */
  readonly endpoints: readonly string[];
}

export interface ExecResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunOptions {
  /** run as this UID (and GID), without supplementary groups; default root */
  readonly uid?: number;
  readonly env?: Record<string, string>;
  readonly input?: string;
  readonly timeoutMs?: number;
}

export interface PodProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  /** stdout and stderr so far */
  output(): string;
  /** resolves with the first stdout/stderr line matching `re` */
  waitForLine(re: RegExp, timeoutMs?: number): Promise<string>;
  /** SIGTERM, then SIGKILL after `graceMs` */
  stop(graceMs?: number): Promise<void>;
}

// ---- low-level helpers -------------------------------------------------------------------

function sh(command: string, args: readonly string[], options: { input?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<ExecResult> {
  return new Promise((resolveResult, reject) => {
    const child = spawn(command, args, { env: options.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = options.timeoutMs ? setTimeout(() => child.kill('SIGKILL'), options.timeoutMs) : undefined;
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolveResult({ code, stdout, stderr });
    });
    child.stdin.on('error', () => {});
    child.stdin.end(options.input ?? '');
  });
}

/** Runs a setup command; a failure names the command and its stderr. */
async function must(command: string, ...args: string[]): Promise<string> {
  const r = await sh(command, args);
  if (r.code !== 0) throw new LocalClusterError('TSMESH_LOCALCLUSTER_SETUP_FAILED', `\`${command} ${args.join(' ')}\` failed (${r.code}): ${r.stderr.trim() || r.stdout.trim()}`);
  return r.stdout;
}

const asUser = (uid: number | undefined): string[] => (uid === undefined || uid === 0 ? [] : ['setpriv', `--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', '--']);

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function listNetns(): string[] {
  try {
    return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
      .split('\n')
      .map((l) => l.split(' ')[0]!)
      .filter((n) => n.length > 0);
  } catch {
    return [];
  }
}

/** Synchronous, best-effort removal of a namespace and everything in it (also used from exit hooks). */
function removeNetnsSync(netns: string): void {
  try {
    const pids = execFileSync('ip', ['netns', 'pids', netns], { encoding: 'utf8' }).split('\n').filter(Boolean);
    for (const pid of pids) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
  } catch {
    /* no such namespace */
  }
  try {
    execFileSync('ip', ['netns', 'del', netns], { stdio: 'ignore' });
  } catch {
    /* already gone */
  }
  rmSync(join('/etc/netns', netns), { recursive: true, force: true });
}

/** Removes the namespaces (and /etc/netns dirs) left by test processes that are no longer running. */
export function removeStaleNamespaces(): string[] {
  const removed: string[] = [];
  for (const name of listNetns()) {
    const m = new RegExp(`^${PREFIX}(\\d+)-`).exec(name);
    if (!m || isAlive(Number(m[1]))) continue;
    removeNetnsSync(name);
    removed.push(name);
  }
  return removed;
}

// Every cluster of this process, so the exit hooks can clean up what close() did not.
const live = new Set<NetnsCluster>();
let hooked = false;
function installExitHooks(): void {
  if (hooked) return;
  hooked = true;
  process.on('exit', () => {
    for (const c of live) c.closeSync();
  });
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      for (const c of live) c.closeSync();
      // When the program handles the signal itself (the demo's --keep waits for Ctrl-C), leave
      // the rest to it; otherwise take the default action, now that this listener is gone.
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    });
  }
}

function hostsFile(pod: Pod, pods: readonly Pod[], services: readonly Service[]): string {
  const lines = ['127.0.0.1 localhost', '::1 localhost ip6-localhost ip6-loopback'];
  for (const p of pods) lines.push(`${p.ip} ${p.name} ${p.name}.${p.namespace}.pod.cluster.local`);
  for (const s of services) {
    const names = [`${s.name}.${s.namespace}.svc.cluster.local`, `${s.name}.${s.namespace}.svc`, `${s.name}.${s.namespace}`];
    if (s.namespace === pod.namespace) names.push(s.name);
    lines.push(`${s.clusterIP} ${names.join(' ')}`);
  }
  return lines.join('\n') + '\n';
}

function matches(selector: Record<string, string>, labels: Record<string, string>): boolean {
  const entries = Object.entries(selector);
  return entries.length > 0 && entries.every(([k, v]) => labels[k] === v);
}

// ---- the cluster -------------------------------------------------------------------------

export class NetnsCluster {
  readonly id: string;
  /** the namespace holding the bridge and the kube-proxy stand-in */
  readonly nodeNetns: string;
  /** a folder for the cluster's files (registry, annotations), readable by the pods' users */
  readonly dir: string;
  /** the registry YAML (DESIGN.md's format) with the pod IPs and VIPs assigned here */
  readonly registryFile: string;
  readonly pods: Pod[] = [];
  readonly services: Service[] = [];
  readonly ipv6: boolean;
  /** the Node.js that runs tsmesh and node() code in the pods */
  readonly nodeBinary: string;
  /** the `tsmesh` executable run by init and the sidecars */
  readonly tsmeshBin: string;
  private readonly processes = new Set<PodProcess>();
  private closed = false;
  /** what the registry file holds (services and pods), for `setRoutes` */
  registryData: Record<string, unknown> = {};

  /** the prefix that shows the project to pod users (see podAccess) */
  private readonly reveal: readonly string[];

  constructor(id: string, dir: string, options: { ipv6: boolean; node: string; tsmesh: string; reveal?: readonly string[] }) {
    this.id = id;
    this.reveal = options.reveal ?? [];
    this.dir = dir;
    this.ipv6 = options.ipv6;
    this.nodeBinary = options.node;
    this.tsmeshBin = options.tsmesh;
    this.nodeNetns = `${id}-node`;
    this.registryFile = join(dir, 'registry.yaml');
  }

  pod(name: string): Pod {
    const pod = this.pods.find((p) => p.name === name);
    if (!pod) throw new LocalClusterError('TSMESH_LOCALCLUSTER_BAD_INPUT', `no pod "${name}" (pods: ${this.pods.map((p) => p.name).join(', ')})`);
    return pod;
  }

  service(name: string): Service {
    const service = this.services.find((s) => s.name === name);
    if (!service) throw new LocalClusterError('TSMESH_LOCALCLUSTER_BAD_INPUT', `no service "${name}"`);
    return service;
  }

  /** `ip netns exec NS [setpriv ...] env -i VARS... cmd`: the command sees exactly the environment given. */
  private command(pod: string, cmd: readonly string[], uid: number | undefined, env: Record<string, string> | undefined): string[] {
    if (cmd.length === 0) throw new LocalClusterError('TSMESH_LOCALCLUSTER_BAD_INPUT', 'empty command');
    const vars = { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', HOME: this.dir, ...env };
    const user = asUser(uid);
    return ['netns', 'exec', this.pod(pod).netns, ...(user.length ? this.reveal : []), ...user, 'env', '-i', ...Object.entries(vars).map(([k, v]) => `${k}=${v}`), ...cmd];
  }

  /** Runs `cmd` in the pod and waits for it; never rejects on a non-zero exit. */
  exec(pod: string, cmd: readonly string[], options: RunOptions = {}): Promise<ExecResult> {
    return sh('ip', this.command(pod, cmd, options.uid, options.env), { input: options.input, timeoutMs: options.timeoutMs ?? 30_000 });
  }

  /** Runs JavaScript (an ES module; it may import the project's .ts files) in the pod with Node 24. */
  node(pod: string, code: string, options: RunOptions & { args?: readonly string[] } = {}): Promise<ExecResult> {
    return this.exec(pod, [this.nodeBinary, '--input-type=module', '-e', code, '--', ...(options.args ?? [])], options);
  }

  /** Starts a long-running process in the pod; close() stops it. */
  spawn(pod: string, cmd: readonly string[], options: RunOptions = {}): PodProcess {
    const child = spawn('ip', this.command(pod, cmd, options.uid, options.env), { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const waiters = new Set<{ re: RegExp; resolve: (line: string) => void }>();
    let partial = '';
    const onData = (d: string) => {
      out += d;
      partial += d;
      const lines = partial.split('\n');
      partial = lines.pop()!;
      for (const line of lines) {
        for (const w of waiters) {
          if (w.re.test(line)) {
            waiters.delete(w);
            w.resolve(line);
          }
        }
      }
    };
    child.stdout!.setEncoding('utf8').on('data', onData);
    child.stderr!.setEncoding('utf8').on('data', onData);
    const exited = new Promise<void>((r) => child.once('close', () => r()));
    const proc: PodProcess = {
      child,
      pid: child.pid ?? -1,
      output: () => out,
      waitForLine: (re, timeoutMs = 10_000) => {
        const seen = out.split('\n').find((l) => re.test(l));
        if (seen !== undefined) return Promise.resolve(seen);
        return new Promise((resolveLine, reject) => {
          const w = { re, resolve: (line: string) => (clearTimeout(timer), resolveLine(line)) };
          const timer = setTimeout(() => {
            waiters.delete(w);
            reject(new LocalClusterError('TSMESH_LOCALCLUSTER_TIMEOUT', `no line matching ${re} from \`${cmd.join(' ')}\` in pod ${pod} within ${timeoutMs} ms; output:\n${out}`));
          }, timeoutMs);
          waiters.add(w);
          void exited.then(() => {
            if (!waiters.has(w)) return;
            waiters.delete(w);
            clearTimeout(timer);
            reject(new LocalClusterError('TSMESH_LOCALCLUSTER_PROCESS_EXITED', `\`${cmd.join(' ')}\` in pod ${pod} exited (${child.exitCode ?? child.signalCode}) before printing a line matching ${re}; output:\n${out}`));
          });
        });
      },
      stop: async (graceMs = 2000) => {
        this.processes.delete(proc);
        if (child.exitCode !== null || child.signalCode !== null) return;
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
        await exited;
        clearTimeout(timer);
      },
    };
    this.processes.add(proc);
    return proc;
  }

  /** Waits until something in the pod listens on TCP `port`; gives up when `signal` aborts or the cluster closes. */
  async waitForPort(pod: string, port: number, timeoutMs = 10_000, signal?: AbortSignal): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      // stop asking once nobody waits: the process gave up, or the cluster is gone
      signal?.throwIfAborted();
      if (this.closed) throw new LocalClusterError('TSMESH_LOCALCLUSTER_CLOSED', `waiting for port ${port} in pod ${pod}: the cluster was closed`);
      const r = await this.exec(pod, ['ss', '-Hltn', `sport = :${port}`]);
      if (r.code === 0 && r.stdout.trim() !== '') return;
      if (Date.now() > deadline) throw new LocalClusterError('TSMESH_LOCALCLUSTER_TIMEOUT', `nothing listens on port ${port} in pod ${pod} after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** curl from the pod: the status code (0 when no HTTP response came) and the body. */
  async curl(pod: string, url: string, options: RunOptions & { args?: readonly string[] } = {}): Promise<{ status: number; body: string; stderr: string }> {
    const r = await this.exec(pod, ['curl', '-sS', '--max-time', '10', '-w', '\n%{http_code}', ...(options.args ?? []), url], { uid: APP_UID, ...options });
    const at = r.stdout.lastIndexOf('\n');
    return { status: Number(r.stdout.slice(at + 1)) || 0, body: r.stdout.slice(0, Math.max(at, 0)), stderr: r.stderr };
  }

  /** Runs `tsmesh init` in the pod with the pod's annotations file; throws with its output on failure. */
  async init(pod: string, flags: readonly string[] = []): Promise<ExecResult> {
    const p = this.pod(pod);
    const r = await this.exec(pod, [this.nodeBinary, this.tsmeshBin, 'init', ...flags], { env: { TSMESH_ANNOTATIONS: p.annotationsFile } });
    if (r.code !== 0) throw new LocalClusterError('TSMESH_LOCALCLUSTER_SETUP_FAILED', `tsmesh init in pod ${pod} failed (${r.code}): ${r.stderr}${r.stdout}`);
    return r;
  }

  /** The environment DESIGN.md gives a sidecar, for this pod. */
  sidecarEnvironment(pod: Pod): Record<string, string> {
    return {
      POD_NAME: pod.name,
      POD_NAMESPACE: pod.namespace,
      POD_IP: pod.ip,
      SERVICE_ACCOUNT: pod.serviceAccount,
      TSMESH_REGISTRY: this.registryFile,
      TSMESH_ANNOTATIONS: pod.annotationsFile,
      TSMESH_LABELS: join(this.dir, `${pod.name}.${pod.namespace}.labels`),
    };
  }

  /** Starts `tsmesh proxy` as UID 1337 in the pod and waits for its admin port. */
  async startSidecar(pod: string, env: Record<string, string> = {}, timeoutMs = 15_000): Promise<PodProcess> {
    const p = this.pod(pod);
    const proc = this.spawn(pod, [this.nodeBinary, this.tsmeshBin, 'proxy'], { uid: PROXY_UID, env: { ...this.sidecarEnvironment(p), ...env } });
    p.sidecar = proc;
    const adminPort = Number(env.TSMESH_ADMIN_PORT ?? 15020);
    const exited = new AbortController();
    proc.child.once('close', (code) => exited.abort(new LocalClusterError('TSMESH_LOCALCLUSTER_PROCESS_EXITED', `the sidecar of ${pod} exited (${code}):\n${proc.output()}`)));
    try {
      await this.waitForPort(pod, adminPort, timeoutMs, exited.signal);
    } catch (err) {
      await proc.stop();
      throw err;
    }
    return proc;
  }

  /** Stops every process and removes the namespaces and files. Safe to call twice. */
  /** Rewrites the registry file with these mesh routes (HTTPRoute/GRPCRoute objects); the sidecars reload it. */
  async setRoutes(routes: readonly unknown[]): Promise<void> {
    const next = `${this.registryFile}.next`;
    await writeFile(next, stringify({ ...this.registryData, routes }), { mode: 0o644 });
    await rename(next, this.registryFile); // whole: a sidecar never reads half a file
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await Promise.all([...this.processes].map((p) => p.stop(1000)));
    this.closeSync();
    await rm(this.dir, { recursive: true, force: true });
  }

  /** The synchronous part of close(), for exit hooks. */
  closeSync(): void {
    if (this.closed) return;
    this.closed = true;
    live.delete(this);
    for (const p of this.processes) p.child.kill('SIGKILL');
    for (const p of this.pods) removeNetnsSync(p.netns);
    removeNetnsSync(this.nodeNetns);
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** Names of this cluster's namespaces that exist now (for tests of the harness). */
  existingNamespaces(): string[] {
    return listNetns().filter((n) => n.startsWith(`${this.id}-`));
  }
}

/** Whether a command is an executable file in one of PATH's folders. */
export async function onPath(command: string, path = process.env.PATH ?? ''): Promise<boolean> {
  for (const dir of path.split(delimiter)) {
    if (!dir) continue;
    try {
      await access(join(dir, command), constants.X_OK);
      return true;
    } catch {
      /* not here */
    }
  }
  return false;
}

/** The commands a cluster runs (iptables-save/-restore are what `tsmesh init` uses). */
export const REQUIRED_COMMANDS = ['ip', 'ss', 'iptables', 'iptables-save', 'iptables-restore', 'setpriv', 'env'] as const;

/**
 * How pod users (the sidecar's 1337, the apps' 1000) get to `node` and `tsmesh`. When the
 * project sits under a folder they cannot enter (a clone in root's home, mode 700), its
 * commands run in a mount namespace of their own (`unshare -m`, gone with the process) where
 * that folder is an empty tmpfs holding only the project, bind-mounted at its own path: the
 * same files at the same paths, readable as in an image, and nothing of the user's folders
 * changed. The sidecar still runs as UID 1337, the UID the iptables rules leave alone.
 */
interface PodAccess {
  /** prefix for commands run as a pod user (empty when the project is readable as it is) */
  readonly reveal: readonly string[];
  /** why the pod users cannot run the project even so */
  readonly problem?: string;
}

/** A shell word: the text in single quotes. */
const quote = (text: string): string => `'${text.replaceAll("'", `'\\''`)}'`;

/**
 * The script that shows `keep` (folders) to other users: each is bind-mounted aside, every
 * closed folder above them is covered by an empty tmpfs, and each is moved back to its own
 * path in it. Run by `unshare -m`, so nothing of this is seen outside the command.
 */
function revealScript(keep: readonly string[], hidden: readonly string[], stash: string): string {
  return [
    'set -e; umask 022',
    `mount -t tmpfs tsmesh-stash ${quote(stash)}`,
    ...keep.map((k, i) => `mkdir ${quote(join(stash, String(i)))} && mount --bind ${quote(k)} ${quote(join(stash, String(i)))}`),
    ...hidden.map((h) => `mount -t tmpfs -o mode=0755 tsmesh-project ${quote(h)}`),
    ...keep.map((k, i) => `mkdir -p ${quote(k)} && mount --move ${quote(join(stash, String(i)))} ${quote(k)}`),
    'exec "$@"',
  ].join('\n');
}

const podAccessByPaths = new Map<string, Promise<PodAccess>>();
function podAccess(node: string, tsmesh: string): Promise<PodAccess> {
  const key = `${node}\0${tsmesh}`;
  let found = podAccessByPaths.get(key);
  if (!found) {
    found = (async () => {
      const canRun = async (reveal: readonly string[]): Promise<number | undefined> => {
        for (const uid of [PROXY_UID, APP_UID]) {
          const r = await sh(reveal[0] ?? 'setpriv', [...reveal.slice(1), ...(reveal.length ? asUser(uid) : asUser(uid).slice(1)), 'test', '-x', node, '-a', '-r', tsmesh]);
          if (r.code !== 0) return uid;
        }
        return undefined;
      };
      let uid = await canRun([]);
      if (uid === undefined) return { reveal: [] };
      // The project (the folder of bin/tsmesh.js) and node's folder (of the path given, often
      // a symlink in node_modules/.bin, and of the binary), each under the topmost folder above
      // it that others cannot enter.
      const folders = [dirname(dirname(realpathSync(tsmesh))), dirname(node), dirname(realpathSync(node))];
      const keep: string[] = [];
      const hidden: string[] = [];
      for (const folder of folders) {
        const closed = await closedAncestor(folder);
        if (!closed || keep.some((k) => folder === k || folder.startsWith(k + sep))) continue;
        keep.push(folder);
        hidden.push(closed);
      }
      // the outermost of nested hidden folders covers the others
      const outermost = [...new Set(hidden)].filter((h, _, all) => !all.some((o) => o !== h && h.startsWith(o + sep)));
      if (keep.length > 0) {
        const stash = join(tmpdir(), 'tsmesh-project-stash');
        await mkdir(stash, { recursive: true });
        const reveal = ['unshare', '-m', 'sh', '-c', revealScript(keep, outermost, stash), 'tsmesh-reveal'];
        uid = await canRun(reveal);
        if (uid === undefined) return { reveal };
      }
      return { reveal: [], problem: `UID ${uid} cannot run ${node} or read ${tsmesh}: the project's files must be readable by all (chmod -R o+rX)` };
    })();
    podAccessByPaths.set(key, found);
  }
  return found;
}

/**
 * `cmd` run as `uid` the way the cluster runs pod commands (for a test that runs tsmesh as
 * another user outside a pod): through the mount namespace that shows the project when it
 * sits under a private folder.
 */
export async function asPodUser(uid: number, cmd: readonly string[], options: { node?: string; tsmesh?: string } = {}): Promise<string[]> {
  const { reveal } = await podAccess(options.node ?? process.execPath, options.tsmesh ?? TSMESH_BIN);
  return [...reveal, ...asUser(uid), ...cmd];
}

/** The topmost folder above `dir` that others cannot enter (no o+x), if any. */
async function closedAncestor(dir: string): Promise<string | undefined> {
  const parts = dir.split(sep).filter(Boolean);
  for (let i = 1; i <= parts.length - 1; i++) {
    const folder = sep + parts.slice(0, i).join(sep);
    if (((await stat(folder)).mode & 0o001) === 0) return folder;
  }
  return undefined;
}

/**
 * Why this machine cannot build a cluster, one sentence a reason; empty when it can. Checks
 * root, Linux, the commands on PATH and that the pod users can run `node` and read `tsmesh`;
 * the kernel's support (namespaces, bridge, nat) shows only when the cluster is built.
 */
export async function netnsUnsupportedReasons(options: { node?: string; tsmesh?: string } = {}): Promise<string[]> {
  if (process.platform !== 'linux') return [`network namespaces are a Linux feature (this is ${process.platform})`];
  const reasons: string[] = [];
  if (process.getuid?.() !== 0) reasons.push('not running as root (network namespaces and iptables need it)');
  const missing: string[] = [];
  for (const c of REQUIRED_COMMANDS) if (!(await onPath(c))) missing.push(c);
  if (missing.length > 0) reasons.push(`not on PATH: ${missing.join(', ')} (iproute2, iptables, util-linux)`);
  if (reasons.length === 0) {
    const { problem } = await podAccess(options.node ?? process.execPath, options.tsmesh ?? TSMESH_BIN);
    if (problem) reasons.push(problem);
  }
  return reasons;
}

/** Builds the cluster: namespaces, bridge, addresses, DNS, VIPs, registry, init rules, sidecars. */
export async function netnsCluster(options: ClusterOptions): Promise<NetnsCluster> {
  if (process.getuid?.() !== 0) throw new LocalClusterError('TSMESH_LOCALCLUSTER_UNSUPPORTED', 'needs root (network namespaces, iptables)');
  const names = options.pods.map((p) => `${p.namespace ?? 'default'}/${p.name}`);
  if (new Set(names).size !== names.length) throw new LocalClusterError('TSMESH_LOCALCLUSTER_BAD_INPUT', `duplicate pod names in ${names.join(', ')}`);
  if (options.pods.length > 200) throw new LocalClusterError('TSMESH_LOCALCLUSTER_BAD_INPUT', 'at most 200 pods');
  const node = options.node ?? process.execPath;
  const tsmesh = options.tsmesh ?? TSMESH_BIN;
  removeStaleNamespaces();
  installExitHooks();
  const { reveal, problem } = await podAccess(node, tsmesh);
  if (problem) throw new LocalClusterError('TSMESH_LOCALCLUSTER_UNSUPPORTED', problem);

  const id = `${PREFIX}${process.pid}-${randomBytes(3).toString('hex')}`;
  const dir = await mkdtemp(join(tmpdir(), `${id}-`));
  await chmod(dir, 0o755); // the sidecar (UID 1337) and apps read their files here
  const cluster = new NetnsCluster(id, dir, { ipv6: options.ipv6 ?? false, node, tsmesh, reveal });
  live.add(cluster);
  try {
    await build(cluster, options);
  } catch (err) {
    await cluster.close();
    throw err;
  }
  return cluster;
}

async function build(cluster: NetnsCluster, options: ClusterOptions): Promise<void> {
  const node = cluster.nodeNetns;
  const v6 = cluster.ipv6;

  // The node: a bridge with the pods' gateway address, forwarding on.
  await must('ip', 'netns', 'add', node);
  await must('ip', '-n', node, 'link', 'set', 'lo', 'up');
  await must('ip', '-n', node, 'link', 'add', 'br0', 'type', 'bridge');
  await must('ip', '-n', node, 'addr', 'add', `${GATEWAY}/24`, 'dev', 'br0');
  if (v6) await must('ip', '-n', node, 'addr', 'add', `${GATEWAY6}/64`, 'dev', 'br0', 'nodad');
  await must('ip', '-n', node, 'link', 'set', 'br0', 'up');
  await must('ip', 'netns', 'exec', node, 'sysctl', '-qw', 'net.ipv4.ip_forward=1');

  // The pods.
  for (const [i, spec] of options.pods.entries()) {
    const host = FIRST_POD + i;
    const pod: Pod = {
      name: spec.name,
      namespace: spec.namespace ?? 'default',
      netns: `${cluster.id}-${i}-${spec.name}`.slice(0, 200),
      ip: `${SUBNET}.${host}`,
      ip6: v6 ? `${SUBNET6}${host.toString(16)}` : undefined,
      labels: spec.labels ?? {},
      serviceAccount: spec.serviceAccount ?? spec.name,
      meshed: spec.sidecar ?? false,
      annotationsFile: join(cluster.dir, `${spec.name}.${spec.namespace ?? 'default'}.annotations`),
      sidecar: undefined,
    };
    cluster.pods.push(pod);
    const ns = pod.netns;
    await must('ip', 'netns', 'add', ns);
    await must('ip', '-n', ns, 'link', 'set', 'lo', 'up');
    await must('ip', '-n', node, 'link', 'add', `veth${i}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
    await must('ip', '-n', node, 'link', 'set', `veth${i}`, 'master', 'br0', 'up');
    await must('ip', '-n', ns, 'addr', 'add', `${pod.ip}/24`, 'dev', 'eth0');
    if (pod.ip6) await must('ip', '-n', ns, 'addr', 'add', `${pod.ip6}/64`, 'dev', 'eth0', 'nodad');
    await must('ip', '-n', ns, 'link', 'set', 'eth0', 'up');
    await must('ip', '-n', ns, 'route', 'add', 'default', 'via', GATEWAY);
    if (pod.ip6) await must('ip', '-n', ns, '-6', 'route', 'add', 'default', 'via', GATEWAY6);
    await writeFile(pod.annotationsFile, formatPodInfo(spec.annotations ?? {}) + '\n', { mode: 0o644 });
    await writeFile(join(cluster.dir, `${pod.name}.${pod.namespace}.labels`), formatPodInfo(pod.labels) + '\n', { mode: 0o644 });
  }

  // The services: VIPs that no namespace owns. The pods route them to the node (default route),
  // where a kube-proxy stand-in DNATs them to the endpoints (and masquerades, so replies come back
  // through the node). A pod's sidecar resolves the VIP from the registry before that matters.
  const nat: string[] = ['*nat'];
  for (const [j, spec] of (options.services ?? []).entries()) {
    const namespace = spec.namespace ?? 'default';
    const endpoints = cluster.pods.filter((p, i) => p.namespace === namespace && matches(spec.selector, p.labels) && options.pods[i]!.ready !== false).map((p) => p.ip);
    const service: Service = {
      name: spec.name,
      namespace,
      clusterIP: spec.clusterIP ?? `${FIRST_VIP}${10 + j}`,
      ports: spec.ports.map((p) => ({ ...p, targetPort: p.targetPort ?? p.port })),
      endpoints,
    };
    cluster.services.push(service);
    for (const port of service.ports) {
      endpoints.forEach((ip, k) => {
        const share = endpoints.length - k; // pick uniformly: 1/n, then 1/(n-1) of the rest, ...
        const random = share > 1 ? ` -m statistic --mode random --probability ${(1 / share).toFixed(5)}` : '';
        nat.push(`-A PREROUTING -d ${service.clusterIP}/32 -p tcp --dport ${port.port}${random} -j DNAT --to-destination ${ip}:${port.targetPort}`);
      });
    }
  }
  nat.push('-A POSTROUTING -m conntrack --ctstate DNAT -j MASQUERADE', 'COMMIT', '');
  const restore = await sh('ip', ['netns', 'exec', node, 'iptables-restore'], { input: nat.join('\n') });
  if (restore.code !== 0) throw new LocalClusterError('TSMESH_LOCALCLUSTER_SETUP_FAILED', `kube-proxy rules failed: ${restore.stderr}`);

  // DNS: each pod's /etc/hosts (ip netns exec bind-mounts /etc/netns/<ns>/*), and no resolver.
  for (const pod of cluster.pods) {
    const etc = join('/etc/netns', pod.netns);
    await mkdir(etc, { recursive: true });
    await writeFile(join(etc, 'hosts'), hostsFile(pod, cluster.pods, cluster.services));
    await writeFile(join(etc, 'resolv.conf'), 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n');
  }

  // The registry the sidecars read (DESIGN.md, Registry file).
  const registry = {
    services: cluster.services.map((s, j) => ({
      name: s.name,
      namespace: s.namespace,
      clusterIP: s.clusterIP,
      ports: s.ports.map((p) => (p.name ? { name: p.name, port: p.port, targetPort: p.targetPort } : { port: p.port, targetPort: p.targetPort })),
      selector: options.services![j]!.selector,
      annotations: options.services![j]!.annotations ?? {},
    })),
    pods: cluster.pods.map((p, i) => ({
      name: p.name,
      namespace: p.namespace,
      ip: p.ip,
      labels: p.labels,
      serviceAccount: p.serviceAccount,
      meshed: p.meshed,
      ready: options.pods[i]!.ready ?? true,
    })),
  };
  cluster.registryData = registry;
  await writeFile(cluster.registryFile, stringify(registry), { mode: 0o644 });

  // Interception and sidecars.
  for (const spec of options.pods) {
    const init = spec.init ?? spec.sidecar ?? false;
    if (init !== false) await cluster.init(spec.name, init === true ? [] : init);
  }
  const ca = options.mtls ? await createCA({ trustDomain: 'cluster.local' }) : undefined;
  for (const pod of cluster.pods) {
    if (!pod.meshed) continue;
    const tls: Record<string, string> = ca ? { TSMESH_TLS_DIR: await writeWorkloadIdentity(ca, join(cluster.dir, `${pod.name}.${pod.namespace}.tls`), pod) } : {};
    await cluster.startSidecar(pod.name, { ...tls, ...options.sidecarEnv?.(pod) }, options.sidecarTimeoutMs);
  }
}
