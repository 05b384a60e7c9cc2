// The trust-anchor sync (injector/ca/trust-anchors.ts) against the stand-in API server, on its
// own: API failures are retried, a vanished namespace is not, a failed watch starts again, and
// two writers with different roots back off instead of fighting at full speed.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { Registry } from 'prom-client';
import { KubeStandin } from './harness/kube-standin.ts';
import { createLogger, type Logger } from '../src/log/log.ts';
import { startTrustAnchorSync, type TrustAnchorSync } from '../injector/ca/trust-anchors.ts';

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

function capture(): { logger: Logger; lines: Obj[] } {
  const lines: Obj[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _e, done) {
      for (const l of chunk.toString('utf8').split('\n')) if (l.trim()) lines.push(JSON.parse(l) as Obj);
      done();
    },
  });
  return { logger: createLogger({ level: 'debug', destination }), lines };
}

async function eventually<T>(what: string, probe: () => T | undefined | false, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const PEM_A = '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n';
const PEM_B = '-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----\n';

describe('trust-anchor sync', () => {
  let kube: KubeStandin;
  const syncs: TrustAnchorSync[] = [];
  const anchorIn = (ns: string) => (kube.get('v1', 'ConfigMap', ns, 'tsmesh-trust-anchor') as Obj | undefined)?.data?.['ca.crt'] as string | undefined;
  before(async () => {
    kube = await KubeStandin.start();
  });
  after(async () => {
    for (const s of syncs) await s.stop();
    await kube.close();
  });

  test('a failing write is retried until it lands; a namespace that is gone is not retried', async () => {
    let failures = 2;
    const off = kube.use((r) => (r.method === 'POST' && r.path === '/api/v1/namespaces/flaky/configmaps' && failures-- > 0 ? { status: 500, body: kube.status(500, 'InternalError', 'etcd hiccup') } : undefined));
    kube.use((r) => (r.method === 'POST' && r.path === '/api/v1/namespaces/gone/configmaps' ? { status: 404, body: kube.status(404, 'NotFound', 'namespaces "gone" not found') } : undefined));
    const { logger, lines } = capture();
    const registry = new Registry();
    const sync = startTrustAnchorSync({ kubeConfig: kube.kubeConfig(), caPem: PEM_A, controlPlaneNamespace: 'tsmesh-system', logger, registry, retryInitialMs: 10, retryMaxMs: 50 });
    syncs.push(sync);
    await sync.started;
    sync.podInjected('flaky');
    sync.podInjected('gone');
    await eventually('the ConfigMap in flaky', () => anchorIn('flaky') === PEM_A);
    off();
    assert.equal(lines.filter((l) => l.msg === 'cannot publish the trust anchor; retrying' && l.namespace === 'flaky').length, 2);
    const gone = await eventually('the give-up log', () => lines.find((l) => l.namespace === 'gone' && /not retrying/.test(l.msg)));
    assert.equal(gone.status, 404);
    // the counters move when the client has the API's answer, a moment after the stand-in has the write
    let text = '';
    const counted = () => /tsmesh_ca_trust_anchor_writes_total\{result="error"\} 3/.test(text) && /tsmesh_ca_trust_anchor_writes_total\{result="created"\} 1/.test(text);
    for (let i = 0; i < 100 && !counted(); i++) {
      text = await registry.metrics();
      if (!counted()) await new Promise((r) => setTimeout(r, 20));
    }
    assert.match(text, /tsmesh_ca_trust_anchor_writes_total\{result="error"\} 3/);
    assert.match(text, /tsmesh_ca_trust_anchor_writes_total\{result="created"\} 1/);
    await sync.stop();
  });

  test('a watch that fails to list is started again, and then does its work', async () => {
    let failures = 2;
    kube.use((r) => (r.method === 'GET' && r.path === '/api/v1/namespaces' && !r.query.has('watch') && failures-- > 0 ? { status: 503, body: kube.status(503, 'ServiceUnavailable', 'starting up') } : undefined));
    const { logger, lines } = capture();
    const sync = startTrustAnchorSync({ kubeConfig: kube.kubeConfig(), caPem: PEM_A, controlPlaneNamespace: 'tsmesh-system', logger, retryInitialMs: 10, retryMaxMs: 50 });
    syncs.push(sync);
    kube.put({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'restarted', labels: { 'tsmesh.io/inject': 'enabled' } } });
    await eventually('the ConfigMap in restarted', () => anchorIn('restarted') === PEM_A);
    assert.equal(lines.filter((l) => l.msg === 'watch failed; starting it again' && l.watch === 'Namespaces').length, 2);
    await sync.stop();
  });

  test('two writers with different roots back off instead of rewriting each other at full speed', async () => {
    const a = capture();
    const b = capture();
    kube.put({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'contested', labels: { 'tsmesh.io/inject': 'enabled' } } });
    const opts = { kubeConfig: kube.kubeConfig(), controlPlaneNamespace: 'tsmesh-system', retryInitialMs: 200, retryMaxMs: 1000 };
    const before = kube.requests.length;
    syncs.push(startTrustAnchorSync({ ...opts, caPem: PEM_A, logger: a.logger }), startTrustAnchorSync({ ...opts, caPem: PEM_B, logger: b.logger }));
    await eventually('a back-off', () => [...a.lines, ...b.lines].some((l) => /another writer/.test(l.msg)));
    await new Promise((r) => setTimeout(r, 1000));
    const puts = kube.requests.slice(before).filter((r) => r.method === 'PUT' && r.path === '/api/v1/namespaces/contested/configmaps/tsmesh-trust-anchor').length;
    // Without the back-off each write triggers the other side's at once: hundreds in a second.
    assert.ok(puts >= 2 && puts < 20, `${puts} rewrites`);
  });
});
