// The serving certificate's Kubernetes side against the stand-in API server (real JSON API):
// issued by the mesh CA, kept in a Secret created once and shared, renewed in place, replaced
// when it is not the mesh CA's (an older version's self-signed material); the caBundle (the mesh
// trust anchors) is patched with a JSON patch on our webhooks only; API errors are named.
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { Writable } from 'node:stream';
import { KubeStandin, type KubeObject, type StandinRequest } from '../../test/harness/kube-standin.ts';
import { createLogger } from '../../src/log/log.ts';
import { createCA, type CA } from '../ca/ca.ts';
import { ensureCaBundle, ensureServingCertificate, startServingCertLoop, KubeApiError, type ServingCertOptions } from './kube.ts';
import { checkServing, serviceDnsNames, untrustedBy, SERVING_TTL_MS } from './cert.ts';
import { kubeNamespaceLookup } from '../webhook/namespaces.ts';

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const NS = 'tsmesh-system';
const quiet = createLogger({ level: 'silent', destination: new Writable({ write: (_c, _e, d) => d() }) });
const b64 = (s: string): string => Buffer.from(s).toString('base64');

function webhookConfig(): KubeObject {
  const hook = (name: string, service: string, namespace = NS) => ({
    name,
    admissionReviewVersions: ['v1'],
    sideEffects: 'NoneOnDryRun',
    clientConfig: { service: { name: service, namespace, path: '/inject', port: 8443 } },
  });
  return {
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'MutatingWebhookConfiguration',
    metadata: { name: 'tsmesh-injector' },
    webhooks: [hook('namespace.inject.tsmesh.io', 'tsmesh-injector'), hook('other.example.com', 'someone-else', 'other'), hook('pod.inject.tsmesh.io', 'tsmesh-injector')],
  };
}

/** The next `count` requests matching `match` get `status` with a Status body. */
function failNext(kube: KubeStandin, match: (r: StandinRequest) => boolean, status: number, count = 1): void {
  const off = kube.use((r) => {
    if (!match(r)) return undefined;
    if (--count === 0) off();
    return { status, body: kube.status(status, status === 409 ? 'Conflict' : 'InternalError', `injected failure ${status}`) };
  });
}

