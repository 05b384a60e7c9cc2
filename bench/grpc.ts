// `npm run bench:grpc`: the gRPC unary case of issue #9, by the same method as `npm run bench`
// (DESIGN.md, "Benchmark method"): a fixed 1000 calls/s over 16 HTTP/2 connections (one
// stream at a time each), 1 KB messages, direct calls and the tsmesh pair with mTLS side by
// side in one run, direct at the start and at the end of each pass; the latency the pair adds
// at p50/p90/p99 and its CPU per 1000 calls. The app is an h2c gRPC server answering every
// call with its 1 KB message and grpc-status 0 in trailers; h2load is the client.
//
//   node bench/grpc.ts [--seconds 20] [--passes 2]
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { makeCerts } from './lib/certs.ts';
import { startTsmeshPair, warmCompileCache } from './lib/tsmesh.ts';
import { runToEnd, stopAll, stopTree, treeCpuSeconds, largestTreeMemory, waitListening, startProcess } from './lib/procs.ts';
import { percentile, median } from './lib/stats.ts';
import { recordRun } from './lib/report.ts';
import { machineInfo, loadAverage, nodeVersion } from './lib/machine.ts';
import { topology, AUTHORITY } from './lib/topology.ts';

const repoRoot = fileURLToPath(new URL('..', import.meta.url));
const { values } = parseArgs({ options: { seconds: { type: 'string', default: '20' }, passes: { type: 'string', default: '2' } } });
const SECONDS = Number(values.seconds);
const PASSES = Number(values.passes);
const RATE = 1000;
const CONNECTIONS = 16;
const PATH = '/bench.Echo/Say';
const MESSAGE = Buffer.alloc(1024, 'g');

// the app: h2c gRPC, one unary method answering with the same-size message; it also answers
// HTTP/1.1 (the pair's start-up probe) with the 1 KB body the probe expects
const APP = `
import http2 from 'node:http2';
import http from 'node:http';
import net from 'node:net';
const reply = Buffer.concat([Buffer.from([0, 0, 0, 4, 0]), Buffer.alloc(1024, 'r')]);
const h2 = http2.createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    res.writeHead(200, { 'content-type': 'application/grpc' });
    res.addTrailers({ 'grpc-status': '0' });
    res.end(reply);
  });
});
const h1 = http.createServer((req, res) => { req.resume(); req.on('end', () => res.end('tsmesh-benchmark-payload-'.repeat(64).slice(0, 1024))); });
net.createServer((s) => s.once('readable', () => {
  const head = s.read(3) ?? Buffer.alloc(0);
  s.unshift(head);
  (head.toString() === 'PRI' ? h2 : h1).emit('connection', s);
})).listen(${topology.app.port}, '${topology.app.host}', () => console.log('listening'));
`;

const say = (t: string) => process.stdout.write(`${t}\n`);

async function h2load(url: string, work: string, tag: string, body: string): Promise<number[]> {
  const log = join(work, `${tag}.tsv`);
  const { code, output } = await runToEnd(`h2load ${tag}`, 'h2load', [`-c${CONNECTIONS}`, '-m1', '--rps', String(RATE / CONNECTIONS), '-D', String(SECONDS), '--log-file', log, '-H', `:authority: ${AUTHORITY}`, '-H', 'content-type: application/grpc', '-H', 'te: trailers', '-d', body, `${url}${PATH.slice(1)}`], { timeoutMs: (SECONDS + 30) * 1000, logFile: join(work, `${tag}.out`) });
  if (code !== 0) throw new Error(`h2load exited ${code}: ${output.split('\n').slice(-4).join(' ')}`);
  const text = await readFile(log, 'utf8');
  const us = text.split('\n').filter(Boolean).map((l) => l.split('\t')).filter(([, status]) => status === '200').map(([, , d]) => Number(d));
  const errors = text.split('\n').filter(Boolean).length - us.length;
  if (errors > 0) throw new Error(`${errors} calls did not answer 200 (${tag})`);
  return us.sort((a, b) => a - b);
}

