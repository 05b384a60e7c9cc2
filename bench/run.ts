// `npm run bench`: what a proxy pair adds, measured by Istio's method (DESIGN.md, "Benchmark
// method"): a fixed 1000 requests/s over 16 connections with 1 KB bodies, every case side by
// side in one run (direct, nginx pair plain and mTLS, tsmesh pair plain and mTLS at the default
// trace sampling and at 100%), direct at the start and at the end of every pass, several
// passes, medians and ratios tsmesh/nginx; then the same in the real topology (pods as network
// namespaces, iptables, the Service's ClusterIP: ./lib/netns.ts), with its own direct runs.
// The sidecars export spans as deployed ones do, to a stand-in OTLP/HTTP collector.
// How to run it and what the columns mean: docs/benchmark.md.
import { mkdtemp, mkdir, rm, writeFile, copyFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BenchError } from './lib/errors.ts';
import { parseOptions, HELP, type Options } from './lib/options.ts';
import { makeCerts, type PodCert } from './lib/certs.ts';
import { appConf, proxyConf, startNginx, NGINX_WORKERS } from './lib/nginx.ts';
import { startTsmeshPair, warmCompileCache, NotAvailable, HANDSHAKE_OK } from './lib/tsmesh.ts';
import { probe, probeInNetns, fixedRate, highestThroughput, writeLoadFiles, PAYLOAD, type LoadFiles } from './lib/load.ts';
import { stopAll, stopTree, treeCpuSeconds, treeMemory, largestTreeMemory, waitListening } from './lib/procs.ts';
import { startCollector, stopCollector } from './lib/collector.ts';
import { benchLock } from './lib/lock.ts';
import { startNetnsCase, netnsCompileCache, warmNetnsCompileCache, NetnsUnavailable, type NetnsKind } from './lib/netns.ts';
import { toolVersions, nodeVersion, machineInfo, loadAverage, cpuSample, stealPercent, gitDescribe, type Versions } from './lib/machine.ts';
import { CASE_LABELS, latencyOf, summarize, ratios, goals, isDirect, type CaseId, type Measurement } from './lib/results.ts';
import { textTable, markdownTable, ratioLines, goalSetLines, perPassTable, latencySvg, recordRun } from './lib/report.ts';
import { mergeSorted } from './lib/stats.ts';
import { topology, directUrl, pairUrl } from './lib/topology.ts';

const repoRoot = fileURLToPath(new URL('..', import.meta.url));
const benchDir = join(repoRoot, 'bench');
const sidecarNode = join(repoRoot, 'node_modules/.bin/node');
const MiB = 1024;

let startedAt = Date.now();
/** Set on SIGINT/SIGTERM/SIGHUP: every process is being stopped and the run ends without a report. */
let interrupted = false;
function checkInterrupted(): void {
  if (interrupted) throw new BenchError('BENCH_INTERRUPTED', 'interrupted: every process the benchmark started was stopped');
}
function say(text: string): void {
  const t = ((Date.now() - startedAt) / 1000).toFixed(0).padStart(4);
  process.stdout.write(`[${t}s] ${text}\n`);
}

/** A running case: the proxies whose CPU and memory are measured (none for direct), where the load goes, how to stop it. */
interface Pair {
  pids: number[];
  stop(): Promise<void>;
  observedMtls?: string;
  /** where the load generator sends, when the case decides (the netns topology) */
  url?: string;
  /** the network namespace the load generator runs in */
  netns?: string;
}

interface Runner {
  id: CaseId;
  url: string;
  start?: () => Promise<Pair>;
}

/** The stand-in collector's reports (export requests and bytes), for the notes. */
const collectorReports: string[] = [];
/** Where the loopback sidecars export spans (OTEL_EXPORTER_OTLP_ENDPOINT), as deployed ones do. */
const COLLECTOR_HOST = '127.0.0.12';
const TRACE_ALL = { 'tsmesh.io/trace-sampling': '1' };

