// The load: a probe request, the fixed-rate run (h2load, every request's duration in its log
// file) and the highest-throughput run (wrk). All requests are the same: POST / with a 1 KB
// body and `Host: pod-service`, answered with 200 and a 1 KB body.
import { request } from 'node:http';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BenchError } from './errors.ts';
import { runToEnd, sleep } from './procs.ts';
import { AUTHORITY } from './topology.ts';

export const PAYLOAD_BYTES = 1024;
/** 1 KB of printable bytes: the request body and the app's response body. */
export const PAYLOAD = 'tsmesh-benchmark-payload-'.repeat(64).slice(0, PAYLOAD_BYTES);

export interface LoadFiles {
  body: string;
  wrkScript: string;
}

export async function writeLoadFiles(dir: string): Promise<LoadFiles> {
  const body = join(dir, 'body.bin');
  const wrkScript = join(dir, 'post.lua');
  await writeFile(body, PAYLOAD);
  await writeFile(
    wrkScript,
    `-- POST with the same 1 KB body h2load sends\nwrk.method = "POST"\nwrk.body = "${PAYLOAD}"\nwrk.headers["Content-Type"] = "application/octet-stream"\n`,
  );
  return { body, wrkScript };
}

/** One POST through `url` with curl in network namespace `netns`; throws unless the answer is 200 with the 1 KB body. */
export async function probeInNetns(netns: string, url: string, files: LoadFiles, workDir: string): Promise<void> {
  const args = ['-sS', '--max-time', '5', '-X', 'POST', '-H', `Host: ${AUTHORITY}`, '-H', 'content-type: application/octet-stream', '--data-binary', `@${files.body}`, '-w', '\\n%{http_code}', url];
  const { code, output } = await runToEnd(`curl ${url}`, ...inNetns(netns, 'curl', args), { timeoutMs: 10_000, logFile: join(workDir, `probe-${Date.now()}.out`) });
  const at = output.lastIndexOf('\n');
  if (code !== 0 || output.slice(at + 1).trim() !== '200' || output.slice(0, at) !== PAYLOAD) {
    throw new BenchError('BENCH_PROBE', `probe POST ${url} (Host: ${AUTHORITY}) from ${netns}: curl exited ${code}: ${output.slice(-200)}`);
  }
}

