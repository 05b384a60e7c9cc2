// `node bench/profile.ts`: one tsmesh pair under the benchmark's load, for diagnosis (not the
// method; `npm run bench` is). Prints per-sidecar CPU and memory, the latency percentiles and,
// with --cpu-prof, a summary of each sidecar's V8 CPU profile by package and by function.
// `--node-args` and `--env` try V8 flags and settings without editing anything; `--summarize`
// summarizes .cpuprofile files already made. See bench/NOTES.md for what it found.
import { mkdtemp, mkdir, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { makeCerts } from './lib/certs.ts';
import { appConf, startNginx } from './lib/nginx.ts';
import { startTsmeshPair, warmCompileCache } from './lib/tsmesh.ts';
import { fixedRate, highestThroughput, probe, writeLoadFiles, PAYLOAD } from './lib/load.ts';
import { stopAll, stopTree, treeCpuSeconds, treeMemory, sleep } from './lib/procs.ts';
import { latencyOf } from './lib/results.ts';
import { topology, directUrl, pairUrl } from './lib/topology.ts';
import { formatSummary, summarizeProfile } from './lib/cpuprofile.ts';
import { benchLock } from './lib/lock.ts';

const HELP = `Usage: node bench/profile.ts [options]     (Node 24: node_modules/.bin/node bench/profile.ts)

Starts the app and one tsmesh pair, sends the fixed-rate load, prints each sidecar's CPU and
memory and the latencies. A diagnostic, not the method (that is npm run bench).

  --plain               no mTLS between the pair (default: mTLS)
  --seconds S           measured seconds at the fixed rate (default 15)
  --warmup S            seconds of the same load before (default 2)
  --rate R, --connections C   default 1000, 16
  --spread              16 single-connection h2load started 1/rate apart (no bursts)
  --wrk S               then S seconds of wrk -c64 (highest throughput)
  --idle S              wait S seconds after the load and report memory again (default 0)
  --cpu-prof DIR        run the sidecars with --cpu-prof into DIR and summarize the profiles
  --node-args "ARGS"    more Node options for the sidecars (e.g. "--max-semi-space-size=8")
  --env K=V             a variable for the sidecars (repeatable, e.g. TSMESH_WORKERS=2)
  --annotation K=V      a pod annotation for both sidecars (repeatable, e.g.
                        tsmesh.io/trace-sampling=0, tsmesh.io/log-level=warn)
  --summarize FILE...   only summarize these .cpuprofile files
  --top N               rows per profile table (default 25)
`;

const repoRoot = fileURLToPath(new URL('..', import.meta.url));

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      plain: { type: 'boolean' },
      seconds: { type: 'string' },
      warmup: { type: 'string' },
      rate: { type: 'string' },
      connections: { type: 'string' },
      spread: { type: 'boolean' },
      wrk: { type: 'string' },
      idle: { type: 'string' },
      'cpu-prof': { type: 'string' },
      'node-args': { type: 'string' },
      env: { type: 'string', multiple: true },
      annotation: { type: 'string', multiple: true },
      summarize: { type: 'boolean' },
      top: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return;
  }
  const top = Number(values.top ?? 25);
  if (values.summarize) {
    for (const f of positionals) process.stdout.write(`${formatSummary(await summarizeProfile(f, top))}\n\n`);
    return;
  }
  await benchLock((text) => process.stdout.write(`${text}\n`));
  const seconds = Number(values.seconds ?? 15);
  const warmup = Number(values.warmup ?? 2);
  const rate = Number(values.rate ?? 1000);
  const connections = Number(values.connections ?? 16);
  const mtls = !values.plain;
  const profDir = values['cpu-prof'];
  const nodeArgs = [...(values['node-args']?.split(/\s+/).filter(Boolean) ?? []), ...(profDir ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : [])];
  const pairs = (list: string[] | undefined, option: string): Record<string, string> => {
    const out: Record<string, string> = {};
    for (const kv of list ?? []) {
      const eq = kv.indexOf('=');
      if (eq < 1) throw new Error(`--${option} wants K=V, got "${kv}"`);
      out[kv.slice(0, eq)] = kv.slice(eq + 1);
    }
    return out;
  };
  const env: NodeJS.ProcessEnv = pairs(values.env, 'env');
  const annotations = pairs(values.annotation, 'annotation');
  if (profDir) {
    await mkdir(profDir, { recursive: true });
    for (const f of await readdir(profDir)) if (f.endsWith('.cpuprofile')) await rm(join(profDir, f));
  }

  const work = await mkdtemp(join(tmpdir(), 'tsmesh-profile-'));
  try {
    const certs = await makeCerts(join(work, 'certs'), [topology.podA.name, topology.podB.name], topology.namespace);
    const files = await writeLoadFiles(work);
    await warmCompileCache(repoRoot, join(work, 'compile-cache.log'));
    const app = await startNginx('app (nginx)', join(work, 'app'), appConf(join(work, 'app'), PAYLOAD), topology.app);
    await probe(directUrl);
    const pair = await startTsmeshPair({ repoRoot, dir: join(work, 'pair'), mtls, certs, nodeArgs, env, annotations });
    const [podA, podB] = pair.procs as [(typeof pair.procs)[0], (typeof pair.procs)[0]];
    const mem = () => ({ a: treeMemory([podA.pid]), b: treeMemory([podB.pid]) });
    const mib = (kib: number) => (kib / 1024).toFixed(1);
    await sleep(1000);
    const idle = mem();
    process.stdout.write(`mTLS ${mtls} (pod-a inbound reports mtls=${pair.observedMtls}); node args: ${nodeArgs.join(' ') || '-'}; env: ${JSON.stringify(env)}; annotations: ${JSON.stringify(annotations)}\n`);
    process.stdout.write(`idle RSS after one request: pod-a ${mib(idle.a.rssKiB)} MiB (${idle.a.processes} proc), pod-b ${mib(idle.b.rssKiB)} MiB (${idle.b.processes} proc); RssAnon ${mib(idle.a.anonKiB)}, ${mib(idle.b.anonKiB)}\n`);
    const load = { url: pairUrl, rate, connections, files, workDir: work, spread: values.spread ?? false };
    await fixedRate({ ...load, seconds: warmup, tag: 'warmup' });
    const cpuA0 = treeCpuSeconds([podA.pid]);
    const cpuB0 = treeCpuSeconds([podB.pid]);
    const fr = await fixedRate({ ...load, seconds, tag: 'measured' });
    const cpuA = treeCpuSeconds([podA.pid]) - cpuA0;
    const cpuB = treeCpuSeconds([podB.pid]) - cpuB0;
    const loaded = mem();
    const l = latencyOf(fr.durationsUs.map((us) => us / 1000));
    const per1000 = (s: number) => ((s / fr.requests) * 1000).toFixed(3);
    process.stdout.write(
      `fixed rate: ${fr.requests} requests (${fr.achievedRps.toFixed(0)}/s), ${fr.errors} errors; p50 ${l.p50.toFixed(2)} ms, p90 ${l.p90.toFixed(2)} ms, p99 ${l.p99.toFixed(2)} ms, p99.9 ${l.p999.toFixed(2)} ms\n` +
        `CPU s/1000 req: pod-a ${per1000(cpuA)}, pod-b ${per1000(cpuB)}, pair ${per1000(cpuA + cpuB)}\n` +
        `RSS under load: pod-a ${mib(loaded.a.rssKiB)} MiB, pod-b ${mib(loaded.b.rssKiB)} MiB (peak ${mib(loaded.a.hwmKiB)}, ${mib(loaded.b.hwmKiB)}); RssAnon ${mib(loaded.a.anonKiB)}, ${mib(loaded.b.anonKiB)}\n`,
    );
    if (values.wrk) {
      const w = await highestThroughput({ url: pairUrl, threads: 2, connections: 64, seconds: Number(values.wrk), files, workDir: work, tag: 'wrk' });
      const after = mem();
      process.stdout.write(`highest throughput: ${w.rps.toFixed(0)} req/s, ${w.errors} errors; RSS after: pod-a ${mib(after.a.rssKiB)}, pod-b ${mib(after.b.rssKiB)} MiB (peak ${mib(after.a.hwmKiB)}, ${mib(after.b.hwmKiB)})\n`);
    }
    if (values.idle) {
      await sleep(Number(values.idle) * 1000);
      const later = mem();
      process.stdout.write(`RSS ${values.idle}s after the load: pod-a ${mib(later.a.rssKiB)} MiB, pod-b ${mib(later.b.rssKiB)} MiB; RssAnon ${mib(later.a.anonKiB)}, ${mib(later.b.anonKiB)}\n`);
    }
    await Promise.all(pair.procs.map((p) => stopTree(p, 10_000)));
    await stopTree(app);
    if (profDir) {
      for (const f of (await readdir(profDir)).filter((f) => f.endsWith('.cpuprofile')).sort()) {
        process.stdout.write(`\n${formatSummary(await summarizeProfile(join(profDir, f), top))}\n`);
      }
    }
  } finally {
    await stopAll();
    await rm(work, { recursive: true, force: true });
  }
}

await main();
