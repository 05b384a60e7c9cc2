// The soak test (not in CI): a long run at a fixed rate through the mTLS sidecar pair, with an
// upstream that fails 5% of requests, to show what a day of traffic would: memory with no
// growth trend, the error rate the client sees (only what the retry budget could not save),
// and each sidecar's requests in flight, file descriptors and RSS before and after (back where
// they started). Then a slow-reader phase (issue 14): N connections each pipelining 4 requests
// for 256 KiB and reading slowly, with RSS before, at its peak during, and after.
//
//   node bench/soak/run.ts [--minutes 30] [--rps 500] [--settle 70] [--slow-readers 400]
// Needs h2load (Debian nghttp2-client). Everything on loopback (127.0.8.x). Results are
// appended to bench/soak/RESULTS.md.
import { spawn, execFileSync } from 'node:child_process';
import { connect } from 'node:net';
import { appendFile, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir, cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { createCA, writeWorkloadIdentity } from '../../src/localcluster/identity.ts';
import { benchLock } from '../lib/lock.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const { values } = parseArgs({ options: { minutes: { type: 'string', default: '30' }, rps: { type: 'string', default: '500' }, settle: { type: 'string', default: '70' }, 'slow-readers': { type: 'string', default: '400' } } });
const minutes = Number(values.minutes);
const rps = Number(values.rps);
const A = '127.0.8.10';
const B = '127.0.8.11';
const CONNECTIONS = 8;

// pod-a's app: 1 KB answers; every 20th request fails with 503 (5%); /256k: 256 KiB (slow readers)
const APP = `
import http from 'node:http';
let n = 0;
const big = Buffer.alloc(256 * 1024, 120);
http.createServer((req, res) => { req.resume(); req.on('end', () => { if (req.url === '/256k') return res.end(big); res.statusCode = ++n % 20 === 0 ? 503 : 200; res.end('x'.repeat(1024)); }); }).listen(8080, '${A}', () => console.log('ready'));
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
    const state = async () => ({ a: await sidecarState(pids['pod-a']!, A), b: await sidecarState(pids['pod-b']!, B) });
    const before = await state();
    const fdsAtStart = { a: before.a.fds, b: before.b.fds };
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
    const after = await state();
    const fdsAtEnd = { a: after.a.fds, b: after.b.fds };
    const codes = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(out);
    const done = /requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored/.exec(out);
    const total = Number(done?.[2] ?? 0);
    const errors = Number(codes?.[4] ?? 0) + Number(codes?.[3] ?? 0) + Number(done?.[5] ?? 0);
    const trend = (k: 'a' | 'b') => slope(samples.map((s) => [s.t, s[k]]));
    const half = samples.slice(Math.floor(samples.length / 2));
    const lines = [
      `\n## Soak ${new Date().toISOString()}: ${minutes} min at ${rps} req/s, mTLS pair, upstream failing 5%`,
      `Machine: ${cpus()[0]?.model ?? '?'}, ${cpus().length} cores; Node ${process.version}; command: \`node bench/soak/run.ts --minutes ${minutes} --rps ${rps} --settle ${settle} --slow-readers ${values['slow-readers']}\``,
      '',
      '| measure | pod-b (client side) | pod-a (server side) |',
      '| --- | --- | --- |',
      `| RSS first sample / last sample (MiB) | ${samples[0]?.b.toFixed(0)} / ${samples.at(-1)?.b.toFixed(0)} | ${samples[0]?.a.toFixed(0)} / ${samples.at(-1)?.a.toFixed(0)} |`,
      `| RSS min / max over the run (MiB) | ${min(samples.map((s) => s.b))} / ${max(samples.map((s) => s.b))} | ${min(samples.map((s) => s.a))} / ${max(samples.map((s) => s.a))} |`,
      `| RSS trend over the whole run / the second half (MiB per minute) | ${trend('b').toFixed(2)} / ${slope(half.map((s) => [s.t, s.b])).toFixed(2)} | ${trend('a').toFixed(2)} / ${slope(half.map((s) => [s.t, s.a])).toFixed(2)} |`,
      `| file descriptors at start / right after the load (pooled connections open) / ${settle} s later | ${fdsAtStart.b} / ${fdsAfterLoad.b} / ${fdsAtEnd.b} | ${fdsAtStart.a} / ${fdsAfterLoad.a} / ${fdsAtEnd.a} |`,
      `| before the load: in flight / file descriptors / RSS (MiB) | ${show(before.b)} | ${show(before.a)} |`,
      `| ${settle} s after the load: in flight / file descriptors / RSS (MiB) | ${show(after.b)} | ${show(after.a)} |`,
      '',
      `Requests: ${total} done; errors seen by the client: ${errors} (${((100 * errors) / Math.max(1, total)).toFixed(3)}%) — the upstream failed 5% of the tries it saw; the retry budget turned the rest into successes.`,
      '',
    ];
    const slow = Number(values['slow-readers']);
    if (slow > 0) {
      console.log(`slow readers: ${slow} connections, each 4 pipelined requests for 256 KiB, read at 64 KiB per 100 ms`);
      const start = await state();
      const peak = { a: start.a.rss, b: start.b.rss };
      const sampler2 = setInterval(() => {
        void Promise.all([rssMiB(pids['pod-a']!), rssMiB(pids['pod-b']!)]).then(([a, b]) => {
          peak.a = Math.max(peak.a, a);
          peak.b = Math.max(peak.b, b);
        });
      }, 250);
      const t0 = Date.now();
      const result = await slowReaders(B, slow);
      const seconds = (Date.now() - t0) / 1000;
      clearInterval(sampler2);
      await new Promise((r) => setTimeout(r, settle * 1000));
      const end = await state();
      lines.push(
        `Slow readers (issue 14): ${slow} connections x 4 pipelined requests for 256 KiB, read at 64 KiB per 100 ms, in ${seconds.toFixed(1)} s: ${result.ok} of ${slow * 4} answered 200 with the whole 256 KiB; ${result.complete} responses complete; statuses ${JSON.stringify(result.statuses)}; ${result.errors} connection errors.`,
        '',
        '| measure | pod-b (client side) | pod-a (server side) |',
        '| --- | --- | --- |',
        `| before: in flight / file descriptors / RSS (MiB) | ${show(start.b)} | ${show(start.a)} |`,
        `| RSS at its peak during (MiB) | ${peak.b.toFixed(0)} | ${peak.a.toFixed(0)} |`,
        `| ${settle} s after: in flight / file descriptors / RSS (MiB) | ${show(end.b)} | ${show(end.a)} |`,
        `| RSS after vs before | ${pct(end.b.rss, start.b.rss)} | ${pct(end.a.rss, start.a.rss)} |`,
        `| V8 heap / external memory before -> after (MiB) | ${memory(start.b)} -> ${memory(end.b)} | ${memory(start.a)} -> ${memory(end.a)} |`,
        '',
      );
    }
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

