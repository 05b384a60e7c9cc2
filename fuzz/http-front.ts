// `npm run fuzz`: random and mutated requests against the sidecar's HTTP fronts for a bounded
// time, looking for a crash, a hang, or an answer that is not HTTP. The sidecars run as their
// own processes (a crash is an exit); pod-a's app answers everything. Targets: pod-b's
// outbound listener (what an app sends) and pod-a's inbound listener behind the mesh
// preamble (what a peer sidecar sends). An input that crashes a sidecar or stops it
// answering is written to fuzz/crashes/ and the run exits 1; keep it as a regression test.
//
//   node fuzz/http-front.ts [--seconds 60] [--seed N] [--connections 4]
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import { connect } from 'node:net';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';

const ROOT = join(import.meta.dirname, '..');
const { values } = parseArgs({ options: { seconds: { type: 'string', default: '60' }, seed: { type: 'string' }, connections: { type: 'string', default: '4' } } });
const seconds = Number(values.seconds);
const connections = Number(values.connections);
let seed = Number(values.seed ?? Date.now() % 2 ** 31);
const firstSeed = seed;
const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31); // reproducible with --seed
const pick = <T>(a: readonly T[]): T => a[Math.floor(random() * a.length)]!;

const A = '127.0.9.10';
const B = '127.0.9.11';

async function main(): Promise<number> {
  const dir = await mkdtemp(join(tmpdir(), 'tsmesh-fuzz-'));
  const registry = join(dir, 'registry.yaml');
  await writeFile(registry, stringify({ services: [{ name: 'pod-service', ports: [{ port: 80, targetPort: 8080 }], selector: { app: 'web-app' } }], pods: [{ name: 'pod-a', ip: A, labels: { app: 'web-app' }, meshed: true }, { name: 'pod-b', ip: B, labels: { app: 'client' }, meshed: true }] }));
  const app = createServer((req, res) => {
    req.resume();
    req.on('end', () => res.end('ok'));
    req.on('error', () => undefined);
  });
  app.on('clientError', (_e, s) => s.destroy());
  await new Promise<void>((r) => app.listen(8080, A, r));
  const sidecars = new Map<string, ChildProcess>();
  const outputs = new Map<string, string>();
  for (const [name, ip] of [['pod-a', A], ['pod-b', B]] as const) {
    const child = spawn(process.execPath, [join(ROOT, 'bin/tsmesh.js'), 'proxy'], {
      env: { ...process.env, POD_NAME: name, POD_IP: ip, TSMESH_BIND_ADDRESS: ip, TSMESH_REGISTRY: registry, TSMESH_ANNOTATIONS: join(dir, `${name}.annotations`), TSMESH_DRAIN_TIMEOUT: '1s' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    outputs.set(name, '');
    child.stderr!.on('data', (d) => outputs.set(name, (outputs.get(name)! + d).slice(-20_000)));
    sidecars.set(name, child);
  }
  const cleanup = async () => {
    for (const c of sidecars.values()) c.kill('SIGKILL');
    app.closeAllConnections();
    app.close();
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await waitLive(A);
    await waitLive(B);
    const seeds = await Promise.all((await readdir(join(ROOT, 'fuzz/corpus'))).map((f) => readFile(join(ROOT, 'fuzz/corpus', f))));
    console.log(`fuzzing for ${seconds} s with ${connections} connections, seed ${firstSeed} (${seeds.length} seed inputs)`);
    const end = Date.now() + seconds * 1000;
    let sent = 0;
    let answered = 0;
    let nextReport = Date.now() + 5000;
    let crash: { input: Buffer; target: string; why: string } | undefined;
    await Promise.all(
      Array.from({ length: connections }, async () => {
        while (Date.now() < end && !crash) {
          const input = mutate(pick(seeds), seeds);
          const target = random() < 0.7 ? 'outbound' : 'inbound';
          const bytes = target === 'inbound' ? Buffer.concat([Buffer.from('TSMESH/1 8080\r\n'), input]) : input;
          const reply = await exchange(target === 'inbound' ? A : B, target === 'inbound' ? 15006 : 15001, bytes);
          sent++;
          if (reply.length) answered++;
          if (reply.length && !reply.startsWith('HTTP/1.')) crash = { input: bytes, target, why: `answered with something that is not HTTP: ${JSON.stringify(reply.slice(0, 80))}` };
          for (const [name, c] of sidecars) if (c.exitCode !== null || c.signalCode !== null) crash ??= { input: bytes, target, why: `${name}'s sidecar exited (${c.exitCode ?? c.signalCode}): ${outputs.get(name)!.slice(-2000)}` };
          if (sent % 200 === 0 && !crash && (!(await live(A)) || !(await live(B)))) crash = { input: bytes, target, why: 'a sidecar stopped answering its admin port' };
          if (Date.now() > nextReport) {
            nextReport += 5000;
            console.log(`  ${Math.round((end - Date.now()) / 1000)} s left: ${sent} inputs sent, ${answered} answered`);
          }
        }
      }),
    );
    if (crash) {
      const name = createHash('sha256').update(crash.input).digest('hex').slice(0, 16);
      await mkdir(join(ROOT, 'fuzz/crashes'), { recursive: true });
      await writeFile(join(ROOT, 'fuzz/crashes', `${crash.target}-${name}.bin`), crash.input);
      console.error(`FOUND: ${crash.why}\n  input saved as fuzz/crashes/${crash.target}-${name}.bin (seed ${firstSeed})`);
      return 1;
    }
    console.log(`done: ${sent} inputs, ${answered} answered, no crash, no hang, every answer HTTP (seed ${firstSeed})`);
    return 0;
  } finally {
    await cleanup();
  }
}

/** Writes `bytes`, half-closes, and collects what comes back within 1 s. */
function exchange(host: string, port: number, bytes: Buffer): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(port, host);
    let data = '';
    const done = () => {
      clearTimeout(timer);
      s.destroy();
      resolve(data);
    };
    const timer = setTimeout(done, 1000);
    s.on('data', (c) => {
      data += c.toString('latin1');
      if (data.length > 4096) done();
    });
    s.on('error', done);
    s.on('close', done);
    s.end(bytes);
  });
}