function runners(work: string, certs: Map<string, PodCert>, compileCache: string): Record<CaseId, Runner> {
  const a = certs.get(topology.podA.name)!;
  const b = certs.get(topology.podB.name)!;
  const outbound = { host: topology.podB.ip, port: topology.outboundPort };
  const inbound = { host: topology.podA.ip, port: topology.inboundPort };
  const nginxPair = async (id: CaseId, mtls: boolean): Promise<Pair> => {
    const dir = join(work, id);
    // Server side first (pod-a: inbound -> app), then client side (pod-b: outbound -> pod-a's inbound).
    const server = await startNginx(`nginx ${id} (pod-a)`, join(dir, 'pod-a'), proxyConf(join(dir, 'pod-a'), inbound, topology.app, mtls ? { serverTls: a } : {}), inbound);
    try {
      const client = await startNginx(
        `nginx ${id} (pod-b)`,
        join(dir, 'pod-b'),
        proxyConf(join(dir, 'pod-b'), outbound, inbound, mtls ? { clientTls: { own: b, peerName: a.dnsName } } : {}),
        outbound,
      );
      return { pids: [server.pid, client.pid], stop: async () => void (await Promise.all([server, client].map((p) => stopTree(p)))) };
    } catch (err) {
      await stopTree(server);
      throw err;
    }
  };
  const tsmeshPair = async (id: CaseId, mtls: boolean, annotations: Record<string, string> = {}): Promise<Pair> => {
    const env = { OTEL_EXPORTER_OTLP_ENDPOINT: `http://${COLLECTOR_HOST}:4318` };
    const pair = await startTsmeshPair({ repoRoot, dir: join(work, id), mtls, certs, env, annotations });
    return { pids: pair.procs.map((p) => p.pid), stop: async () => void (await Promise.all(pair.procs.map((p) => stopTree(p)))), observedMtls: pair.observedMtls };
  };
  const netnsCase = (id: CaseId, kind: NetnsKind, annotations: Record<string, string> = {}) => async (): Promise<Pair> => {
    let setup;
    try {
      setup = await startNetnsCase(kind, { dir: join(work, `${id}-${Date.now()}`), node: sidecarNode, certs, compileCache, annotations });
    } catch (err) {
      if (err instanceof NetnsUnavailable) throw new NotAvailable(err.message);
      throw err;
    }
    return {
      pids: setup.pids,
      url: setup.url,
      netns: setup.netns,
      stop: async () => {
        const report = await setup.close();
        if (report) collectorReports.push(`${CASE_LABELS[id]}: ${report}`);
      },
    };
  };
  return {
    direct: { id: 'direct', url: directUrl },
    'nginx-plain': { id: 'nginx-plain', url: pairUrl, start: () => nginxPair('nginx-plain', false) },
    'nginx-mtls': { id: 'nginx-mtls', url: pairUrl, start: () => nginxPair('nginx-mtls', true) },
    'tsmesh-plain': { id: 'tsmesh-plain', url: pairUrl, start: () => tsmeshPair('tsmesh-plain', false) },
    'tsmesh-mtls': { id: 'tsmesh-mtls', url: pairUrl, start: () => tsmeshPair('tsmesh-mtls', true) },
    'tsmesh-mtls-traced': { id: 'tsmesh-mtls-traced', url: pairUrl, start: () => tsmeshPair('tsmesh-mtls-traced', true, TRACE_ALL) },
    'netns-direct': { id: 'netns-direct', url: '', start: netnsCase('netns-direct', 'direct') },
    'netns-nginx-mtls': { id: 'netns-nginx-mtls', url: '', start: netnsCase('netns-nginx-mtls', 'nginx') },
    'netns-tsmesh-mtls': { id: 'netns-tsmesh-mtls', url: '', start: netnsCase('netns-tsmesh-mtls', 'tsmesh') },
    'netns-tsmesh-mtls-traced': { id: 'netns-tsmesh-mtls-traced', url: '', start: netnsCase('netns-tsmesh-mtls-traced', 'tsmesh', TRACE_ALL) },
  };
}

