// End to end, issue 15: a Service with two identical pods (each an app behind its sidecar, mTLS
// between the sidecars, the real interception), pod-b's app calling it at a fixed rate. One
// pod's app is killed with SIGKILL while its sidecar stays up: that sidecar answers 502
// `x-tsmesh-error: connect-failure` for it, which pod-b's sidecar must take as a connection
// failure of that endpoint (retry on the other pod, eject it), so pod-b's app sees no error.
// Needs root.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { parse, stringify } from 'yaml';
import { netnsCluster, NODE, APP_UID, sidecarLines, type NetnsCluster, type PodProcess } from './harness/netns.ts';

const skip = process.getuid?.() !== 0 ? 'needs root (network namespaces and iptables)' : false;
let cluster: NetnsCluster;
const apps = new Map<string, PodProcess>();

const APP = (name: string) => `
import http from 'node:http';
http.createServer((req, res) => res.end('${name}')).listen(8080, () => console.log('app ready'));
`;

// pod-b's app: GET http://pod-service/ at a fixed rate for a fixed time (a bounded load), one
// line per second of progress, then a summary of every answer that was not a 200.
const LOAD = `
import http from 'node:http';
const [rate, seconds] = process.argv.slice(-2).map(Number);
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
const start = performance.now();
const total = rate * seconds;
let sent = 0, answered = 0, ok = 0;
const failures = [];
const by = {};
const one = () => new Promise((resolve) => {
  const at = Math.round(performance.now() - start);
  const req = http.get({ host: 'pod-service', port: 80, path: '/', agent, timeout: 10000 }, (res) => {
    let body = '';
    res.setEncoding('utf8').on('data', (d) => (body += d)).on('end', () => {
      if (res.statusCode === 200) { ok++; by[body] = (by[body] ?? 0) + 1; }
      else failures.push({ at, status: res.statusCode, error: res.headers['x-tsmesh-error'] });
      resolve();
    });
  });
  req.on('timeout', () => req.destroy(new Error('client timeout')));
  req.on('error', (err) => { failures.push({ at, status: 0, error: err.message }); resolve(); });
});
console.log('load started');
const pending = [];
await new Promise((done) => {
  const tick = () => {
    const due = Math.min(total, Math.floor(((performance.now() - start) / 1000) * rate));
    while (sent < due) { sent++; pending.push(one().then(() => answered++)); }
    if (sent >= total) return done();
    setTimeout(tick, 2);
  };
  tick();
});
await Promise.all(pending);
agent.destroy();
console.log(JSON.stringify({ sent, ok, failures, by, seconds: (performance.now() - start) / 1000 }));
`;

// pod-b's app: N sequential GETs (keep-alive), `gap` ms apart; prints which pod answered each.
const SEQUENTIAL = `
import http from 'node:http';
const [n, gap] = process.argv.slice(-2).map(Number);
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const get = () => new Promise((resolve) => {
  http.get({ host: 'pod-service', port: 80, path: '/', agent }, (res) => {
    let body = '';
    res.setEncoding('utf8').on('data', (d) => (body += d)).on('end', () => resolve(res.statusCode === 200 ? body : String(res.statusCode)));
  }).on('error', (err) => resolve(err.message));
});
console.log('sequential started');
const answers = [];
for (let i = 0; i < n; i++) {
  answers.push(await get());
  await new Promise((r) => setTimeout(r, gap));
}
agent.destroy();
console.log(JSON.stringify({ answers }));
`;

/** Sets a pod's readiness in the cluster's registry file (what discovery would push). */
async function setReady(pod: string, ready: boolean): Promise<void> {
  const registry = parse(await readFile(cluster.registryFile, 'utf8')) as { pods: { name: string; ready?: boolean }[] };
  registry.pods.find((p) => p.name === pod)!.ready = ready;
  await writeFile(cluster.registryFile, stringify(registry));
}

before(async () => {
  if (skip) return;
  cluster = await netnsCluster({
    mtls: true,
    pods: [
      { name: 'pod-a1', labels: { app: 'web-app' }, sidecar: true },
      { name: 'pod-a2', labels: { app: 'web-app' }, sidecar: true, ready: false }, // added by the first test
      { name: 'pod-b', labels: { app: 'client' }, sidecar: true },
    ],
    services: [{ name: 'pod-service', ports: [{ port: 80, targetPort: 8080 }], selector: { app: 'web-app' } }],
  });
  for (const pod of ['pod-a1', 'pod-a2']) {
    const app = cluster.spawn(pod, [NODE, '--input-type=module', '-e', APP(pod)], { uid: APP_UID });
    await app.waitForLine(/app ready/);
    apps.set(pod, app);
  }
});
after(() => cluster?.close());