async function live(ip: string): Promise<boolean> {
  try {
    return (await fetch(`http://${ip}:15020/livez`, { signal: AbortSignal.timeout(3000) })).ok;
  } catch {
    return false;
  }
}

async function waitLive(ip: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await live(ip)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`the sidecar on ${ip} did not start`);
}

const NASTY = ['\r\n', '\n', '\r', '\0', ' ', ':', '\t', '\r\n\r\n', 'Transfer-Encoding: chunked\r\n', 'Content-Length: 5\r\n', 'Content-Length: -1\r\n', '\r\n \r\n', '0\r\n\r\n', 'ffffffffffffffff\r\n', 'Upgrade: websocket\r\n', 'Expect: 100-continue\r\n', '%00', '\xff\xfe', 'a'.repeat(9000), 'TSMESH/1 8080\r\n'];

/** One to eight random edits of a seed: flips, inserts, deletes, duplicates, splices, truncation. */
function mutate(input: Buffer, seeds: readonly Buffer[]): Buffer {
  let b = Buffer.from(input);
  const edits = 1 + Math.floor(random() * 8);
  for (let i = 0; i < edits; i++) {
    const at = Math.floor(random() * (b.length + 1));
    switch (Math.floor(random() * 7)) {
      case 0: // flip a byte
        if (b.length) b[Math.min(at, b.length - 1)] = Math.floor(random() * 256);
        break;
      case 1: // insert something nasty
        b = Buffer.concat([b.subarray(0, at), Buffer.from(pick(NASTY), 'latin1'), b.subarray(at)]);
        break;
      case 2: // delete a run
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + Math.floor(random() * 16))]);
        break;
      case 3: // duplicate a run
        b = Buffer.concat([b.subarray(0, at), b.subarray(at, at + 32), b.subarray(at)]);
        break;
      case 4: // splice another seed in
        b = Buffer.concat([b.subarray(0, at), pick(seeds)]);
        break;
      case 5: // truncate
        b = b.subarray(0, at);
        break;
      default: // random bytes
        b = Buffer.concat([b.subarray(0, at), Buffer.from(Array.from({ length: 1 + Math.floor(random() * 8) }, () => Math.floor(random() * 256))), b.subarray(at)]);
    }
  }
  return b;
}

process.exitCode = await main();
