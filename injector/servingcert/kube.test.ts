// The serving certificate's Kubernetes side against a stand-in API server speaking the real
// JSON API: the Secret is created once and shared, renewed in place, replaced when unusable;
// the caBundle is patched with a JSON patch on our webhooks only; API errors are named.
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { Writable } from 'node:stream';
import { startFakeApiServer, type FakeApiServer } from '../testing/apiserver.ts';
import { createLogger } from '../../src/log/log.ts';
import { ensureCaBundle, ensureServingCertificate, startServingCertLoop, KubeApiError, type ServingCertOptions } from './kube.ts';
import { serviceDnsNames, SERVING_TTL_MS } from './cert.ts';
import { kubeNamespaceLookup } from '../webhook/namespaces.ts';

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const SECRET = '/api/v1/namespaces/tsmesh-system/secrets/tsmesh-injector-tls';
const MWC = '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/tsmesh-injector';
const quiet = createLogger({ level: 'silent', destination: new Writable({ write: (_c, _e, d) => d() }) });

function webhookConfig(): Obj {
  const hook = (name: string, service: string, namespace = 'tsmesh-system') => ({
    name,
    admissionReviewVersions: ['v1'],
    sideEffects: 'None',
    clientConfig: { service: { name: service, namespace, path: '/inject', port: 8443 } },
  });
  return {
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'MutatingWebhookConfiguration',
    metadata: { name: 'tsmesh-injector' },
    webhooks: [hook('namespace.inject.tsmesh.io', 'tsmesh-injector'), hook('other.example.com', 'someone-else', 'other'), hook('pod.inject.tsmesh.io', 'tsmesh-injector')],
  };
}

