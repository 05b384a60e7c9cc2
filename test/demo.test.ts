// `tsmesh demo` as a user runs it: it starts the mesh, shows the hops, and exits 0 — on
// loopback addresses anywhere, and in network namespaces with the real interception as root.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { existsSync } from 'node:fs';
import { asPodUser } from '../src/localcluster/netns.ts';

const run = promisify(execFile);
const TSMESH = join(import.meta.dirname, '..', 'bin', 'tsmesh.js');
const root = process.getuid?.() === 0;
const skipNotRoot = root ? false : 'needs root (network namespaces and iptables)';

const netnsList = (): string[] =>
  execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .split('\n')
    .map((l) => l.split(' ')[0]!)
    .filter(Boolean);

/** The namespaces the demo named in its mode line. */
const namedNamespaces = (stdout: string): string[] => /pods are namespaces (\S+) and (\S+),/.exec(stdout)?.slice(1) ?? [];

/** Starts the demo and resolves once a line matches `re`; `stop()` sends a signal and waits for the exit. */
function startDemo(args: string[]) {
  const child = spawn(process.execPath, [TSMESH, 'demo', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('close', (code, signal) => resolve({ code, signal })));
  return {
    child,
    output: () => ({ stdout, stderr }),
    exited,
    async waitFor(re: RegExp, timeoutMs = 60_000): Promise<void> {
      const end = Date.now() + timeoutMs;
      while (!re.test(stdout)) {
        if (child.exitCode !== null || child.signalCode !== null) throw new Error(`the demo exited before printing ${re}:\n${stdout}\n${stderr}`);
        if (Date.now() > end) throw new Error(`the demo did not print ${re}:\n${stdout}\n${stderr}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
  };
}

test('tsmesh demo --mode loopback shows pod-b -> pod-a through both sidecars and exits 0', async () => {
  const { stdout } = await run(process.execPath, [TSMESH, 'demo', '--mode', 'loopback', '--requests', '2'], { timeout: 60_000 });
  assert.match(stdout.split('\n')[0]!, /^mode: loopback: pods are addresses on this machine/);
  assert.match(stdout, /\(asked for with --mode loopback\)/);
  assert.match(stdout, /Request 1: pod-b {2}GET http:\/\/pod-service\/\?request=1 {2}-> {2}200 "Hello from pod-a"/);
  assert.match(stdout, /Request 2: .* 200 "Hello from pod-a"/);
  assert.match(stdout, /pod-b sidecar {2}-> pod-a sidecar {3}inbound {2}127\.0\.\d+\.10:15006 +\d+\.\d+ ms/);
  assert.match(stdout, /chose endpoint pod-a \(127\.0\.\d+\.10:8080\) of pod-service/);
  assert.match(stdout, /Every request went pod-b -> its sidecar -> pod-a's sidecar -> pod-a's app and back/);
  // mTLS identities of both sides
  assert.match(stdout, /mTLS: pod-b is spiffe:\/\/cluster\.local\/ns\/default\/sa\/pod-b \(verified by pod-a's sidecar\), pod-a is spiffe:\/\/cluster\.local\/ns\/default\/sa\/pod-a/);
  // a retry, then a breaker opening
  assert.match(stdout, /pod-b got 200 "pod-a recovered on attempt 2"/);
  assert.match(stdout, /pod-a's app saw 2 attempts: attempt 1 -> 503, attempt 2 -> 200/);
  assert.match(stdout, /8 calls: 500, 500, 500, 500, 500, 503 circuit-open, 503 circuit-open, 503 circuit-open/);
  assert.match(stdout, /pod-a's app saw 5 of the 8 calls/);
  // the waterfall: the CLIENT span, two attempts, pod-a's SERVER spans
  assert.match(stdout, /Trace [0-9a-f]{32} of GET \/flaky/);
  assert.match(stdout, /client +GET attempt 1 .*\| 503/);
  assert.match(stdout, /client +GET attempt 2 .*\| 200/);
  assert.match(stdout, /web-app +GET .*\| 200/);
  // the canary: an HTTPRoute written into the registry, applied live, then removed
  assert.match(stdout, /100 calls to pod-service: \d+ answered by pod-a \(v1\), \d+ by pod-a-v2 \(weights 90\/10\)/);
  assert.match(stdout, /3 calls with x-canary: 1: v2, v2, v2/);
});

test('tsmesh demo rejects a bad option with usage (exit 2)', async () => {
  for (const [args, message] of [
    [['--requests', 'lots'], /--requests must be a whole number/],
    [['--mode', 'docker'], /--mode must be one of auto, loopback, netns \(got "docker"\)/],
  ] as const) {
    await assert.rejects(run(process.execPath, [TSMESH, 'demo', ...args]), (err: { code: number; stderr: string }) => {
      assert.equal(err.code, 2);
      assert.match(err.stderr, message);
      return true;
    });
  }
});

test('tsmesh demo --mode netns: plain curl in pod-b reaches pod-a through iptables and both sidecars, and leaves no namespace behind', { skip: skipNotRoot }, async () => {
  const before = netnsList();
  const demo = startDemo(['--mode', 'netns', '--requests', '2']);
  const { code } = await demo.exited;
  const { stdout, stderr } = demo.output();
  assert.equal(code, 0, `${stdout}\n${stderr}`);
  const lines = stdout.split('\n');
  assert.match(lines[0]!, /^mode: network namespaces with iptables interception \(pods are namespaces tsm-\S+ and tsm-\S+, the app knows nothing of the mesh\)$/);
  assert.match(stdout, /pod-b's app is plain (curl|node http) with no proxy settings/);
  assert.match(stdout, /Request 1: pod-b {2}GET http:\/\/pod-service\/\?request=1 {2}-> {2}200 "Hello from pod-a" {2}\(\d+\.\d+ ms at the client, (curl|node http)\)/);
  assert.match(stdout, /Request 2: .* 200 "Hello from pod-a"/);
  const pod = '10\\.77\\.0\\.\\d+';
  assert.match(stdout, new RegExp(`1\\. pod-b app -> iptables +-> pod-b sidecar +10\\.96\\.0\\.\\d+:80 -> outbound 127\\.0\\.0\\.1:15001 +\\d+\\.\\d+ ms {2}chose endpoint pod-a \\(${pod}:8080\\) of pod-service`));
  assert.match(stdout, new RegExp(`2\\. pod-b sidecar +-> pod-a sidecar +inbound {2}${pod}:15006 +\\d+\\.\\d+ ms {2}mesh hop`));
  assert.match(stdout, new RegExp(`3\\. pod-a sidecar +-> pod-a app +${pod}:8080 +\\d+\\.\\d+ ms {2}app time`));
  assert.match(stdout, /Every request went pod-b -> iptables -> its sidecar -> pod-a's sidecar -> pod-a's app and back\./);
  assert.match(stdout, /100 calls to pod-service: \d+ answered by pod-a \(v1\), \d+ by pod-a-v2 \(weights 90\/10\)/);
  assert.match(stdout, /3 calls with x-canary: 1: v2, v2, v2/);

  const named = namedNamespaces(stdout);
  assert.equal(named.length, 2);
  const after = netnsList();
  const ours = new RegExp(`^tsm-${demo.child.pid}-`);
  assert.deepEqual(after.filter((n) => ours.test(n)), [], 'no namespace of the demo is left');
  assert.deepEqual(after.filter((n) => !before.includes(n) && ours.test(n)), []);
  for (const ns of named) assert.ok(!after.includes(ns), `${ns} was removed`);
});

test('tsmesh demo --keep (netns) keeps the mesh until Ctrl-C, then removes its namespaces and exits 0', { skip: skipNotRoot }, async () => {
  const demo = startDemo(['--mode', 'netns', '--requests', '1', '--keep']);
  try {
    await demo.waitFor(/Ctrl-C stops it and removes the namespaces\./);
    const { stdout } = demo.output();
    const named = namedNamespaces(stdout);
    assert.equal(named.length, 2);
    assert.ok(named.every((ns) => netnsList().includes(ns)), 'the pods are there while the demo runs');
    const [, podB] = named;
    assert.match(stdout, new RegExp(`ip netns exec ${podB} curl http://pod-service/`));
    // what the demo tells the user to run works: root's curl in pod-b, no proxy settings
    const body = execFileSync('ip', ['netns', 'exec', podB!, 'curl', '-sS', '--max-time', '10', 'http://pod-service/by-hand'], { encoding: 'utf8', env: { PATH: process.env.PATH } });
    assert.equal(JSON.parse(body).message, 'Hello from pod-a');
    demo.child.kill('SIGINT');
    assert.deepEqual(await demo.exited, { code: 0, signal: null });
    const after = netnsList();
    for (const ns of named) assert.ok(!after.includes(ns), `${ns} was removed`);
  } finally {
    demo.child.kill('SIGKILL');
  }
});

test('tsmesh demo (netns) stopped by SIGTERM in the middle of its requests removes its namespaces (exit 143)', { skip: skipNotRoot }, async () => {
  const demo = startDemo(['--mode', 'netns', '--requests', '100']);
  try {
    await demo.waitFor(/Request 1: /);
    const named = namedNamespaces(demo.output().stdout);
    assert.equal(named.length, 2);
    demo.child.kill('SIGTERM');
    assert.deepEqual(await demo.exited, { code: 143, signal: null });
    assert.doesNotMatch(demo.output().stdout, /Request 100:/, 'it stopped early');
    const after = netnsList();
    assert.deepEqual(after.filter((n) => n.startsWith(`tsm-${demo.child.pid}-`)), []);
  } finally {
    demo.child.kill('SIGKILL');
  }
});

test('tsmesh demo (loopback) stopped by Ctrl-C in the middle of its requests stops its sidecars and removes its files (exit 130)', async () => {
  const demo = startDemo(['--mode', 'loopback', '--requests', '100']);
  try {
    await demo.waitFor(/Request 1: /);
    const dir = /\(registry: (\S+)\/registry\.yaml\)/.exec(demo.output().stdout)?.[1];
    assert.ok(dir && existsSync(dir), 'the registry is there while the demo runs');
    demo.child.kill('SIGINT');
    assert.deepEqual(await demo.exited, { code: 130, signal: null });
    assert.equal(existsSync(dir), false);
    assert.doesNotMatch(demo.output().stderr, /sidecar exited with code/);
  } finally {
    demo.child.kill('SIGKILL');
  }
});

test('tsmesh demo as a non-root user: auto falls back to loopback saying why; --mode netns fails saying why', { skip: skipNotRoot }, async () => {
  // as UID 1000 (through the harness, which shows the project to that user wherever it was cloned)
  const [cmd, ...asUser] = await asPodUser(1000, ['env', `PATH=${process.env.PATH}`, 'HOME=/tmp', process.execPath, TSMESH, 'demo', '--requests', '1']);
  const { stdout } = await run(cmd!, asUser, { timeout: 60_000 });
  assert.match(stdout.split('\n')[0]!, /^mode: loopback: /);
  assert.match(stdout, /\(not network namespaces: not running as root \(network namespaces and iptables need it\)\)/);
  assert.match(stdout, /Request 1: .* 200 "Hello from pod-a"/);
  await assert.rejects(run(cmd!, [...asUser, '--mode', 'netns'], { timeout: 60_000 }), (err: { code: number; stderr: string }) => {
    assert.equal(err.code, 1);
    assert.match(err.stderr, /--mode netns: cannot make network-namespace pods here: not running as root.*\[TSMESH_DEMO_NETNS_UNAVAILABLE\]/);
    return true;
  });
});