async function main(): Promise<number> {
  const work = await mkdtemp(join(tmpdir(), 'tsmesh-bench-grpc-'));
  const body = join(work, 'call.bin');
  await writeFile(body, Buffer.concat([Buffer.from([0, 0, 0, 4, 0]), MESSAGE]));
  const app = startProcess('grpc app', join(repoRoot, 'node_modules/.bin/node'), ['--input-type=module', '-e', APP], { logFile: join(work, 'app.log') });
  try {
    await waitListening(app, topology.app.host, topology.app.port);
    const certs = await makeCerts(join(work, 'certs'), [topology.podA.name, topology.podB.name]);
    await warmCompileCache(repoRoot, join(work, 'warm.log'));
    say(`gRPC unary: ${RATE} calls/s over ${CONNECTIONS} HTTP/2 connections, 1 KB messages, ${SECONDS}s per case, ${PASSES} passes; load average ${loadAverage()}`);
    const direct: number[][] = [];
    const pair: { us: number[]; cpuPer1000: number; rssMiB: number }[] = [];
    const directUrl = `http://${topology.app.host}:${topology.app.port}/`;
    const pairUrl = `http://${topology.podB.ip}:${topology.outboundPort}/`;
    for (let pass = 1; pass <= PASSES; pass++) {
      direct.push(await h2load(directUrl, work, `p${pass}-direct-start`, body));
      say(`pass ${pass}: direct p50 ${(percentile(direct.at(-1)!, 0.5) / 1000).toFixed(2)} ms`);
      const p = await startTsmeshPair({ repoRoot, dir: join(work, `pass${pass}`), mtls: true, certs });
      try {
        await h2load(pairUrl, work, `p${pass}-warmup`, body).catch(() => []); // warm-up (connections, JIT)
        const pids = p.procs.map((x) => x.pid);
        const cpu0 = treeCpuSeconds(pids);
        const us = await h2load(pairUrl, work, `p${pass}-tsmesh`, body);
        const cpu = treeCpuSeconds(pids) - cpu0;
        pair.push({ us, cpuPer1000: (cpu / us.length) * 1000, rssMiB: largestTreeMemory(pids).rssKiB / 1024 });
        say(`pass ${pass}: tsmesh mTLS pair p50 ${(percentile(us, 0.5) / 1000).toFixed(2)} ms, CPU ${pair.at(-1)!.cpuPer1000.toFixed(3)} s/1000 calls`);
      } finally {
        await Promise.all(p.procs.map((x) => stopTree(x)));
      }
      direct.push(await h2load(directUrl, work, `p${pass}-direct-end`, body));
    }
    const ms = (us: number) => us / 1000;
    const q = (runs: number[][], p: number) => median(runs.map((r) => ms(percentile(r, p))));
    const rows = [0.5, 0.9, 0.99].map((p) => ({ p, direct: q(direct, p), pair: q(pair.map((x) => x.us), p) }));
    const section = [
      `## gRPC unary (${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC)`,
      '',
      `Command: \`npm run bench:grpc -- --seconds ${SECONDS} --passes ${PASSES}\`. ${machineInfo().cpuModel}, ${machineInfo().cores} cores; sidecar Node ${nodeVersion(join(repoRoot, 'node_modules/.bin/node'))}; h2load h2c, ${RATE} calls/s over ${CONNECTIONS} connections (1 stream each), 1 KB messages; load average at the end ${loadAverage()}. Medians over ${PASSES} passes.`,
      '',
      '| | p50 ms | p90 ms | p99 ms |',
      '| --- | ---: | ---: | ---: |',
      `| direct | ${rows.map((r) => r.direct.toFixed(2)).join(' | ')} |`,
      `| tsmesh pair, mTLS (HTTP/2 between the sidecars) | ${rows.map((r) => r.pair.toFixed(2)).join(' | ')} |`,
      `| **added by the pair** | ${rows.map((r) => (r.pair - r.direct).toFixed(2)).join(' | ')} |`,
      '',
      `CPU of the pair: ${median(pair.map((x) => x.cpuPer1000)).toFixed(3)} s per 1000 calls; RSS of the larger sidecar ${median(pair.map((x) => x.rssMiB)).toFixed(0)} MiB.`,
      '',
    ].join('\n');
    say(`\n${section}`);
    await recordRun(join(repoRoot, 'bench/RESULTS.md'), section);
    return 0;
  } finally {
    await stopTree(app);
    await stopAll();
    await rm(work, { recursive: true, force: true });
  }
}

process.exitCode = await main();