/** One POST through `url`; throws unless the answer is 200 with the 1 KB body. */
export async function probe(url: string, timeoutMs = 5000): Promise<void> {
  const { status, body, headers } = await new Promise<{ status: number; body: string; headers: Record<string, unknown> }>((resolve, reject) => {
    const req = request(
      url,
      {
        method: 'POST',
        agent: false,
        headers: { host: AUTHORITY, 'content-type': 'application/octet-stream', 'content-length': PAYLOAD_BYTES },
        timeout: timeoutMs,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString(), headers: res.headers }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(PAYLOAD);
  }).catch((err: unknown) => {
    throw new BenchError('BENCH_PROBE', `probe POST ${url} (Host: ${AUTHORITY}) failed: ${(err as Error).message}`, { cause: err });
  });
  if (status !== 200 || body !== PAYLOAD) {
    const why = headers['x-tsmesh-error'] ? `, x-tsmesh-error: ${String(headers['x-tsmesh-error'])}` : '';
    throw new BenchError('BENCH_PROBE', `probe POST ${url} (Host: ${AUTHORITY}) answered ${status} with ${body.length} bytes${why} (expected 200 with the ${PAYLOAD_BYTES}-byte body): ${body.slice(0, 120)}`);
  }
}

export interface FixedRateResult {
  /** Every request's duration in microseconds, sorted ascending (responses with status 200 only). */
  durationsUs: Float64Array;
  requests: number;
  achievedRps: number;
  /** Requests that did not end in a 200: non-200 statuses plus h2load's failed, errored and timed-out counts. */
  errors: number;
  errorDetail: string;
}

interface H2loadRun {
  durationsUs: number[];
  non200: number;
  failed: number;
  errored: number;
  timedOut: number;
}

/** `command args`, run in network namespace `netns` when given (the client pod of the netns topology). */
function inNetns(netns: string | undefined, command: string, args: string[]): [string, string[]] {
  return netns ? ['ip', ['netns', 'exec', netns, command, ...args]] : [command, args];
}

/** One h2load process: `connections` connections at `rate` requests/s in all, every request logged. */
async function h2load(opts: { url: string; rate: number; connections: number; seconds: number; body: string; logFile: string; outFile: string; tag: string; netns?: string | undefined }): Promise<H2loadRun> {
  const args = [
    '--h1',
    `-c${opts.connections}`,
    '--rps', String(opts.rate / opts.connections),
    '-D', String(opts.seconds),
    '--log-file', opts.logFile,
    // h2load ignores `-H host:` with --h1; the :authority override is what sets the Host header.
    '-H', `:authority: ${AUTHORITY}`,
    '-H', 'content-type: application/octet-stream',
    '-d', opts.body,
    opts.url,
  ];
  const { code, output } = await runToEnd(`h2load ${opts.tag}`, ...inNetns(opts.netns, 'h2load', args), { timeoutMs: (opts.seconds + 30) * 1000, logFile: opts.outFile });
  const summary = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(output);
  if (code !== 0 || !summary) {
    throw new BenchError('BENCH_LOAD', `h2load exited ${code} (${opts.tag}):\n${output.trim().split('\n').slice(-6).join('\n')}`);
  }
  const [, , , , , failed, errored, timedOut] = summary.map(Number);
  let text = '';
  try {
    text = await readFile(opts.logFile, 'utf8');
  } catch {
    // no request completed: counted as errors by the caller through h2load's summary
  }
  const durationsUs: number[] = [];
  let non200 = 0;
  for (const line of text.split('\n')) {
    if (!line) continue;
    const [, status, us] = line.split('\t');
    if (status === '200') durationsUs.push(Number(us));
    else non200 += 1;
  }
  return { durationsUs, non200, failed, errored, timedOut };
}

/**
 * The fixed-rate run: `h2load --h1 -c<connections> --rps <rate/connections> -D <seconds> --log-file F`.
 * h2load paces each connection, but starts all their timers together: the connections send in
 * step, a burst of `connections` requests every `connections/rate` seconds. With `spread`, one
 * h2load process per connection is started 1/rate apart instead, so requests arrive evenly
 * (a diagnostic: it separates queueing behind a burst from the cost of one request).
 */
export async function fixedRate(opts: {
  url: string;
  rate: number;
  connections: number;
  seconds: number;
  files: LoadFiles;
  workDir: string;
  tag: string;
  spread?: boolean;
  /** run the load generator in this network namespace */
  netns?: string | undefined;
}): Promise<FixedRateResult> {
  const base = { url: opts.url, seconds: opts.seconds, body: opts.files.body, netns: opts.netns };
  const file = (i: number | undefined, ext: string) => join(opts.workDir, `${opts.tag}${i === undefined ? '' : `-c${i}`}.h2load.${ext}`);
  let runs: H2loadRun[];
  if (!opts.spread) {
    runs = [await h2load({ ...base, rate: opts.rate, connections: opts.connections, logFile: file(undefined, 'tsv'), outFile: file(undefined, 'out'), tag: opts.tag })];
  } else {
    const gapMs = 1000 / opts.rate;
    runs = await Promise.all(
      Array.from({ length: opts.connections }, async (_, i) => {
        await sleep(i * gapMs);
        return h2load({ ...base, rate: opts.rate / opts.connections, connections: 1, logFile: file(i, 'tsv'), outFile: file(i, 'out'), tag: `${opts.tag} c${i}` });
      }),
    );
  }
  const durationsUs = Float64Array.from(runs.flatMap((r) => r.durationsUs)).sort();
  const sum = (f: (r: H2loadRun) => number) => runs.reduce((n, r) => n + f(r), 0);
  const non200 = sum((r) => r.non200);
  const failed = sum((r) => r.failed);
  const errored = sum((r) => r.errored);
  const timedOut = sum((r) => r.timedOut);
  const requests = durationsUs.length + non200;
  const errors = non200 + failed + errored + timedOut;
  const errorDetail = errors === 0 ? '' : `${non200} non-200, ${failed} failed, ${errored} errored, ${timedOut} timed out`;
  return { durationsUs, requests, achievedRps: requests / opts.seconds, errors, errorDetail };
}

export interface ThroughputResult {
  rps: number;
  requests: number;
  errors: number;
  errorDetail: string;
}

/** `wrk -t<threads> -c<connections> -d<seconds>s`: as many requests as the pair will take. */
export async function highestThroughput(opts: {
  url: string;
  threads: number;
  connections: number;
  seconds: number;
  files: LoadFiles;
  workDir: string;
  tag: string;
  netns?: string | undefined;
}): Promise<ThroughputResult> {
  const args = ['-t', String(opts.threads), '-c', String(opts.connections), '-d', `${opts.seconds}s`, '-H', `Host: ${AUTHORITY}`, '-s', opts.files.wrkScript, opts.url];
  const { code, output } = await runToEnd(`wrk ${opts.tag}`, ...inNetns(opts.netns, 'wrk', args), { timeoutMs: (opts.seconds + 30) * 1000, logFile: join(opts.workDir, `${opts.tag}.wrk.out`) });
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(output);
  const total = /(\d+) requests in/.exec(output);
  if (code !== 0 || !rps || !total) {
    throw new BenchError('BENCH_LOAD', `wrk exited ${code} (${opts.tag}):\n${output.trim().split('\n').slice(-6).join('\n')}`);
  }
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(output)?.[1] ?? 0);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(output);
  const socketErrors = sock ? sock.slice(1).map(Number) : [0, 0, 0, 0];
  const errors = non2xx + socketErrors.reduce((a, b) => a + b, 0);
  const errorDetail = errors === 0 ? '' : `${non2xx} non-2xx, socket errors connect ${socketErrors[0]} read ${socketErrors[1]} write ${socketErrors[2]} timeout ${socketErrors[3]}`;
  return { rps: Number(rps[1]), requests: Number(total[1]), errors, errorDetail };
}