const firstLine = (s: string) => s.split('\n')[0];

async function measure(runner: Runner, pass: number, position: 'start' | 'end' | undefined, opts: Options, files: LoadFiles, work: string): Promise<Measurement> {
  const m: Measurement = { caseId: runner.id, pass, status: 'ok', warnings: [], ...(position ? { position } : {}) };
  const label = `pass ${pass}/${opts.passes}  ${CASE_LABELS[runner.id]}${position ? ` (${position})` : ''}`;
  const tag = `pass${pass}-${runner.id}${position ? `-${position}` : ''}`;
  let pair: Pair | undefined;
  try {
    if (runner.start) {
      say(`${label}: starting the pair`);
      pair = await runner.start();
      if (pair.observedMtls !== undefined) m.observedMtls = pair.observedMtls;
    }
    const url = pair?.url ?? runner.url;
    const netns = pair?.netns;
    if (netns) await probeInNetns(netns, url, files, work);
    else await probe(url);
    const pids = pair?.pids ?? [];
    if (pids.length > 0) {
      m.idleRssMiB = treeMemory(pids).rssKiB / MiB;
      m.proxyIdleRssMiB = largestTreeMemory(pids).rssKiB / MiB;
    }
    const load = { url, netns, rate: opts.rate, connections: opts.connections, files, workDir: work, spread: opts.spread };
    say(`${label}: ${opts.warmupSeconds}s warm-up, then ${opts.seconds}s at ${opts.rate} req/s over ${opts.connections} connections`);
    const warm = await fixedRate({ ...load, seconds: opts.warmupSeconds, tag: `${tag}-warmup` });
    if (warm.errors > 0) m.warnings.push(`warm-up had ${warm.errors} errors (${warm.errorDetail})`);
    const cpu0 = treeCpuSeconds(pids);
    const fr = await fixedRate({ ...load, seconds: opts.seconds, tag });
    const cpu1 = treeCpuSeconds(pids);
    const durationsMs = fr.durationsUs.map((us) => us / 1000);
    m.durationsMs = durationsMs;
    m.latencyMs = latencyOf(durationsMs);
    m.requests = fr.requests;
    m.achievedRps = fr.achievedRps;
    m.errors = fr.errors;
    if (pids.length > 0) {
      const mem = treeMemory(pids);
      m.cpuSeconds = cpu1 - cpu0;
      m.cpuPer1000 = fr.requests > 0 ? (m.cpuSeconds / fr.requests) * 1000 : NaN;
      m.rssMiB = mem.rssKiB / MiB;
      m.processes = mem.processes;
      const proxy = largestTreeMemory(pids);
      m.proxyRssMiB = proxy.rssKiB / MiB;
      m.proxyAnonMiB = proxy.anonKiB / MiB;
    }
    if (fr.errors > 0) {
      m.status = 'failed';
      m.reason = `${fr.errors} errors at the fixed rate (${fr.errorDetail})`;
    }
    if (fr.achievedRps < 0.95 * opts.rate) m.warnings.push(`sent ${fr.achievedRps.toFixed(0)} req/s, below the target ${opts.rate}`);
    const cpuText = m.cpuPer1000 === undefined ? '' : `, CPU ${m.cpuPer1000.toFixed(3)} s/1000 req, RSS ${m.rssMiB!.toFixed(1)} MiB`;
    say(`${label}: ${fr.requests} requests, p50 ${m.latencyMs.p50.toFixed(2)} ms, p90 ${m.latencyMs.p90.toFixed(2)} ms, p99 ${m.latencyMs.p99.toFixed(2)} ms${cpuText}, ${fr.errors} errors`);
    if (position !== 'end') {
      say(`${label}: highest throughput, wrk ${opts.wrkSeconds}s with ${opts.wrkConnections} connections`);
      const wrk = await highestThroughput({ url, netns, threads: opts.wrkThreads, connections: opts.wrkConnections, seconds: opts.wrkSeconds, files, workDir: work, tag });
      m.maxRps = wrk.rps;
      m.errors = (m.errors ?? 0) + wrk.errors;
      if (wrk.errors > 0) {
        m.status = 'failed';
        m.reason = [m.reason, `${wrk.errors} errors at the highest throughput (${wrk.errorDetail})`].filter(Boolean).join('; ');
      }
      say(`${label}: ${wrk.rps.toFixed(0)} req/s, ${wrk.errors} errors`);
    }
    if (pids.length > 0) m.hwmMiB = treeMemory(pids).hwmKiB / MiB;
    if (runner.id === 'tsmesh-plain' && m.observedMtls === 'true') m.warnings.push('the sidecars used mTLS in the plain case');
  } catch (err) {
    checkInterrupted();
    if (err instanceof NotAvailable) {
      m.status = 'not-available';
      m.reason = err.message;
      say(`${label}: not available yet (${err.message})`);
    } else if (err instanceof BenchError) {
      m.status = 'failed';
      m.reason = firstLine(err.message);
      say(`${label}: FAILED: ${err.message}`);
    } else {
      throw err;
    }
  } finally {
    if (pair) await pair.stop();
  }
  for (const w of m.warnings) say(`${label}: warning: ${w}`);
  return m;
}

