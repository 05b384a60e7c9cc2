// `npm run bench:modules`: what an idle `tsmesh proxy` loads and holds. Starts one sidecar in
// local mode (a registry file, with and without TSMESH_TLS_DIR) as bin/tsmesh.js runs it (heap
// flags, compile cache), twice: once with a module-load trace (test/harness/module-trace.ts) to list what it
// loads, grouped by package, once without to read its memory (VmRSS, RssAnon) after it settled.
// Prints a Markdown table; nothing is asserted (bench/NOTES.md records the figures).
import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { formatPodInfo } from '../../src/config/podinfo.ts';
import { makeCerts } from '../lib/certs.ts';
import { startProcess, stopTree, waitListening, sleep, treeMemory, type Proc } from '../lib/procs.ts';

const repoRoot = resolve(import.meta.dirname, '../..');
const node = join(repoRoot, 'node_modules/.bin/node');
const SETTLE_MS = Number(process.env.SETTLE_MS ?? 5000);

interface Run {
  readonly modules: string[];
  readonly rssKiB: number;
  readonly anonKiB: number;
}

/** A free-looking loopback address of this run (127.0.0.0/8 is all routed to lo on Linux). */
const podIP = `127.${200 + Math.floor(Math.random() * 50)}.${Math.floor(Math.random() * 250)}.${2 + Math.floor(Math.random() * 250)}`;

async function startSidecar(dir: string, tlsDir: string | undefined, trace: string | undefined, extraEnv: NodeJS.ProcessEnv): Promise<Proc> {
  const registry = join(dir, 'registry.yaml');
  await writeFile(registry, `services: [{ name: web, namespace: default, ports: [{ port: 80, targetPort: 8080 }], selector: { app: web } }]\npods: [{ name: pod-a, namespace: default, ip: ${podIP}, labels: { app: web }, meshed: true }]\n`);
  await mkdir(join(dir, 'podinfo'), { recursive: true });
  await writeFile(join(dir, 'podinfo/annotations'), formatPodInfo({}) + '\n');
  await writeFile(join(dir, 'podinfo/labels'), formatPodInfo({ app: 'web' }) + '\n');
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    POD_NAME: 'pod-a',
    POD_NAMESPACE: 'default',
    POD_IP: podIP,
    SERVICE_ACCOUNT: 'pod-a',
    TSMESH_BIND_ADDRESS: podIP,
    TSMESH_REGISTRY: registry,
    TSMESH_ANNOTATIONS: join(dir, 'podinfo/annotations'),
    TSMESH_LABELS: join(dir, 'podinfo/labels'),
    TSMESH_CONTROL_PLANE: 'https://127.0.0.1:9',
    ...(tlsDir ? { TSMESH_TLS_DIR: tlsDir } : {}),
    ...extraEnv,
    ...(trace ? { MODULE_TRACE_FILE: trace, NODE_OPTIONS: `--import ${join(repoRoot, 'test/harness/module-trace.ts')}` } : {}),
  };
  const proc = startProcess('tsmesh proxy', node, [join(repoRoot, 'bin/tsmesh.js'), 'proxy'], { logFile: join(dir, 'sidecar.log'), env, cwd: repoRoot });
  await waitListening(proc, podIP, 15020, 20_000);
  return proc;
}

async function measure(dir: string, tlsDir: string | undefined, extraEnv: NodeJS.ProcessEnv = {}): Promise<Run> {
  await mkdir(dir, { recursive: true });
  const trace = join(dir, 'modules.txt');
  await writeFile(trace, '');
  const traced = await startSidecar(dir, tlsDir, trace, extraEnv);
  await sleep(1000);
  await stopTree(traced);
  const modules = [...new Set((await readFile(trace, 'utf8')).split('\n').filter(Boolean))];
  const proc = await startSidecar(dir, tlsDir, undefined, extraEnv);
  await sleep(SETTLE_MS);
  const mem = treeMemory([proc.pid]);
  await stopTree(proc);
  return { modules, rssKiB: mem.rssKiB, anonKiB: mem.anonKiB };
}

/** The package a module URL belongs to ("node:" built-ins as one, tsmesh's own sources as "tsmesh"). */
function packageOf(url: string): string {
  if (url.startsWith('node:')) return 'node: built-ins';
  const m = /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
  return m ? m[1]! : url.includes('/src/') ? 'tsmesh (src/)' : 'other';
}

function table(name: string, run: Run): string {
  const counts = new Map<string, number>();
  for (const url of run.modules) counts.set(packageOf(url), (counts.get(packageOf(url)) ?? 0) + 1);
  const rows = [...counts].sort((a, b) => b[1] - a[1]).map(([pkg, n]) => `| ${pkg} | ${n} |`);
  return [
    `### ${name}`,
    '',
    `Idle after ${SETTLE_MS / 1000} s: RSS ${(run.rssKiB / 1024).toFixed(1)} MiB, RssAnon ${(run.anonKiB / 1024).toFixed(1)} MiB; ${run.modules.length} modules loaded.`,
    '',
    '| package | modules |',
    '| --- | --- |',
    ...rows,
    '',
  ].join('\n');
}

const dir = await mkdtemp(join(tmpdir(), 'tsmesh-modules-'));
try {
  const certs = await makeCerts(join(dir, 'certs'), ['pod-a']);
  const plain = await measure(join(dir, 'plain'), undefined);
  const mtls = await measure(join(dir, 'mtls'), certs.get('pod-a')!.dir);
  // span export configured as the injector configures it (nothing listens there: idle, no spans)
  const exporting = await measure(join(dir, 'export'), certs.get('pod-a')!.dir, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9' });
  process.stdout.write(
    [
      table('tsmesh proxy, local mode (registry file), plaintext mesh', plain),
      table('tsmesh proxy, local mode with TSMESH_TLS_DIR (mTLS)', mtls),
      table('the same with OTEL_EXPORTER_OTLP_ENDPOINT (span export, as the injector sets it)', exporting),
    ].join('\n'),
  );
} finally {
  await rm(dir, { recursive: true, force: true });
}