// The pods are separate processes on a shared machine, not identical in latency from one second
// to the next, and the balancer follows latency: the margins here are wide (10-90 %); the 30 %
// goal for identical endpoints is held in test/resilience.test.ts (in-process apps) and in the
// balancer's unit tests. What this catches is a pod that starves, or takes everything.
test('a second pod added to the Service gets a share of the sequential calls that follow (regression: 157 of 158, or 1 of 158)', { skip }, async (t) => {
  const n = 600;
  const calls = cluster.spawn('pod-b', [NODE, '--input-type=module', '-e', SEQUENTIAL, '--', String(n), '5'], { uid: APP_UID });
  await calls.waitForLine(/sequential started/);
  await new Promise((r) => setTimeout(r, 500));
  await setReady('pod-a2', true);
  const { answers } = JSON.parse(await calls.waitForLine(/^\{"answers"/, 120_000)) as { answers: string[] };
  assert.deepEqual(answers.filter((a) => !a.startsWith('pod-a')), [], 'every call answered 200');
  const from = answers.indexOf('pod-a2');
  assert.ok(from !== -1, 'the new pod got calls');
  // the 300 calls from the new pod's first one on (about 2 s of calls)
  const window = answers.slice(from, from + 300);
  const share = window.filter((a) => a === 'pod-a2').length / window.length;
  t.diagnostic(`first call to the new pod: call ${from} of ${n}; its share of the ${window.length} calls from there: ${(share * 100).toFixed(1)} %; in order: ${window.map((a) => a.slice(-1)).join('')}`);
  assert.equal(window.length, 300, 'the new pod came in time for 300 more calls');
  assert.ok(share >= 0.1 && share <= 0.9, `the new pod's share: ${(share * 100).toFixed(1)} %`);
});

test("one of two pods' app killed (SIGKILL, its sidecar stays up) under 200 GET/s: the client sees no error, with the default policy", { skip }, async (t) => {
  const rate = 200;
  const seconds = 12;
  const load = cluster.spawn('pod-b', [NODE, '--input-type=module', '-e', LOAD, '--', String(rate), String(seconds)], { uid: APP_UID });
  await load.waitForLine(/load started/);
  await new Promise((r) => setTimeout(r, 4000));
  const killed = apps.get('pod-a1')!;
  const killedAt = Date.now();
  killed.child.kill('SIGKILL');
  const summary = JSON.parse(await load.waitForLine(/^\{"sent"/, (seconds + 60) * 1000)) as { sent: number; ok: number; failures: { at: number; status: number; error?: string }[]; by: Record<string, number>; seconds: number };
  await new Promise<void>((r) => (load.child.exitCode !== null ? r() : load.child.once('close', () => r())));

  const access = sidecarLines(cluster, 'pod-b').filter((l) => l.type === 'access' && l.direction === 'outbound');
  const retried = access.filter((l) => Number(l.attempts) > 1).length;
  // once the first failures have come back, only the probes of the ejected pod reach it (1 s, 2 s, 4 s ... apart)
  const reachedDead = sidecarLines(cluster, 'pod-a1').filter((l) => l.type === 'access' && l.direction === 'inbound' && Date.parse(String(l.time)) > killedAt + 2000);
  const late = reachedDead.length;
  if (late) t.diagnostic(`reached the dead pod's sidecar 2 s or more after the kill: ${JSON.stringify(reachedDead.slice(0, 5).map((l) => ({ time: l.time, status: l.status, error: l.error, client: l.client })))}`);
  const failed = access.filter((l) => l.status !== 200);
  if (failed.length) t.diagnostic(`pod-b's sidecar: ${failed.length} failed, e.g. ${JSON.stringify(failed.slice(0, 3))}`);
  t.diagnostic(`${summary.sent} requests in ${summary.seconds.toFixed(1)} s; answered by ${JSON.stringify(summary.by)}; ${summary.failures.length} failed ${JSON.stringify(summary.failures.slice(0, 10))}; ${retried} needed a retry; ${late} reached the dead pod 2 s or more after the kill`);
  assert.equal(summary.sent, rate * seconds);
  assert.deepEqual(summary.failures, [], 'no request failed at the client');
  assert.equal(summary.ok, rate * seconds);
  assert.ok((summary.by['pod-a1'] ?? 0) > 0 && (summary.by['pod-a2'] ?? 0) > 0, 'both pods served before the kill');
  assert.ok(retried > 0, "the killed app's failures were seen, and retried on the other pod");
  assert.ok(late <= 6, `the killed pod was ejected at its first failures: ${late} requests reached it 2 s or more after the kill`);
});
