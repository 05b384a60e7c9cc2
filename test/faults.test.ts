// Faults a sidecar must ride out, with real sockets and real processes: an app dying
// mid-request, an app not yet listening, the CA down at start, SIGTERM under load.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer as createHttpsServer } from 'node:https';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Agent } from 'node:http';
import { pino } from 'pino';
import { backends, sidecarPair, upstream, loopbackIP, tempDir, writeRegistry, eventually } from './harness/mesh.ts';
import { send } from './harness/client.ts';
import { createCA } from './harness/identity.ts';
import { createCertificateHandler, staticTokenVerifier } from '../injector/ca/index.ts';
import { createCAIdentityProvider, httpsCertificateFetch } from '../src/identity/index.ts';
import { settingsFromEnv } from '../src/config/settings.ts';
import { startSidecar } from '../src/sidecar.ts';

test('an app that dies before answering: the GET is retried on another pod', async (t) => {
  const mesh = await backends([(req) => req.socket.destroy(), (_req, res) => res.end('survivor')]);
  t.after(() => mesh.close());
  for (let i = 0; i < 10; i++) {
    const r = await send(mesh.client.outboundURL);
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), 'survivor');
  }
  assert.ok(mesh.apps[0]!.requests.length > 0, 'the dying pod was tried');
});

test('the app is not listening yet when the sidecar starts: errors, then success once it listens', async (t) => {
  const pair = await sidecarPair((_req, res) => res.end('up'));
  t.after(() => pair.close());
  // stop pod-a's app: the sidecar is up, the app is not (a slow-starting container)
  await pair.app.close();
  const early = await send(pair.proxyURL);
  assert.equal(early.status, 502);
  assert.equal(early.headers['x-tsmesh-error'], 'connect-failure');
  const app = await upstream((_req, res) => res.end('up now'), { ip: pair.pods.a.ip, port: 8080 });
  t.after(() => app.close());
  const later = await send(pair.proxyURL);
  assert.equal(later.status, 200);
  assert.equal(later.body.toString(), 'up now');
});

test('the CA is down when the sidecar starts: not ready, no mTLS; ready and serving once the CA is up', async (t) => {
  const dir = await tempDir();
  t.after(() => dir.remove());
  const ca = await createCA({ trustDomain: 'cluster.local' });
  const trust = join(dir.path, 'ca.crt');
  const token = join(dir.path, 'token');
  await writeFile(trust, ca.trustAnchors.join(''));
  await writeFile(token, 'token-of-pod-b');
  // the CA's HTTPS endpoint: its port chosen now, served only later
  const serving = await ca.issueServing(['localhost']);
  const caServer = createHttpsServer({ cert: serving.certChain.join(''), key: serving.keyPem }, createCertificateHandler({ ca, verifier: staticTokenVerifier({ 'token-of-pod-b': { namespace: 'default', serviceAccount: 'pod-b' } }) }));
  await new Promise<void>((r) => caServer.listen(0, '127.0.0.1', r));
  const port = (caServer.address() as { port: number }).port;
  await new Promise<void>((r) => caServer.close(() => r())); // down

  const ip = loopbackIP();
  const registryFile = join(dir.path, 'registry.yaml');
  await writeRegistry(registryFile, { services: [], pods: [] });
  const settings = settingsFromEnv({ POD_NAME: 'pod-b', POD_IP: ip, SERVICE_ACCOUNT: 'pod-b', TSMESH_BIND_ADDRESS: ip, TSMESH_REGISTRY: registryFile, TSMESH_ANNOTATIONS: join(dir.path, 'none'), TSMESH_ADMIN_PORT: '0', TSMESH_OUTBOUND_PORT: '0' });
  const identity = createCAIdentityProvider({
    trustDomain: 'cluster.local',
    namespace: 'default',
    serviceAccount: 'pod-b',
    fetchCertificate: httpsCertificateFetch({ controlPlane: `https://localhost:${port}`, tokenFile: token, caFile: trust }),
    backoffInitialMs: 100,
    backoffMaxMs: 200,
  });
  const sidecar = await startSidecar(settings, pino({ level: 'silent' }), { identity });
  t.after(() => sidecar.close());
  const ready = async () => (await fetch(`http://${ip}:${sidecar.admin.port}/healthz/ready`)).json() as Promise<{ ready: boolean; reasons: string[] }>;
  await new Promise((r) => setTimeout(r, 400));
  assert.deepEqual(await ready(), { ready: false, reasons: ['no workload certificate yet'] });

  await new Promise<void>((r) => caServer.listen(port, '127.0.0.1', r)); // the CA comes up
  t.after(() => new Promise<void>((r) => caServer.close(() => r())));
  await eventually(async () => (await ready()).ready, 10_000, 'the sidecar to get its certificate and be ready');
});

test('SIGTERM under load: requests in flight finish, none is refused before the drain, exit within the deadline', async (t) => {
  const dir = await tempDir();
  const ip = loopbackIP();
  const app = await upstream((_req, res) => void setTimeout(() => res.end('ok'), 20));
  t.after(async () => {
    await app.close();
    await dir.remove();
  });
  const registryFile = join(dir.path, 'registry.yaml');
  await writeRegistry(registryFile, {
    services: [{ name: 'pod-service', ports: [{ port: 80, targetPort: app.port }], selector: { app: 'web-app' } }],
    pods: [{ name: 'pod-a', ip: app.ip, labels: { app: 'web-app' }, meshed: false }],
  });
  const child = spawn(process.execPath, [join(import.meta.dirname, '..', 'bin', 'tsmesh.js'), 'proxy'], {
    env: { ...process.env, POD_NAME: 'pod-b', POD_IP: ip, TSMESH_BIND_ADDRESS: ip, TSMESH_REGISTRY: registryFile, TSMESH_ANNOTATIONS: join(dir.path, 'none'), TSMESH_DRAIN_TIMEOUT: '5s' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines: Record<string, unknown>[] = [];
  createInterface({ input: child.stdout }).on('line', (l) => lines.push(JSON.parse(l) as Record<string, unknown>));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  t.after(() => child.kill('SIGKILL'));
  await eventually(() => lines.some((l) => l.msg === 'sidecar listening'), 10_000, 'the sidecar');

  const agent = new Agent({ keepAlive: true, maxSockets: 8 });
  let sigtermAt = Infinity;
  const outcomes: { status: number | string; sentAt: number }[] = [];
  const workers = Array.from({ length: 8 }, async () => {
    while (Date.now() < sigtermAt) {
      const sentAt = Date.now();
      try {
        outcomes.push({ status: (await send(`http://${ip}:15001`, { agent })).status, sentAt });
      } catch (err) {
        outcomes.push({ status: (err as Error).message, sentAt });
      }
    }
  });
  // SIGTERM once the load is established (counted, not timed: a loaded CI machine is slow)
  await eventually(() => outcomes.length >= 40, 30_000, '40 requests answered before SIGTERM');
  sigtermAt = Date.now();
  child.kill('SIGTERM');
  await Promise.all(workers);
  agent.destroy();
  const code = await exited;
  assert.equal(code, 0);
  assert.ok(Date.now() - sigtermAt < 5000 + 4000, 'exited within the drain deadline (5 s), with room for a loaded machine');
  assert.ok(lines.some((l) => l.msg === 'drained' && l.finished === true), 'every request in flight finished');
  const before = outcomes.filter((o) => o.sentAt < sigtermAt);
  assert.ok(before.length >= 40, `${before.length} requests before SIGTERM`);
  const failed = before.filter((o) => o.status !== 200);
  assert.deepEqual(failed, [], 'every request sent before SIGTERM succeeded');
});