describe('serving certificate through the Kubernetes API', () => {
  let kube: KubeStandin;
  let ca: CA;
  let opts: ServingCertOptions;
  const secret = (name = 'tsmesh-injector-tls') => kube.get('v1', 'Secret', NS, name) as Obj | undefined;
  const writes = () => kube.requests.filter((r) => r.method !== 'GET').length;
  before(async () => {
    kube = await KubeStandin.start();
    ca = await createCA({ trustDomain: 'cluster.local' });
  });
  after(() => kube.close());
  beforeEach(() => {
    opts = { kubeConfig: kube.kubeConfig(), ca, namespace: NS, serviceName: 'tsmesh-injector', secretName: 'tsmesh-injector-tls', webhookConfigName: 'tsmesh-injector', logger: quiet };
  });

  test('first start: issued by the mesh CA for the Service names, stored in the Secret; the next start reads it', async () => {
    const a = await ensureServingCertificate(opts);
    const s = secret()!;
    assert.equal(s.type, 'kubernetes.io/tls');
    assert.deepEqual(Object.keys(s.data).sort(), ['ca.crt', 'tls.crt', 'tls.key']);
    assert.equal(Buffer.from(s.data['ca.crt'], 'base64').toString(), ca.trustAnchors.join(''), 'ca.crt: the mesh trust anchors');
    const leaf = new X509Certificate(a.tls.cert);
    const root = new X509Certificate(ca.trustAnchors[0]!);
    assert.ok(leaf.checkIssued(root) && leaf.verify(root.publicKey), 'signed by the mesh root');
    for (const name of serviceDnsNames('tsmesh-injector', NS)) assert.ok(leaf.checkHost(name), `names ${name}`);
    assert.equal(a.caBundle, ca.trustAnchors.join(''));
    const life = leaf.validToDate.getTime() - leaf.validFromDate.getTime();
    assert.ok(Math.abs(life - SERVING_TTL_MS) < 120_000, `lifetime ${life} ms`);
    assert.ok(kube.requests.every((r) => r.headers.authorization === 'Bearer standin-admin-token'), 'authenticated with the token');
    const n = writes();
    const b = await ensureServingCertificate(opts);
    assert.equal(b.tls.cert, a.tls.cert);
    assert.equal(writes(), n, 'nothing written the second time');
  });

  test('two replicas starting together agree (the loser of the create race reads the winner)', async () => {
    const fresh = { ...opts, secretName: 'race' };
    const [a, b] = await Promise.all([ensureServingCertificate(fresh), ensureServingCertificate(fresh)]);
    assert.equal(a.tls.cert, b.tls.cert);
    assert.equal(kube.requests.filter((r) => r.method === 'POST' && r.path.endsWith('/secrets')).length >= 2, true, 'both tried to create');
  });

  test('renews near the end of its life with the same anchors; replaces an older version\'s self-signed material', async () => {
    const first = await ensureServingCertificate({ ...opts, secretName: 'renew' });
    const later = Date.now() + (SERVING_TTL_MS * 3) / 4;
    const renewed = await ensureServingCertificate({ ...opts, secretName: 'renew', now: () => later });
    assert.notEqual(renewed.tls.cert, first.tls.cert);
    assert.equal(renewed.caBundle, first.caBundle, 'the caBundle stays valid');
    const put = kube.requests.findLast((r) => r.method === 'PUT')!;
    assert.ok((put.body as Obj).metadata.resourceVersion, 'replaced with the resourceVersion it read');

    // What the previous version stored: its own CA (with its key) and a certificate from it.
    const old = await createCA({ trustDomain: 'cluster.local' });
    const oldServing = await old.issueServing(serviceDnsNames('tsmesh-injector', NS));
    kube.put({
      apiVersion: 'v1',
      kind: 'Secret',
      type: 'kubernetes.io/tls',
      metadata: { name: 'upgrade', namespace: NS },
      data: { 'tls.crt': b64(oldServing.certChain.join('')), 'tls.key': b64(oldServing.keyPem), 'ca.crt': b64(old.root.cert), 'ca.key': b64(old.root.key) },
    });
    const replaced = await ensureServingCertificate({ ...opts, secretName: 'upgrade' });
    assert.ok(new X509Certificate(replaced.tls.cert).verify(new X509Certificate(ca.root.cert).publicKey), 'now from the mesh CA');
    assert.deepEqual(Object.keys(secret('upgrade')!.data).sort(), ['ca.crt', 'tls.crt', 'tls.key'], 'the old CA key is gone');

    kube.put({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'broken', namespace: NS }, data: { 'tls.crt': b64('junk') } });
    const fixed = await ensureServingCertificate({ ...opts, secretName: 'broken' });
    assert.ok(new X509Certificate(fixed.tls.cert).checkHost(`tsmesh-injector.${NS}.svc`));
  });

  test('a concurrent renewal (409 Conflict) is re-read, not overwritten', async () => {
    await ensureServingCertificate({ ...opts, secretName: 'conflict' });
    failNext(kube, (r) => r.method === 'PUT' && r.path.endsWith('/conflict'), 409);
    const later = Date.now() + (SERVING_TTL_MS * 3) / 4;
    const s = await ensureServingCertificate({ ...opts, secretName: 'conflict', now: () => later });
    assert.equal(Buffer.from(secret('conflict')!.data['tls.crt'], 'base64').toString(), s.tls.cert);
    assert.ok(kube.requests.filter((r) => r.method === 'PUT' && r.path.endsWith('/conflict')).length >= 2);
  });

  test('sets the caBundle (the mesh trust anchors) of our webhooks only, with a JSON patch; then leaves it alone', async () => {
    kube.put(webhookConfig());
    const s = await ensureServingCertificate(opts);
    assert.equal(await ensureCaBundle(opts, s.caBundle), 2);
    const patch = kube.requests.findLast((r) => r.method === 'PATCH')!;
    assert.equal(patch.headers['content-type'], 'application/json-patch+json');
    const hooks = kube.get('admissionregistration.k8s.io/v1', 'MutatingWebhookConfiguration', undefined, 'tsmesh-injector')!.webhooks as Obj[];
    const want = b64(ca.trustAnchors.join(''));
    assert.equal(hooks[0].clientConfig.caBundle, want);
    assert.equal(hooks[1].clientConfig.caBundle, undefined, "another service's webhook is not touched");
    assert.equal(hooks[2].clientConfig.caBundle, want);
    assert.equal(await ensureCaBundle(opts, s.caBundle), 0, 'already right: no patch');
  });

  test('a missing MutatingWebhookConfiguration is waited for; API errors name what failed', async () => {
    assert.equal(await ensureCaBundle({ ...opts, webhookConfigName: 'absent' }, 'x'), 0);
    failNext(kube, (r) => r.method === 'GET' && r.path === `/api/v1/namespaces/${NS}/secrets/tsmesh-injector-tls`, 500);
    await assert.rejects(ensureServingCertificate(opts), (err: unknown) => {
      assert.ok(err instanceof KubeApiError);
      assert.equal(err.status, 500);
      assert.match(err.message, /cannot read Secret tsmesh-system\/tsmesh-injector-tls: HTTP 500: injected failure 500/);
      return true;
    });
  });

  test('the loop picks up a certificate renewed by another replica and re-sets a reset caBundle', async () => {
    kube.put(webhookConfig());
    const first = await ensureServingCertificate(opts);
    const seen: string[] = [];
    const loop = startServingCertLoop({ ...opts, intervalMs: 3_600_000, onCertificate: (tls) => seen.push(tls.cert) }, first);
    try {
      const later = Date.now() + (SERVING_TTL_MS * 3) / 4;
      const other = await ensureServingCertificate({ ...opts, now: () => later }); // "another replica"
      await loop.tick();
      assert.deepEqual(seen, [other.tls.cert]);
      const hooks = kube.get('admissionregistration.k8s.io/v1', 'MutatingWebhookConfiguration', undefined, 'tsmesh-injector')!.webhooks as Obj[];
      assert.equal(hooks[0].clientConfig.caBundle, b64(ca.trustAnchors.join('')));
    } finally {
      loop.stop();
    }
  });

  test('namespace lookup: labels, cache, 404 as unlabelled, errors thrown with the namespace named', async () => {
    kube.put({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', labels: { 'tsmesh.io/inject': 'enabled' } } });
    let t = 0;
    const lookup = kubeNamespaceLookup(kube.kubeConfig(), { ttlMs: 1000, now: () => t });
    assert.deepEqual(await lookup('shop'), { name: 'shop', labels: { 'tsmesh.io/inject': 'enabled' } });
    const gets = () => kube.requests.filter((r) => r.path === '/api/v1/namespaces/shop').length;
    const n = gets();
    await lookup('shop');
    assert.equal(gets(), n, 'cached');
    t = 2000;
    await lookup('shop');
    assert.equal(gets(), n + 1, 'read again after the TTL');
    assert.deepEqual(await lookup('nowhere'), { name: 'nowhere', labels: {} });
    failNext(kube, (r) => r.path === '/api/v1/namespaces/broken', 503);
    await assert.rejects(lookup('broken'), /cannot read namespace broken: HTTP 503/);
  });
});

describe('checking serving material', () => {
  test('names, key, issuer and renewal point are each reported', async () => {
    const ca = await createCA({ trustDomain: 'cluster.local' });
    const other = await createCA({ trustDomain: 'cluster.local' });
    const names = serviceDnsNames('tsmesh-injector', NS);
    const good = await ca.issueServing(names, SERVING_TTL_MS);
    const m = { cert: good.certChain.join(''), key: good.keyPem };
    const now = Date.now();
    const ok = checkServing(m, { signerPem: ca.root.cert, dnsNames: names, now });
    assert.equal(ok.state, 'good');
    assert.ok(ok.state === 'good' && Math.abs(ok.renewAt - (now + (SERVING_TTL_MS * 2) / 3)) < 120_000, 'renewed with a third left');
    const reason = (r: ReturnType<typeof checkServing>) => (r.state === 'renew' ? r.reason : 'good');
    assert.match(reason(checkServing(m, { signerPem: ca.root.cert, dnsNames: [...names, 'extra.example'], now })), /does not name extra\.example/);
    assert.match(reason(checkServing({ ...m, key: (await other.issueServing(['x'])).keyPem }, { signerPem: ca.root.cert, dnsNames: names, now })), /key does not match/);
    assert.match(reason(checkServing(m, { signerPem: other.root.cert, dnsNames: names, now })), /not issued by the mesh CA \(issuer "O=tsmesh, CN=tsmesh root CA cluster.local"\)/);
    assert.match(reason(checkServing({ cert: 'x', key: m.key }, { signerPem: ca.root.cert, dnsNames: names, now })), /not readable PEM/);
    assert.match(reason(checkServing({}, { signerPem: ca.root.cert, dnsNames: names, now })), /no serving certificate/);

    assert.equal(untrustedBy(m.cert, ca.trustAnchors.join('')), undefined);
    assert.equal(untrustedBy(m.cert, other.trustAnchors.join('') + ca.trustAnchors.join('')), undefined, 'any of several anchors');
    assert.match(untrustedBy(m.cert, other.trustAnchors.join(''))!, /is not among the mesh trust anchors/);
  });
});