describe('serving certificate through the Kubernetes API', () => {
  let api: FakeApiServer;
  let opts: ServingCertOptions;
  before(async () => {
    api = await startFakeApiServer();
  });
  after(() => api.close());
  beforeEach(() => {
    opts = { kubeConfig: api.kubeConfig(), namespace: 'tsmesh-system', serviceName: 'tsmesh-injector', secretName: 'tsmesh-injector-tls', webhookConfigName: 'tsmesh-injector', logger: quiet };
  });

  test('creates the Secret on first start; a second replica reads the same material', async () => {
    const a = await ensureServingCertificate(opts);
    const secret = api.get(SECRET)!;
    assert.equal(secret.type, 'kubernetes.io/tls');
    assert.deepEqual(Object.keys(secret.data as object).sort(), ['ca.crt', 'ca.key', 'tls.crt', 'tls.key']);
    const leaf = new X509Certificate(a.tls.cert);
    const ca = new X509Certificate(a.caCert);
    assert.ok(leaf.verify(ca.publicKey), 'the serving certificate is signed by the CA');
    for (const name of serviceDnsNames('tsmesh-injector', 'tsmesh-system')) assert.ok(leaf.checkHost(name), `names ${name}`);
    assert.ok(api.requests.every((r) => r.authorization === 'Bearer test-token'), 'authenticated with the token');
    const writes = api.requests.filter((r) => r.method !== 'GET').length;
    const b = await ensureServingCertificate(opts);
    assert.equal(b.tls.cert, a.tls.cert);
    assert.equal(api.requests.filter((r) => r.method !== 'GET').length, writes, 'nothing written the second time');
  });

  test('two replicas starting together agree (the loser of the create race reads the winner)', async () => {
    const fresh = { ...opts, secretName: 'race' };
    const [a, b] = await Promise.all([ensureServingCertificate(fresh), ensureServingCertificate(fresh)]);
    assert.equal(a.tls.cert, b.tls.cert);
    assert.equal(a.caCert, b.caCert);
    assert.equal(api.requests.filter((r) => r.method === 'POST' && r.path.endsWith('/secrets')).length >= 2, true, 'both tried to create');
  });

  test('renews the serving certificate near its end with the same CA; replaces garbage with a new CA', async () => {
    const first = await ensureServingCertificate({ ...opts, secretName: 'renew' });
    const later = Date.now() + (SERVING_TTL_MS * 3) / 4;
    const renewed = await ensureServingCertificate({ ...opts, secretName: 'renew', now: () => later });
    assert.notEqual(renewed.tls.cert, first.tls.cert);
    assert.equal(renewed.caCert, first.caCert, 'the caBundle stays valid');
    const put = api.requests.findLast((r) => r.method === 'PUT')!;
    assert.ok((put.body as Obj).metadata.resourceVersion, 'replaced with the resourceVersion it read');

    api.put('/api/v1/namespaces/tsmesh-system/secrets/broken', { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'broken', namespace: 'tsmesh-system' }, data: { 'ca.crt': Buffer.from('junk').toString('base64') } });
    const replaced = await ensureServingCertificate({ ...opts, secretName: 'broken' });
    assert.ok(new X509Certificate(replaced.tls.cert).verify(new X509Certificate(replaced.caCert).publicKey));
  });

  test('a concurrent renewal (409 Conflict) is re-read, not overwritten', async () => {
    await ensureServingCertificate({ ...opts, secretName: 'conflict' });
    api.failNext((m, p) => m === 'PUT' && p.endsWith('/conflict'), 409);
    const later = Date.now() + (SERVING_TTL_MS * 3) / 4;
    const s = await ensureServingCertificate({ ...opts, secretName: 'conflict', now: () => later });
    assert.ok(s.tls.cert);
    assert.ok(api.requests.filter((r) => r.method === 'PUT' && r.path.endsWith('/conflict')).length >= 2);
  });

  test('sets the caBundle of our webhooks only, with a JSON patch; then leaves it alone', async () => {
    api.put(MWC, webhookConfig());
    const s = await ensureServingCertificate(opts);
    assert.equal(await ensureCaBundle(opts, s.caCert), 2);
    const patch = api.requests.findLast((r) => r.method === 'PATCH')!;
    assert.equal(patch.contentType, 'application/json-patch+json');
    const hooks = (api.get(MWC)!.webhooks as Obj[]);
    const want = Buffer.from(s.caCert).toString('base64');
    assert.equal(hooks[0].clientConfig.caBundle, want);
    assert.equal(hooks[1].clientConfig.caBundle, undefined, "another service's webhook is not touched");
    assert.equal(hooks[2].clientConfig.caBundle, want);
    assert.equal(await ensureCaBundle(opts, s.caCert), 0, 'already right: no patch');
  });

  test('a missing MutatingWebhookConfiguration is waited for; API errors name what failed', async () => {
    assert.equal(await ensureCaBundle({ ...opts, webhookConfigName: 'absent' }, 'x'), 0);
    api.failNext((m, p) => m === 'GET' && p === SECRET, 500);
    await assert.rejects(ensureServingCertificate(opts), (err: unknown) => {
      assert.ok(err instanceof KubeApiError);
      assert.equal(err.status, 500);
      assert.match(err.message, /cannot read Secret tsmesh-system\/tsmesh-injector-tls: HTTP 500: injected failure 500/);
      return true;
    });
  });

  test('the loop picks up a certificate renewed by another replica and re-sets a reset caBundle', async () => {
    api.put(MWC, webhookConfig());
    const first = await ensureServingCertificate(opts);
    const seen: string[] = [];
    const loop = startServingCertLoop({ ...opts, intervalMs: 3_600_000, onCertificate: (tls) => seen.push(tls.cert) }, first);
    try {
      const later = Date.now() + (SERVING_TTL_MS * 3) / 4;
      const other = await ensureServingCertificate({ ...opts, now: () => later }); // "another replica"
      await loop.tick();
      assert.deepEqual(seen, [other.tls.cert]);
      assert.equal((api.get(MWC)!.webhooks as Obj[])[0].clientConfig.caBundle, Buffer.from(first.caCert).toString('base64'));
    } finally {
      loop.stop();
    }
  });

  test('namespace lookup: labels, cache, 404 as unlabelled, errors thrown with the namespace named', async () => {
    api.put('/api/v1/namespaces/shop', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', labels: { 'tsmesh.io/inject': 'enabled' } } });
    let t = 0;
    const lookup = kubeNamespaceLookup(api.kubeConfig(), { ttlMs: 1000, now: () => t });
    assert.deepEqual(await lookup('shop'), { name: 'shop', labels: { 'tsmesh.io/inject': 'enabled' } });
    const gets = () => api.requests.filter((r) => r.path === '/api/v1/namespaces/shop').length;
    const n = gets();
    await lookup('shop');
    assert.equal(gets(), n, 'cached');
    t = 2000;
    await lookup('shop');
    assert.equal(gets(), n + 1, 'read again after the TTL');
    assert.deepEqual(await lookup('nowhere'), { name: 'nowhere', labels: {} });
    api.failNext((_m, p) => p === '/api/v1/namespaces/broken', 503);
    await assert.rejects(lookup('broken'), /cannot read namespace broken: HTTP 503/);
  });
});
