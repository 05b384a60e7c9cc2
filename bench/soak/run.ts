// The soak test (not in CI): a long run at a fixed rate through the mTLS sidecar pair, with an
// upstream that fails 5% of requests, to show what a day of traffic would: memory with no
// growth trend, the error rate the client sees (only what the retry budget could not save),
// and file descriptors at the end equal to the start.
//
//   node bench/soak/run.ts [--minutes 30] [--rps 500] [--settle 70]
// Needs h2load (Debian nghttp2-client). Everything on loopback (127.0.8.x). Results are
// appended to bench/soak/RESULTS.md.
import { spawn, execFileSync } from 'node:child_process';
import { appendFile, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir, cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { createCA, writeWorkloadIdentity } from '../../src/localcluster/identity.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const { values } = parseArgs({ options: { minutes: { type: 'string', default: '30' }, rps: { type: 'string', default: '500' }, settle: { type: 'string', default: '70' } } });
const minutes = Number(values.minutes);
const rps = Number(values.rps);
const A = '127.0.8.10';
const B = '127.0.8.11';
const CONNECTIONS = 8;

// pod-a's app: 1 KB answers; every 20th request fails with 503 (5%)
const APP = `
import http from 'node:http';
let n = 0;
http.createServer((req, res) => { req.resume(); req.on('end', () => { res.statusCode = ++n % 20 === 0 ? 503 : 200; res.end('x'.repeat(1024)); }); }).listen(8080, '${A}', () => console.log('ready'));
`;

async function main(): Promise<number> {
  const dir = await mkdtemp(join(tmpdir(), 'tsmesh-soak-'));
  const children: ReturnType<typeof spawn>[] = [];
  const stop = () => children.forEach((c) => c.kill('SIGKILL'));
  process.once('SIGINT', () => {
    stop();
    process.exit(130);
  });
  try {
    const registry = join(dir, 'registry.yaml');
    await writeFile(registry, stringify({ services: [{ name: 'pod-service', ports: [{ port: 80, targetPort: 8080 }], selector: { app: 'web-app' } }], pods: [{ name: 'pod-a', ip: A, labels: { app: 'web-app' }, serviceAccount: 'pod-a', meshed: true }, { name: 'pod-b', ip: B, labels: { app: 'client' }, serviceAccount: 'pod-b', meshed: true }] }));
    const ca = await createCA({ trustDomain: 'cluster.local' });
    const app = spawn(process.execPath, ['--input-type=module', '-e', APP], { stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(app);
    await new Promise((r) => app.stdout!.once('data', r));
    const pids: Record<string, number> = {};
    for (const [name, ip] of [['pod-a', A], ['pod-b', B]] as const) {
      const tls = await writeWorkloadIdentity(ca, join(dir, name), { namespace: 'default', serviceAccount: name });
      const child = spawn(process.execPath, [join(ROOT, 'bin/tsmesh.js'), 'proxy'], {
        env: { ...process.env, POD_NAME: name, POD_IP: ip, TSMESH_BIND_ADDRESS: ip, TSMESH_REGISTRY: registry, TSMESH_ANNOTATIONS: join(dir, `${name}.annotations`), TSMESH_TLS_DIR: tls },
        stdio: ['ignore', 'ignore', 'inherit'], // access logs are on; they go to /dev/null
      });
      children.push(child);
      pids[name] = child.pid!;
    }
    for (const ip of [A, B]) await waitReady(ip);
    const fdsAtStart = { a: await fds(pids['pod-a']!), b: await fds(pids['pod-b']!) };
    console.log(`soak: ${minutes} min at ${rps} req/s through the mTLS pair (upstream fails 5%); sampling memory every 10 s`);
    const samples: { t: number; a: number; b: number }[] = [];
    const started = Date.now();
    const sampler = setInterval(() => {
      void Promise.all([rssMiB(pids['pod-a']!), rssMiB(pids['pod-b']!)]).then(([a, b]) => {
        samples.push({ t: (Date.now() - started) / 60_000, a, b });
        if (samples.length % 6 === 0) console.log(`  ${((Date.now() - started) / 60_000).toFixed(1)} min: RSS pod-a ${a.toFixed(0)} MiB, pod-b ${b.toFixed(0)} MiB`);
      });
    }, 10_000);
    const out = await run('h2load', ['--h1', `-c${CONNECTIONS}`, '--rps', String(rps / CONNECTIONS), '-D', String(Math.round(minutes * 60)), '-H', ':authority: pod-service', `http://${B}:15001/`]);
    clearInterval(sampler);
    // Pooled keep-alive connections stay open while they are useful: right after the load they
    // are still there; after the idle timeouts (60 s for the listeners, 50 s for the mesh
    // pools) they are closed, and the descriptors must be back where they started.
    await new Promise((r) => setTimeout(r, 2000));
    const fdsAfterLoad = { a: await fds(pids['pod-a']!), b: await fds(pids['pod-b']!) };
    const settle = Number(values.settle);
    console.log(`load done; waiting ${settle} s for idle connections to close`);
    await new Promise((r) => setTimeout(r, settle * 1000));
    const fdsAtEnd = { a: await fds(pids['pod-a']!), b: await fds(pids['pod-b']!) };
    const codes = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(out);
    const done = /requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored/.exec(out);
    const total = Number(done?.[2] ?? 0);
    const errors = Number(codes?.[4] ?? 0) + Number(codes?.[3] ?? 0) + Number(done?.[5] ?? 0);
    const trend = (k: 'a' | 'b') => slope(samples.map((s) => [s.t, s[k]]));
    const half = samples.slice(Math.floor(samples.length / 2));
    const lines = [
      `\n## Soak ${new Date().toISOString()}: ${minutes} min at ${rps} req/s, mTLS pair, upstream failing 5%`,
      `Machine: ${cpus()[0]?.model ?? '?'}, ${cpus().length} cores; Node ${process.version}; command: \`node bench/soak/run.ts --minutes ${minutes} --rps ${rps} --settle ${settle}\``,
      '',
      '| measure | pod-b (client side) | pod-a (server side) |',
      '| --- | --- | --- |',
      `| RSS first sample / last sample (MiB) | ${samples[0]?.b.toFixed(0)} / ${samples.at(-1)?.b.toFixed(0)} | ${samples[0]?.a.toFixed(0)} / ${samples.at(-1)?.a.toFixed(0)} |`,
      `| RSS min / max over the run (MiB) | ${min(samples.map((s) => s.b))} / ${max(samples.map((s) => s.b))} | ${min(samples.map((s) => s.a))} / ${max(samples.map((s) => s.a))} |`,
      `| RSS trend over the whole run / the second half (MiB per minute) | ${trend('b').toFixed(2)} / ${slope(half.map((s) => [s.t, s.b])).toFixed(2)} | ${trend('a').toFixed(2)} / ${slope(half.map((s) => [s.t, s.a])).toFixed(2)} |`,
      `| file descriptors at start / right after the load (pooled connections open) / ${settle} s later | ${fdsAtStart.b} / ${fdsAfterLoad.b} / ${fdsAtEnd.b} | ${fdsAtStart.a} / ${fdsAfterLoad.a} / ${fdsAtEnd.a} |`,
      '',
      `Requests: ${total} done; errors seen by the client: ${errors} (${((100 * errors) / Math.max(1, total)).toFixed(3)}%) — the upstream failed 5% of the tries it saw; the retry budget turned the rest into successes.`,
      '',
    ];
    await appendFile(join(ROOT, 'bench/soak/RESULTS.md'), lines.join('\n'));
    console.log(lines.join('\n'));
    return 0;
  } finally {
    stop();
    await rm(dir, { recursive: true, force: true });
  }
}

function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    c.stdout.on('data', (d) => (out += d));
    c.stderr.on('data', (d) => (out += d));
    c.on('error', reject);
    c.on('close', () => resolve(out));
  });
}

async function waitReady(ip: string): Promise<void> {
  for (let i = 0; i < 300; i++) {
    try {
      if ((await fetch(`http://${ip}:15020/healthz/ready`)).ok) return;
    } catch {
      /* starting */
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`the sidecar on ${ip} was not ready within 15 s`);
}

async function rssMiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
}

async function fds(pid: number): Promise<number> {
  return (await readdir(`/proc/${pid}/fd`)).length;
}

/** Least-squares slope of y over x. */
function slope(points: [number, number][]): number {
  const n = points.length;
  if (n < 2) return 0;
  const mx = points.reduce((s, [x]) => s + x, 0) / n;
  const my = points.reduce((s, [, y]) => s + y, 0) / n;
  const num = points.reduce((s, [x, y]) => s + (x - mx) * (y - my), 0);
  const den = points.reduce((s, [x]) => s + (x - mx) ** 2, 0);
  return den === 0 ? 0 : num / den;
}

const min = (a: number[]) => (a.length ? Math.min(...a).toFixed(0) : '?');
const max = (a: number[]) => (a.length ? Math.max(...a).toFixed(0) : '?');

execFileSync('h2load', ['--version']);
process.exitCode = await main();