function commandLine(argv: string[]): string {
  const quoted = argv.map((a) => (/^[\w.,=/:-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`)).join(' ');
  if (process.env.npm_lifecycle_event === 'bench') return `npm run bench${quoted ? ` -- ${quoted}` : ''}`;
  return `node bench/run.ts${quoted ? ` ${quoted}` : ''}`;
}

function stamp(d: Date): string {
  return d.toISOString().slice(0, 16).replace(/[-:]/g, '').replace('T', '-');
}

async function main(argv: string[]): Promise<number> {
  const opts = parseOptions(argv);
  if (!opts) {
    process.stdout.write(HELP);
    return 0;
  }
  await benchLock(say);
  startedAt = Date.now(); // the run's own time, not the wait for another run
  const versions: Versions = toolVersions();
  const sidecarNodeVersion = nodeVersion(sidecarNode);
  const machine = machineInfo();
  const work = await mkdtemp(join(tmpdir(), 'tsmesh-bench-'));
  let keepWork = opts.keepTemp;
  const onSignal = (sig: NodeJS.Signals) => {
    if (interrupted) return;
    interrupted = true;
    say(`${sig}: stopping every process the benchmark started`);
    void stopAll(); // what runs now fails fast, sees `interrupted` and ends the run
  };
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, onSignal);

  const pairs = opts.cases.filter((c) => !isDirect(c));
  // Each topology's cases run between its own direct runs (at the start and at the end of a pass).
  const topologies = (['direct', 'netns-direct'] as const)
    .map((direct) => ({ direct, pairs: pairs.filter((c) => c.startsWith('netns-') === (direct === 'netns-direct')) }))
    .filter((t) => opts.cases.includes(t.direct) && (t.pairs.length > 0 || t.direct === 'direct'));
  say(`tsmesh benchmark: ${opts.passes} pass(es) over direct, ${pairs.join(', ')}; ${opts.rate} req/s over ${opts.connections} connections, ${opts.seconds}s per case (+${opts.warmupSeconds}s warm-up); wrk ${opts.wrkSeconds}s x ${opts.wrkConnections} connections`);
  say(`${machine.cpuModel}, ${machine.cores} cores, Linux ${machine.kernel}, load average ${loadAverage()}; temp folder ${work}`);
  const load0 = loadAverage();
  const cpu0 = cpuSample();
  const measurements: Measurement[] = [];
  try {
    const certs = await makeCerts(join(work, 'certs'), [topology.podA.name, topology.podB.name], topology.namespace);
    const files = await writeLoadFiles(work);
    if (pairs.some((c) => c.startsWith('tsmesh'))) await warmCompileCache(repoRoot, join(work, 'compile-cache.log'));
    const compileCache = await netnsCompileCache(work);
    if (pairs.some((c) => c.startsWith('netns-tsmesh'))) await warmNetnsCompileCache(repoRoot, sidecarNode, compileCache, join(work, 'compile-cache-1337.log'));
    const app = await startNginx('app (nginx)', join(work, 'app'), appConf(join(work, 'app'), PAYLOAD), topology.app);
    await probe(directUrl);
    say(`app listening on ${directUrl} (nginx, ${NGINX_WORKERS} worker, 1 KB answer)`);
    const collector = startCollector(sidecarNode, COLLECTOR_HOST, join(work, 'collector.log'));
    await waitListening(collector, COLLECTOR_HOST, 4318);
    const all = runners(work, certs, compileCache);
    // `tsmesh proxy --help` compiles what the proxy imports up front; a sidecar imports its
    // registry source and certificate reader when it starts. One throwaway pair per user fills
    // the cache with those too (stopped idle, so it exits and writes the cache), as the image's
    // build compiles every module: no measured pair pays for compiling them.
    if (pairs.some((c) => c.startsWith('tsmesh'))) await (await all['tsmesh-mtls'].start!()).stop();
    if (pairs.some((c) => c.startsWith('netns-tsmesh'))) await (await all['netns-tsmesh-mtls'].start!().catch((err: unknown) => (err instanceof NotAvailable ? { stop: async () => {} } : Promise.reject(err)))).stop();
    collectorReports.length = 0;
    const unavailable = new Map<CaseId, string>();
    for (let pass = 1; pass <= opts.passes; pass++) {
      for (const t of topologies) {
        // The pairs' order is reversed on even passes, so slow drift of the machine does not always favour the same case.
        const order = pass % 2 === 1 ? t.pairs : [...t.pairs].reverse();
        const direct = all[t.direct];
        const known = unavailable.get(t.direct);
        if (known !== undefined) {
          for (const id of [t.direct, ...order]) measurements.push({ caseId: id, pass, status: 'not-available', reason: known, warnings: [] });
          continue;
        }
        const first = await measure(direct, pass, 'start', opts, files, work);
        measurements.push(first);
        checkInterrupted();
        if (first.status === 'not-available') {
          // no such topology on this machine: its pairs cannot run either
          for (const id of [t.direct, ...order]) unavailable.set(id, first.reason ?? '');
          for (const id of order) measurements.push({ caseId: id, pass, status: 'not-available', reason: first.reason ?? '', warnings: [] });
          continue;
        }
        for (const id of order) {
          const known = unavailable.get(id);
          if (known !== undefined) {
            say(`pass ${pass}/${opts.passes}  ${CASE_LABELS[id]}: not available yet (${known})`);
            measurements.push({ caseId: id, pass, status: 'not-available', reason: known, warnings: [] });
            continue;
          }
          const m = await measure(all[id], pass, undefined, opts, files, work);
          checkInterrupted();
          if (m.status === 'not-available') unavailable.set(id, m.reason ?? '');
          measurements.push(m);
        }
        measurements.push(await measure(direct, pass, 'end', opts, files, work));
        checkInterrupted();
      }
    }
    collectorReports.unshift(`loopback cases: ${await stopCollector(collector)}`);
    await stopTree(app);
  } catch (err) {
    // The run ends without a report: its temp folder holds nothing worth keeping unless asked.
    if (!opts.keepTemp) await rm(work, { recursive: true, force: true });
    throw err;
  } finally {
    await stopAll();
  }
  const cpu1 = cpuSample();
  const load1 = loadAverage();
  const steal = stealPercent(cpu0, cpu1);
  const elapsed = (Date.now() - startedAt) / 1000;

  const summaries = opts.cases.map((id) => summarize(measurements, id));
  const ratioList = ratios(summaries);
  const goalList = goals(summaries);
  const notes: string[] = [];
  for (const s of summaries) {
    if (s.status === 'not-available') notes.push(`${CASE_LABELS[s.caseId]}: not available yet: ${s.reasons.join('; ')}`);
    if (s.status === 'failed') notes.push(`${CASE_LABELS[s.caseId]}: FAILED (${s.errors} errors): ${s.reasons.join('; ')}`);
    if (s.observedMtls === HANDSHAKE_OK) notes.push(`${CASE_LABELS[s.caseId]}: mTLS confirmed by a handshake with pod-b's certificate to pod-a's inbound (pod-a has no tsmesh_requests_total metric yet)`);
    else if (s.observedMtls && s.observedMtls !== 'unknown') notes.push(`${CASE_LABELS[s.caseId]}: pod-a's tsmesh_requests_total reports mtls="${s.observedMtls}" on inbound`);
  }
  for (const r of collectorReports) notes.push(`stand-in OTLP collector, ${r}`);
  for (const m of measurements) for (const w of m.warnings) notes.push(`pass ${m.pass} ${CASE_LABELS[m.caseId]}${m.position ? ` (${m.position})` : ''}: ${w}`);
  if (summaries.some((s) => s.status === 'failed')) keepWork = true;

  process.stdout.write(`\n${textTable(summaries)}\n\n`);
  process.stdout.write('Latencies are medians over passes; "added" is the case minus direct in the same pass. CPU, RSS: the pair\'s processes.\n');
  for (const line of ratioLines(ratioList)) process.stdout.write(`${line}\n`);
  if (ratioList.length === 0) process.stdout.write('No tsmesh/nginx ratios: no tsmesh case and its nginx counterpart both ran.\n');
  for (const line of goalSetLines(goalList)) process.stdout.write(`${line}\n`);
  for (const n of notes) process.stdout.write(`note: ${n}\n`);
  process.stdout.write(`hypervisor steal during the run: ${steal.toFixed(1)}%; load average ${load0} before, ${load1} after; ${elapsed.toFixed(0)} s\n`);

  const when = new Date();
  const chartTitle = `Latency by percentile at ${opts.rate} req/s (${opts.connections} connections, 1 KB POST)`;
  const chartSubtitle = `${opts.passes} pass(es) of ${opts.seconds}s pooled per configuration; ${when.toISOString().slice(0, 16).replace('T', ' ')} UTC; ${machine.cores} cores, shared`;
  const series = opts.cases
    .map((id) => ({ caseId: id, sortedMs: mergeSorted(measurements.filter((m) => m.caseId === id && m.status === 'ok' && m.durationsMs).map((m) => m.durationsMs!)) }))
    .filter((s) => s.sortedMs.length > 0);
  const svg = latencySvg(series, chartTitle, chartSubtitle);

  if (opts.record) {
    const resultsDir = join(benchDir, 'results');
    await mkdir(resultsDir, { recursive: true });
    const dated = `latency-${stamp(when)}.svg`;
    await writeFile(join(resultsDir, dated), svg);
    await copyFile(join(resultsDir, dated), join(resultsDir, 'latency.svg'));
    const section = [
      `## Run of ${when.toISOString().slice(0, 16).replace('T', ' ')} UTC${opts.quick ? ' (quick)' : ''}`,
      '',
      ...(opts.note ? [`> ${opts.note}`, ''] : []),
      `- Command: \`${commandLine(argv)}\``,
      `- Machine: ${machine.cpuModel}, ${machine.cores} cores, Linux ${machine.kernel}; load average ${load0} before, ${load1} after; hypervisor steal during the run ${steal.toFixed(1)}%`,
      `- Sidecar: Node ${sidecarNodeVersion}, tsmesh at ${gitDescribe(repoRoot)}; nginx: ${versions.nginx}, ${NGINX_WORKERS} worker process (plus its idle master) per proxy and for the app; load: h2load ${versions.h2load}, wrk ${versions.wrk}; certificates: ${versions.openssl}, P-256, TLS 1.3`,
      `- Request: POST / with a 1 KB body and \`Host: pod-service\`, answered 200 with a 1 KB body by nginx on ${topology.app.host}:${topology.app.port}`,
      opts.spread
        ? `- Fixed rate, spread (diagnostic): ${opts.connections} x \`h2load --h1 -c1 --rps ${opts.rate / opts.connections} -D ${opts.seconds}\` started ${(1000 / opts.rate).toFixed(2)} ms apart, after ${opts.warmupSeconds}s of warm-up; highest throughput: \`wrk -t${opts.wrkThreads} -c${opts.wrkConnections} -d${opts.wrkSeconds}s\``
        : `- Fixed rate: \`h2load --h1 -c${opts.connections} --rps ${opts.rate / opts.connections} -D ${opts.seconds}\` (its connections send in step: bursts of ${opts.connections} requests together, ${opts.rate / opts.connections} times a second on average) after ${opts.warmupSeconds}s of warm-up; highest throughput: \`wrk -t${opts.wrkThreads} -c${opts.wrkConnections} -d${opts.wrkSeconds}s\``,
      `- ${opts.passes} pass(es) (the pairs' order reversed on even passes); figures are medians over passes; took ${Math.round(elapsed)} s`,
      '',
      markdownTable(summaries),
      '',
      ...(ratioList.length ? ratioLines(ratioList).map((l) => `- ${l}`) : ['- No tsmesh/nginx ratios: no tsmesh case and its nginx counterpart both ran.']),
      ...(goalList.length ? ['', 'Issue 17 goals (full pipeline: mTLS, tracing with export to a stand-in collector, metrics, access logs):', '', ...goalSetLines(goalList).map((l) => (l.startsWith('  ') ? l : `- ${l}`))] : []),
      ...(notes.length ? ['', 'Notes:', '', ...notes.map((n) => `- ${n}`)] : []),
      '',
      `![latency by percentile](results/${dated})`,
      '',
      '<details><summary>Every pass</summary>',
      '',
      perPassTable(measurements),
      '',
      '</details>',
      '',
    ].join('\n');
    await recordRun(join(benchDir, 'RESULTS.md'), section);
    const json = {
      when: when.toISOString(),
      command: commandLine(argv),
      options: opts,
      machine,
      versions: { ...versions, sidecarNode: sidecarNodeVersion, tsmesh: gitDescribe(repoRoot) },
      stealPercent: steal,
      summaries,
      measurements: measurements.map((m) => ({ ...m, durationsMs: undefined })),
    };
    await writeFile(join(resultsDir, 'latest.json'), JSON.stringify(json, null, 2) + '\n');
    say(`recorded in bench/RESULTS.md, bench/results/${dated} (and latency.svg), bench/results/latest.json`);
  } else {
    const file = join(tmpdir(), 'tsmesh-bench-latency.svg');
    await writeFile(file, svg);
    say(`not recorded (${opts.quick ? '--quick' : '--no-record'}; --record records it); chart at ${file}`);
  }
  if (keepWork) say(`temp folder kept: ${work}`);
  else await rm(work, { recursive: true, force: true });
  return summaries.some((s) => s.status === 'failed') ? 1 : 0;
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (err) {
  await stopAll();
  if (err instanceof BenchError) {
    process.stderr.write(`bench: ${err.message}\n${err.code === 'BENCH_USAGE' ? `\n${HELP}` : ''}`);
    process.exitCode = err.code === 'BENCH_USAGE' ? 2 : err.code === 'BENCH_INTERRUPTED' ? 130 : 1;
  } else {
    throw err;
  }
}