/** A sidecar's requests in flight (admin /config, from loopback), file descriptors and RSS. */
async function sidecarState(pid: number, ip: string): Promise<{ inFlight: number; fds: number; rss: number; heap: number; external: number }> {
  const config = (await (await fetch(`http://${ip}:15020/config`)).json()) as { inFlight: number };
  const metrics = await (await fetch(`http://${ip}:15020/metrics`)).text();
  const gauge = (name: string) => Number(new RegExp(`^${name} (\\S+)`, 'm').exec(metrics)?.[1] ?? NaN) / 1024 / 1024;
  return { inFlight: config.inFlight, fds: await fds(pid), rss: await rssMiB(pid), heap: gauge('nodejs_heap_size_total_bytes'), external: gauge('nodejs_external_memory_bytes') };
}
const memory = (s: { heap: number; external: number }) => `${s.heap.toFixed(0)} / ${s.external.toFixed(0)}`;
const show = (s: { inFlight: number; fds: number; rss: number }) => `${s.inFlight} / ${s.fds} / ${s.rss.toFixed(0)}`;
const pct = (after: number, before: number) => `${after >= before ? '+' : ''}${((100 * (after - before)) / before).toFixed(0)}%`;

/**
 * `n` connections to the outbound at once, each writing 4 pipelined GETs for 256 KiB and then
 * reading 64 KiB every 100 ms; resolves when every connection has its 4 responses (or failed).
 */
function slowReaders(ip: string, n: number): Promise<{ complete: number; ok: number; statuses: Record<string, number>; errors: number }> {
  const request = 'GET /256k HTTP/1.1\r\nHost: pod-service\r\n\r\n'.repeat(4);
  let complete = 0;
  let ok = 0;
  let errors = 0;
  const statuses: Record<string, number> = {};
  const one = () =>
    new Promise<void>((resolve) => {
      const s = connect({ host: ip, port: 15001 });
      let buf: Buffer = Buffer.alloc(0);
      let bodyLeft = -1; // -1: reading a head
      let responses = 0;
      const finish = () => {
        clearInterval(timer);
        s.destroy();
        resolve();
      };
      s.on('error', () => {
        errors++;
        finish();
      });
      s.on('close', finish);
      s.on('connect', () => s.write(request));
      const timer = setInterval(() => {
        const chunk = (s.read(64 * 1024) ?? s.read()) as Buffer | null;
        if (!chunk) return;
        buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
        for (;;) {
          if (bodyLeft === -1) {
            const end = buf.indexOf('\r\n\r\n');
            if (end === -1) break;
            const head = buf.subarray(0, end).toString('latin1');
            bodyLeft = Number(/content-length: (\d+)/i.exec(head)?.[1] ?? 0);
            const status = head.slice(9, 12);
            statuses[status] = (statuses[status] ?? 0) + 1;
            if (status === '200' && bodyLeft === 256 * 1024) ok++;
            buf = buf.subarray(end + 4);
          }
          const take = Math.min(bodyLeft, buf.length);
          bodyLeft -= take;
          buf = buf.subarray(take);
          if (bodyLeft > 0) break;
          bodyLeft = -1;
          complete++;
          if (++responses === 4) return finish();
        }
      }, 100);
    });
  return Promise.all(Array.from({ length: n }, one)).then(() => ({ complete, ok, statuses, errors }));
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
await benchLock((text) => console.log(text));
process.exitCode = await main();
