// The identity CA: embedded issuance, POST /v1/certificate over real HTTPS with TokenReview
// through @kubernetes/client-node to the stand-in API server, and the root kept in a Secret.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { X509Certificate as NodeX509 } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api } from '@kubernetes/client-node';
import { Registry } from 'prom-client';
import type {
  CAError} from '../injector/ca/index.ts';
import {
  createCA,
  createCertificateHandler,
  staticTokenVerifier,
  tokenReviewVerifier,
  loadOrCreateRoot,
  publishTrustAnchor,
  startClusterCA,
  generateRoot,
  type CA,
} from '../injector/ca/index.ts';
import { createCsr, generateP256, x509, uriSans, OID, extensionOf } from '../src/identity/x509.ts';
import { KubeStandin } from './harness/kube-standin.ts';
import { AuthenticationV1Api } from '@kubernetes/client-node';

const TD = 'cluster.local';
const idA = `spiffe://${TD}/ns/default/sa/pod-a`;
const idB = `spiffe://${TD}/ns/default/sa/pod-b`;

async function p256Csr(uris: string[] = [], dns: string[] = []): Promise<string> {
  return createCsr(await generateP256(), uris, dns);
}

function rsaCsr(): string {
  const dir = mkdtempSync(join(tmpdir(), 'tsmesh-rsa-'));
  try {
    execFileSync('openssl', ['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'k'), '-subj', '/CN=rsa', '-out', join(dir, 'csr')], { stdio: 'ignore' });
    return execFileSync('cat', [join(dir, 'csr')], { encoding: 'utf8' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('embedded CA', () => {
  let ca: CA;
  before(async () => {
    ca = await createCA({ trustDomain: TD });
  });

  test('issues a P-256 leaf whose only identity is the SPIFFE ID, with the usages of a workload certificate', async () => {
    const before = Date.now();
    const out = await ca.issue(await p256Csr([idA]), { namespace: 'default', serviceAccount: 'pod-a' });
    assert.equal(out.spiffeId, idA);
    assert.equal(out.certChain.length, 1, 'a root signs leaves directly: no intermediates');
    assert.deepEqual(out.ignored, []);
    const leaf = new x509.X509Certificate(out.certChain[0]!);
    assert.deepEqual(uriSans(leaf), [idA]);
    assert.equal(leaf.subject, '');
    const san = extensionOf(leaf, OID.subjectAltName, x509.SubjectAlternativeNameExtension)!;
    assert.equal(san.critical, true, 'SAN is critical when the subject is empty');
    assert.equal(san.names.items.length, 1);
    assert.equal((leaf.publicKey.algorithm as { namedCurve?: string }).namedCurve, 'P-256');
    const bc = extensionOf(leaf, OID.basicConstraints, x509.BasicConstraintsExtension)!;
    assert.equal(bc.ca, false);
    const ku = extensionOf(leaf, OID.keyUsage, x509.KeyUsagesExtension)!;
    assert.equal(ku.usages, x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment);
    const eku = extensionOf(leaf, OID.extKeyUsage, x509.ExtendedKeyUsageExtension)!;
    assert.deepEqual([...eku.usages].sort(), ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']);
    assert.ok(leaf.getExtension('2.5.29.35'), 'authority key identifier');
    assert.ok(leaf.getExtension('2.5.29.14'), 'subject key identifier');
    // backdated a little, 24 h long
    assert.ok(leaf.notBefore.getTime() < before && leaf.notBefore.getTime() > before - 10 * 60_000);
    const lifetime = leaf.notAfter.getTime() - leaf.notBefore.getTime();
    assert.ok(Math.abs(lifetime - 24 * 3600_000 - 60_000) < 5000, `lifetime ${lifetime}`);
    assert.equal(out.expiresAt, leaf.notAfter.toISOString());
    // chains to the trust anchor (Node's X509 and openssl both say so, as a TLS client)
    const root = new NodeX509(out.trustAnchors[0]!);
    const nodeLeaf = new NodeX509(out.certChain[0]!);
    assert.ok(nodeLeaf.checkIssued(root) && nodeLeaf.verify(root.publicKey));
    const dir = mkdtempSync(join(tmpdir(), 'tsmesh-ca-'));
    try {
      writeFileSync(join(dir, 'root'), out.trustAnchors[0]!);
      writeFileSync(join(dir, 'leaf'), out.certChain[0]!);
      const v = execFileSync('openssl', ['verify', '-purpose', 'sslclient', '-CAfile', join(dir, 'root'), join(dir, 'leaf')], { encoding: 'utf8' });
      assert.match(v, /: OK/);
      execFileSync('openssl', ['verify', '-purpose', 'sslserver', '-CAfile', join(dir, 'root'), join(dir, 'leaf')], { encoding: 'utf8' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the identity comes from the caller, never from the CSR: extra SANs and subject are dropped and reported', async () => {
    const out = await ca.issue(await p256Csr([idB, 'spiffe://evil.example/ns/x/sa/y'], ['pod-b.default.svc']), { namespace: 'default', serviceAccount: 'pod-a' });
    assert.deepEqual(uriSans(new x509.X509Certificate(out.certChain[0]!)), [idA]);
    const leaf = new NodeX509(out.certChain[0]!);
    assert.equal(leaf.subjectAltName, `URI:${idA}`);
    assert.equal(out.ignored.length, 1);
    assert.match(out.ignored[0]!, /URL:spiffe:\/\/cluster.local\/ns\/default\/sa\/pod-b/);
    assert.match(out.ignored[0]!, /DNS:pod-b.default.svc/);
  });

  test('an RSA CSR, a CSR whose signature does not verify, and non-CSR input are refused with clear codes', async () => {
    await assert.rejects(ca.issue(rsaCsr(), { namespace: 'default', serviceAccount: 'pod-a' }), (err: CAError) => {
      assert.equal(err.code, 'TSMESH_CA_CSR_KEY_UNSUPPORTED');
      assert.match(err.message, /RSA 2048.*EC P-256/);
      return true;
    });
    const a = await generateP256();
    const b = await generateP256();
    const forged = await createCsr({ publicKey: b.publicKey, privateKey: a.privateKey }, [idA]);
    await assert.rejects(ca.issue(forged, { namespace: 'default', serviceAccount: 'pod-a' }), { code: 'TSMESH_CA_CSR_SIGNATURE' });
    await assert.rejects(ca.issue('hello', { namespace: 'default', serviceAccount: 'pod-a' }), { code: 'TSMESH_CA_CSR_INVALID' });
    await assert.rejects(ca.issue(ca.trustAnchors[0]!, { namespace: 'default', serviceAccount: 'pod-a' }), (err: CAError) => {
      assert.equal(err.code, 'TSMESH_CA_CSR_INVALID');
      assert.match(err.message, /found "CERTIFICATE"/);
      return true;
    });
    const garbled = '-----BEGIN CERTIFICATE REQUEST-----\nAAAAAAAA\n-----END CERTIFICATE REQUEST-----\n';
    await assert.rejects(ca.issue(garbled, { namespace: 'default', serviceAccount: 'pod-a' }), { code: 'TSMESH_CA_CSR_INVALID' });
  });

  test('a supplied root is used as given, and bad root material is refused with the reason', async () => {
    const root = await generateRoot({ trustDomain: 'example.org' });
    const ca2 = await createCA({ trustDomain: 'example.org', root });
    assert.deepEqual(ca2.trustAnchors, [root.cert]);
    const out = await ca2.issue(await p256Csr(), { namespace: 'ns1', serviceAccount: 'sa1' });
    assert.equal(out.spiffeId, 'spiffe://example.org/ns/ns1/sa/sa1');
    const other = await generateRoot({ trustDomain: 'example.org' });
    await assert.rejects(createCA({ trustDomain: TD, root: { cert: root.cert, key: other.key } }), /does not match the CA certificate/);
    const leaf = out.certChain[0]!;
    await assert.rejects(createCA({ trustDomain: TD, root: { cert: leaf, key: root.key } }), /not a CA certificate/);
    await assert.rejects(createCA({ trustDomain: TD, root: { cert: 'nope', key: root.key } }), /tls.crt.*no "CERTIFICATE"/);
    await assert.rejects(createCA({ trustDomain: 'Bad Domain!' }), /trust domain/);
  });

  test('a leaf never outlives its CA', async () => {
    const root = await generateRoot({ trustDomain: TD, ttlMs: 3600_000 });
    const short = await createCA({ trustDomain: TD, root });
    const out = await short.issue(await p256Csr(), { namespace: 'a', serviceAccount: 'b' });
    assert.ok(new Date(out.expiresAt).getTime() <= new x509.X509Certificate(root.cert).notAfter.getTime());
  });
});

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: { error?: { code: string; message: string }; certChain?: string[]; trustAnchors?: string[]; expiresAt?: string; spiffeId?: string; warnings?: string[] };
}

function post(url: string, ca: string, body: string | Buffer, headers: Record<string, string> = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', ca, headers: { 'content-type': 'application/json', ...headers }, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('POST /v1/certificate with TokenReview through the stand-in API server', () => {
  let kube: KubeStandin;
  let ca: CA;
  let server: Server;
  let url: string;
  let registry: Registry;

  before(async () => {
    kube = await KubeStandin.start();
    kube.tokens.set('token-a', { username: 'system:serviceaccount:default:pod-a', audiences: ['tsmesh'], podName: 'pod-a-1' });
    kube.tokens.set('token-b', { username: 'system:serviceaccount:default:pod-b', audiences: ['tsmesh'] });
    kube.tokens.set('token-api-audience', { username: 'system:serviceaccount:default:pod-a' }); // the default API-server token
    kube.tokens.set('token-user', { username: 'alice', audiences: ['tsmesh'] });
    ca = await createCA({ trustDomain: TD });
    registry = new Registry();
    const verifier = tokenReviewVerifier({ api: kube.kubeConfig().makeApiClient(AuthenticationV1Api) });
    const handler = createCertificateHandler({
      ca,
      verifier,
      registry,
      rateLimit: { perClient: { ratePerSec: 0.001, burst: 1000 }, global: { ratePerSec: 0.001, burst: 1000 } },
      // The client picks its rate-limit key in this test, so one test can flood without starving the others.
      clientKey: (req) => String(req.headers['x-test-client'] ?? req.socket.remoteAddress),
    });
    const serving = await ca.issueServing(['localhost']);
    server = createServer({ cert: serving.certChain.join(''), key: serving.keyPem }, handler);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `https://localhost:${(server.address() as AddressInfo).port}/v1/certificate`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    await kube.close();
  });

  test('a pod gets a certificate for its own service account, verified by TokenReview with audience tsmesh', async () => {
    const r = await post(url, ca.trustAnchors[0]!, JSON.stringify({ csr: await p256Csr([idA]) }), { authorization: 'Bearer token-a' });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.spiffeId, idA);
    assert.deepEqual(uriSans(new x509.X509Certificate(r.body.certChain![0]!)), [idA]);
    assert.deepEqual(r.body.trustAnchors, ca.trustAnchors);
    assert.ok(new Date(r.body.expiresAt!).getTime() > Date.now());
    const review = kube.requests.find((q) => q.path === '/apis/authentication.k8s.io/v1/tokenreviews');
    assert.ok(review, 'the TokenReview reached the API server');
    assert.deepEqual((review.body as { spec: unknown }).spec, { token: 'token-a', audiences: ['tsmesh'] });
    assert.equal(review.headers.authorization, 'Bearer standin-admin-token', 'the CA authenticates as itself');
  });

  test("service account A cannot obtain a certificate for B: the CSR's SAN is ignored", async () => {
    const r = await post(url, ca.trustAnchors[0]!, JSON.stringify({ csr: await p256Csr([idB], ['pod-b']) }), { authorization: 'Bearer token-a' });
    assert.equal(r.status, 200);
    assert.equal(r.body.spiffeId, idA);
    assert.deepEqual(uriSans(new x509.X509Certificate(r.body.certChain![0]!)), [idA]);
    assert.match(r.body.warnings![0]!, /ignored the CSR's subjectAltName URL:spiffe:\/\/cluster.local\/ns\/default\/sa\/pod-b, DNS:pod-b/);
  });

  test('bad, foreign and missing tokens get 401/403 with stable codes and no certificate', async () => {
    const csr = JSON.stringify({ csr: await p256Csr() });
    const cases: [Record<string, string>, number, string, RegExp][] = [
      [{}, 401, 'TSMESH_CA_UNAUTHENTICATED', /no service-account token/],
      [{ authorization: 'Basic Zm9vOmJhcg==' }, 401, 'TSMESH_CA_UNAUTHENTICATED', /must be "Bearer <token>"/],
      [{ authorization: 'Bearer nope' }, 401, 'TSMESH_CA_UNAUTHENTICATED', /rejected: \[invalid bearer token/],
      [{ authorization: 'Bearer token-api-audience' }, 401, 'TSMESH_CA_UNAUTHENTICATED', /audiences/],
      [{ authorization: 'Bearer token-user' }, 403, 'TSMESH_CA_FORBIDDEN', /"alice" is not a service account/],
    ];
    for (const [headers, status, code, message] of cases) {
      const r = await post(url, ca.trustAnchors[0]!, csr, headers);
      assert.equal(r.status, status, JSON.stringify([headers, r.body]));
      assert.equal(r.body.error?.code, code);
      assert.match(r.body.error!.message, message);
      assert.equal(r.body.certChain, undefined);
    }
  });

  test('bad bodies and CSRs get 400/413/415 with stable codes', async () => {
    const auth = { authorization: 'Bearer token-b' };
    const cases: [string | Buffer, Record<string, string>, number, string, RegExp][] = [
      ['{not json', auth, 400, 'TSMESH_CA_BAD_REQUEST', /not JSON/],
      ['[]', auth, 400, 'TSMESH_CA_BAD_REQUEST', /"csr"/],
      [JSON.stringify({ csr: 42 }), auth, 400, 'TSMESH_CA_BAD_REQUEST', /"csr"/],
      [JSON.stringify({ csr: 'x' }), auth, 400, 'TSMESH_CA_CSR_INVALID', /CERTIFICATE REQUEST/],
      [JSON.stringify({ csr: rsaCsr() }), auth, 400, 'TSMESH_CA_CSR_KEY_UNSUPPORTED', /RSA 2048/],
      [Buffer.alloc(64 * 1024, 0x20), auth, 413, 'TSMESH_CA_BODY_TOO_LARGE', /limit/],
      ['csr=x', { ...auth, 'content-type': 'application/x-www-form-urlencoded' }, 415, 'TSMESH_CA_UNSUPPORTED_MEDIA_TYPE', /application\/json/],
    ];
    for (const [body, headers, status, code, message] of cases) {
      const r = await post(url, ca.trustAnchors[0]!, body, headers);
      assert.equal(r.status, status, JSON.stringify(r.body));
      assert.equal(r.body.error?.code, code);
      assert.match(r.body.error!.message, message);
    }
  });

  test('the API server being unavailable is a 503, not a crash nor a certificate', async () => {
    const off = kube.use((q) => (q.path.endsWith('/tokenreviews') ? { status: 500, body: kube.status(500, 'InternalError', 'etcd is down') } : undefined));
    try {
      const r = await post(url, ca.trustAnchors[0]!, JSON.stringify({ csr: await p256Csr() }), { authorization: 'Bearer token-a' });
      assert.equal(r.status, 503);
      assert.equal(r.body.error?.code, 'TSMESH_CA_TOKEN_REVIEW_UNAVAILABLE');
      assert.match(r.body.error!.message, /HTTP 500/);
    } finally {
      off();
    }
  });

  test('metrics count issued certificates and results by code', async () => {
    const text = await registry.metrics();
    const issued = Number(/^tsmesh_ca_certificates_issued_total (\d+)/m.exec(text)?.[1]);
    assert.ok(issued >= 2, text);
    assert.match(text, /tsmesh_ca_requests_total\{result="issued"\} \d+/);
    assert.match(text, /tsmesh_ca_requests_total\{result="unauthenticated"\} [1-9]/);
    assert.match(text, /tsmesh_ca_requests_total\{result="csr_key_unsupported"\} 1/);
  });
});

describe('rate limits', () => {
  test('a flood from one client gets 429 with Retry-After while another client is still served; the global bucket caps everyone', async () => {
    const ca = await createCA({ trustDomain: TD });
    const handler = createCertificateHandler({
      ca,
      verifier: staticTokenVerifier({ t: { namespace: 'default', serviceAccount: 'pod-a' } }),
      rateLimit: { perClient: { ratePerSec: 0.01, burst: 3 }, global: { ratePerSec: 0.01, burst: 5 } },
      clientKey: (req) => String(req.headers['x-test-client']),
    });
    const serving = await ca.issueServing(['localhost']);
    const server = createServer({ cert: serving.certChain.join(''), key: serving.keyPem }, handler);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `https://localhost:${(server.address() as AddressInfo).port}/v1/certificate`;
    try {
      const body = JSON.stringify({ csr: await p256Csr() });
      const send = (client: string) => post(url, ca.trustAnchors[0]!, body, { authorization: 'Bearer t', 'x-test-client': client });
      const flood = [];
      for (let i = 0; i < 5; i++) flood.push(await send('noisy'));
      assert.deepEqual(flood.map((r) => r.status), [200, 200, 200, 429, 429]);
      assert.equal(flood[3]!.body.error?.code, 'TSMESH_CA_RATE_LIMITED');
      assert.match(String(flood[3]!.headers['retry-after']), /^\d+$/);
      assert.equal((await send('quiet')).status, 200, 'another client is not starved by the noisy one');
      assert.equal((await send('quiet2')).status, 200);
      const r = await send('quiet3');
      assert.equal(r.status, 429, 'the global bucket (5) is empty now');
      assert.match(r.body.error!.message, /the CA is busy/);
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });
});

describe('the root in the Secret tsmesh-ca and the trust anchor ConfigMap', () => {
  let kube: KubeStandin;
  before(async () => {
    kube = await KubeStandin.start();
  });
  after(() => kube.close());

  test('first start creates the Secret; the next start reads the same root', async () => {
    const core = kube.kubeConfig().makeApiClient(CoreV1Api);
    const first = await loadOrCreateRoot({ core, namespace: 'ns-first', trustDomain: TD });
    assert.equal(first.created, true);
    const stored = kube.get('v1', 'Secret', 'ns-first', 'tsmesh-ca')!;
    assert.equal(stored.type, 'kubernetes.io/tls');
    const data = stored.data as Record<string, string>;
    assert.equal(Buffer.from(data['tls.crt']!, 'base64').toString(), first.root.cert);
    assert.ok(Buffer.from(data['tls.key']!, 'base64').toString().includes('BEGIN PRIVATE KEY'));
    const second = await loadOrCreateRoot({ core, namespace: 'ns-first', trustDomain: TD });
    assert.equal(second.created, false);
    assert.equal(second.root.cert, first.root.cert);
    assert.equal(second.root.key, first.root.key);
  });

  test('two replicas racing: the loser gets 409 on create and uses the winner\'s root', async () => {
    const core = kube.kubeConfig().makeApiClient(CoreV1Api);
    const winner = await generateRoot({ trustDomain: TD });
    // The loser's GET sees no Secret; the winner creates it right after, before the loser's POST.
    const off = kube.use((q) => {
      if (q.method === 'GET' && q.path === '/api/v1/namespaces/ns-race/secrets/tsmesh-ca' && !kube.get('v1', 'Secret', 'ns-race', 'tsmesh-ca')) {
        kube.put({
          apiVersion: 'v1',
          kind: 'Secret',
          metadata: { name: 'tsmesh-ca', namespace: 'ns-race' },
          data: { 'tls.crt': Buffer.from(winner.cert).toString('base64'), 'tls.key': Buffer.from(winner.key).toString('base64') },
        });
        return { status: 404, body: kube.status(404, 'NotFound', 'secrets "tsmesh-ca" not found') };
      }
      return undefined;
    });
    try {
      const loser = await loadOrCreateRoot({ core, namespace: 'ns-race', trustDomain: TD });
      assert.equal(loser.created, false);
      assert.equal(loser.root.cert, winner.cert);
      const posts = kube.requests.filter((q) => q.method === 'POST' && q.path === '/api/v1/namespaces/ns-race/secrets');
      assert.equal(posts.length, 1, 'the loser did try to create');
    } finally {
      off();
    }
  });

  test('the trust anchor ConfigMap is created, left alone when current, and updated when the root changes', async () => {
    const core = kube.kubeConfig().makeApiClient(CoreV1Api);
    const a = await generateRoot({ trustDomain: TD });
    const b = await generateRoot({ trustDomain: TD });
    assert.equal(await publishTrustAnchor({ core, namespace: 'ns-ta', caPem: a.cert }), 'created');
    assert.equal(await publishTrustAnchor({ core, namespace: 'ns-ta', caPem: a.cert }), 'unchanged');
    // a concurrent writer bumps the resourceVersion between our GET and PUT: 409, read again, succeed
    let raced = false;
    const off = kube.use((q) => {
      if (!raced && q.method === 'GET' && q.path === '/api/v1/namespaces/ns-ta/configmaps/tsmesh-trust-anchor') {
        raced = true;
        const cm = kube.get('v1', 'ConfigMap', 'ns-ta', 'tsmesh-trust-anchor')!;
        const reply = { status: 200, body: cm };
        kube.put({ ...cm, metadata: { ...cm.metadata, labels: { touched: 'yes' } } });
        return reply;
      }
      return undefined;
    });
    try {
      assert.equal(await publishTrustAnchor({ core, namespace: 'ns-ta', caPem: b.cert }), 'updated');
    } finally {
      off();
    }
    const puts = kube.requests.filter((q) => q.method === 'PUT' && q.path.endsWith('/configmaps/tsmesh-trust-anchor'));
    assert.equal(puts.length, 2, 'one conflicting PUT, one that won');
    const cm = kube.get('v1', 'ConfigMap', 'ns-ta', 'tsmesh-trust-anchor')!;
    assert.equal((cm.data as Record<string, string>)['ca.crt'], b.cert);
    assert.equal(cm.metadata.labels?.touched, 'yes', "the other writer's change is kept");
  });

  test('a user-supplied Secret is used; startClusterCA publishes its anchor and serves certificates', async () => {
    const root = await generateRoot({ trustDomain: TD });
    kube.put({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'tsmesh-ca', namespace: 'tsmesh-system' },
      type: 'kubernetes.io/tls',
      data: { 'tls.crt': Buffer.from(root.cert).toString('base64'), 'tls.key': Buffer.from(root.key).toString('base64') },
    });
    kube.tokens.set('tok', { username: 'system:serviceaccount:shop:cart', audiences: ['tsmesh'] });
    const { ca, handler } = await startClusterCA({ kubeConfig: kube.kubeConfig(), namespace: 'tsmesh-system', trustDomain: TD });
    assert.deepEqual(ca.trustAnchors, [root.cert]);
    const cm = kube.get('v1', 'ConfigMap', 'tsmesh-system', 'tsmesh-trust-anchor')!;
    assert.equal((cm.data as Record<string, string>)['ca.crt'], root.cert);
    const serving = await ca.issueServing(['localhost']);
    const server = createServer({ cert: serving.certChain.join(''), key: serving.keyPem }, handler);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const r = await post(`https://localhost:${(server.address() as AddressInfo).port}/v1/certificate`, root.cert, JSON.stringify({ csr: await p256Csr() }), { authorization: 'Bearer tok' });
      assert.equal(r.status, 200);
      assert.equal(r.body.spiffeId, 'spiffe://cluster.local/ns/shop/sa/cart');
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });
});
