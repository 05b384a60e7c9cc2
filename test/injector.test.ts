// `tsmesh injector` and `tsmesh inject` as users run them: the composed control plane against
// the stand-in API server (with watch and TokenReview). One root serves everything: the serving
// certificate is issued by the mesh CA, the webhook's caBundle is the mesh root, the API
// server's way of calling /inject (HTTPS to the Service name, trusting the caBundle) and a
// sidecar's way of calling /v1/certificate (trusting the published ca.crt) both verify; the
// trust anchor reaches labelled namespaces and namespaces injected into, and is put back after
// tampering; replicas agree. And the CLI as a process.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { connect } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { Agent, request } from 'undici';
import { parseAllDocuments } from 'yaml';
import { KubeStandin, type KubeObject } from './harness/kube-standin.ts';
import { podCreateReview, testServingMaterial } from '../injector/testing/webhook.ts';
import { runInjector, type RunningInjector } from '../injector/main.ts';
import { createLogger, type Logger } from '../src/log/log.ts';
import { readTlsDir, watchTlsDir } from '../injector/server/tlsdir.ts';
import type { TlsPair } from '../injector/server/server.ts';
import { createCsr, generateP256 } from '../src/identity/x509.ts';

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const ROOT = join(import.meta.dirname, '..');
const NODE = process.execPath;
const SERVICE_NAME = 'tsmesh-injector.tsmesh-system.svc';
const quiet = createLogger({ level: 'silent', destination: new Writable({ write: (_c, _e, d) => d() }) });

function capture(): { logger: Logger; lines: Obj[] } {
  const lines: Obj[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _e, done) {
      for (const l of chunk.toString('utf8').split('\n')) if (l.trim()) lines.push(JSON.parse(l) as Obj);
      done();
    },
  });
  return { logger: createLogger({ level: 'info', name: 'tsmesh-injector', destination }), lines };
}

async function eventually<T>(what: string, probe: () => T | undefined | false, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** The certificate chain a TLS server presents for `servername`. */
function presented(port: number, ca: string, servername = SERVICE_NAME): Promise<X509Certificate> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, ca, servername }, () => {
      const c = s.getPeerX509Certificate()!;
      s.end();
      resolve(c);
    });
    s.on('error', reject);
  });
}

const MWC = (kube: KubeStandin) => kube.get('admissionregistration.k8s.io/v1', 'MutatingWebhookConfiguration', undefined, 'tsmesh-injector')!;
const trustAnchorIn = (kube: KubeStandin, ns: string) => (kube.get('v1', 'ConfigMap', ns, 'tsmesh-trust-anchor') as Obj | undefined)?.data?.['ca.crt'] as string | undefined;
const namespace = (name: string, labels: Record<string, string> = {}): KubeObject => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } });
const webPod = (annotations: Record<string, string> = {}) => ({ apiVersion: 'v1', kind: 'Pod', metadata: { generateName: 'web-', annotations }, spec: { serviceAccountName: 'web', containers: [{ name: 'web', image: 'nginx' }] } });

describe('tsmesh injector against the stand-in API server: one root for the webhook, the CA and the sidecars', () => {
  let kube: KubeStandin;
  let injector: RunningInjector;
  let logs: Obj[];
  let root: string; // the mesh root, from the Secret tsmesh-ca
  before(async () => {
    kube = await KubeStandin.start();
    kube.put(namespace('shop', { 'tsmesh.io/inject': 'enabled' }));
    kube.put(namespace('plain'));
    kube.put({
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'MutatingWebhookConfiguration',
      metadata: { name: 'tsmesh-injector' },
      webhooks: [{ name: 'namespace.inject.tsmesh.io', clientConfig: { service: { name: 'tsmesh-injector', namespace: 'tsmesh-system', path: '/inject', port: 8443 } }, admissionReviewVersions: ['v1'], sideEffects: 'NoneOnDryRun' }],
    });
    kube.tokens.set('web-token', { username: 'system:serviceaccount:shop:web', audiences: ['tsmesh'], podName: 'web-1' });
    const c = capture();
    logs = c.lines;
    injector = await runInjector({
      env: { TSMESH_INJECTOR_PORT: '0' },
      kubeConfig: kube.kubeConfig(),
      logger: c.logger,
      host: '127.0.0.1',
      routes: [() => new Map([['/v1/echo', (_req, res) => void res.end('mounted')]])],
    });
    root = Buffer.from((kube.get('v1', 'Secret', 'tsmesh-system', 'tsmesh-ca') as Obj).data['ca.crt'], 'base64').toString();
  });
  after(async () => {
    await injector?.close();
    await kube.close();
  });

  test('the caBundle is the mesh root; /inject and /v1/certificate answer on one port with a certificate chained to it', async () => {
    assert.match(root, /BEGIN CERTIFICATE/);
    assert.equal(injector.ca.trustAnchors.join(''), root);
    const caBundle = Buffer.from((MWC(kube).webhooks as Obj[])[0].clientConfig.caBundle as string, 'base64').toString();
    assert.equal(caBundle, root, 'the webhook trusts the mesh root');
    const anchor = await eventually('the trust anchor in shop', () => trustAnchorIn(kube, 'shop'));
    assert.equal(anchor, root, 'the ConfigMap pods mount holds the same root');
    const leaf = await presented(injector.controlPlane.port, anchor);
    assert.ok(leaf.verify(new X509Certificate(root).publicKey), 'the serving certificate is signed by the mesh root');

    // The API server's way: HTTPS to the Service name, trusting the caBundle.
    const agent = new Agent({ connect: { ca: caBundle, servername: SERVICE_NAME } });
    const base = `https://127.0.0.1:${injector.controlPlane.port}`;
    try {
      const inject = async (ns: string) => {
        const res = await request(`${base}/inject`, { method: 'POST', dispatcher: agent, headers: { 'content-type': 'application/json' }, body: JSON.stringify(podCreateReview(webPod(), ns)) });
        assert.equal(res.statusCode, 200);
        return ((await res.body.json()) as Obj).response as Obj;
      };
      assert.equal((await inject('shop')).patchType, 'JSONPatch', 'labelled namespace (read from the API)');
      assert.equal((await inject('plain')).patch, undefined, 'unlabelled namespace');
      const echo = await request(`${base}/v1/echo`, { dispatcher: agent });
      assert.equal(await echo.body.text(), 'mounted', "another component's route is mounted");

      // A sidecar's way to the same port: its CSR and its projected token.
      const csr = await createCsr(await generateP256(), []);
      const cert = await request(`${base}/v1/certificate`, { method: 'POST', dispatcher: agent, headers: { 'content-type': 'application/json', authorization: 'Bearer web-token' }, body: JSON.stringify({ csr }) });
      const answer = (await cert.body.json()) as Obj;
      assert.equal(cert.statusCode, 200, JSON.stringify(answer));
      assert.equal(answer.spiffeId, 'spiffe://cluster.local/ns/shop/sa/web');
      assert.deepEqual(answer.trustAnchors, [root]);
      assert.ok(new X509Certificate(answer.certChain[0]).verify(new X509Certificate(root).publicKey));
      const review = kube.requests.find((r) => r.path === '/apis/authentication.k8s.io/v1/tokenreviews')!;
      assert.deepEqual((review.body as Obj).spec, { token: 'web-token', audiences: ['tsmesh'] });
      const refused = await request(`${base}/v1/certificate`, { method: 'POST', dispatcher: agent, headers: { 'content-type': 'application/json', authorization: 'Bearer forged' }, body: JSON.stringify({ csr }) });
      assert.equal(refused.statusCode, 401);
      await refused.body.dump();

      // One registry, one logger.
      const metrics = await (await request(`${base}/metrics`, { dispatcher: agent })).body.text();
      assert.match(metrics, /^tsmesh_ca_certificates_issued_total 1$/m);
      assert.match(metrics, /^tsmesh_ca_requests_total\{result="unauthenticated"\} 1$/m);
      assert.match(metrics, /^tsmesh_injector_injections_total 1$/m);
      assert.match(metrics, /^tsmesh_ca_trust_anchor_writes_total\{result="created"\} [1-9]/m);
      const issued = logs.find((l) => l.msg === 'certificate issued')!;
      assert.equal(issued.component, 'ca');
      assert.equal(issued.name, 'tsmesh-injector', "the injector's pino logger");
      assert.equal(issued.spiffeId, 'spiffe://cluster.local/ns/shop/sa/web');
    } finally {
      await agent.close();
    }
  });

  test('a sidecar (createIdentityProvider, default control-plane name) gets its certificate over HTTPS, trusting the published ca.crt', async (t) => {
    if (process.getuid?.() !== 0 || spawnSync('unshare', ['--version']).error) {
      t.skip('needs root and unshare: the sidecar resolves tsmesh-injector.tsmesh-system.svc through its own /etc/hosts');
      return;
    }
    const dir = mkdtempSync(join(tmpdir(), 'tsmesh-sidecar-'));
    try {
      writeFileSync(join(dir, 'ca.crt'), (await eventually('the trust anchor in shop', () => trustAnchorIn(kube, 'shop')))!);
      writeFileSync(join(dir, 'token'), 'web-token\n');
      writeFileSync(join(dir, 'hosts'), `127.0.0.1 ${SERVICE_NAME}\n`);
      writeFileSync(
        join(dir, 'sidecar.ts'),
        `import { createIdentityProvider } from ${JSON.stringify(join(ROOT, 'src/identity/index.ts'))};
const p = createIdentityProvider(
  { tlsDir: undefined, trustDomain: 'cluster.local', podNamespace: 'shop', serviceAccount: 'web', controlPlane: process.env.TSMESH_CONTROL_PLANE!, watchIntervalMs: 1000 },
  { tokenFile: ${JSON.stringify(join(dir, 'token'))}, caFile: ${JSON.stringify(join(dir, 'ca.crt'))} },
);
p.on('error', () => {});
const timer = setTimeout(() => { console.error('no certificate within 10 s'); process.exit(1); }, 10_000);
const id = await p.ready;
clearTimeout(timer);
console.log(JSON.stringify({ spiffeId: id.spiffeId, chain: id.certChainPem, anchors: id.trustAnchorsPem }));
p.close();
`,
      );
      // A mount namespace of its own: /etc/hosts names the Service; the network is ours (loopback).
      const child = spawn('unshare', ['--mount', 'sh', '-c', `mount --bind ${join(dir, 'hosts')} /etc/hosts && exec "$0" "$1"`, NODE, join(dir, 'sidecar.ts')], {
        env: { ...process.env, TSMESH_CONTROL_PLANE: `https://${SERVICE_NAME}:${injector.controlPlane.port}` },
      });
      let out = '';
      let err = '';
      child.stdout.on('data', (c: Buffer) => (out += c.toString()));
      child.stderr.on('data', (c: Buffer) => (err += c.toString()));
      const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
      assert.equal(code, 0, err);
      const id = JSON.parse(out) as { spiffeId: string; chain: string; anchors: string };
      assert.equal(id.spiffeId, 'spiffe://cluster.local/ns/shop/sa/web');
      assert.equal(id.anchors, root);
      assert.ok(new X509Certificate(id.chain).verify(new X509Certificate(root).publicKey));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the trust anchor: labelled namespaces (also labelled later), namespaces injected into (not on a dry run), put back after an edit or a delete', async () => {
    const core = (ns: string) => eventually(`the trust anchor in ${ns}`, () => trustAnchorIn(kube, ns) === root);
    await core('shop');
    await core('tsmesh-system');
    assert.equal(trustAnchorIn(kube, 'plain'), undefined, 'not in an unlabelled namespace');
    kube.put(namespace('late', { 'tsmesh.io/inject': 'enabled' }));
    await core('late');

    // Someone edits it, then deletes it.
    const cm = kube.get('v1', 'ConfigMap', 'shop', 'tsmesh-trust-anchor')!;
    kube.put({ ...cm, data: { 'ca.crt': 'tampered', 'note': 'kept' } });
    await core('shop');
    assert.equal((kube.get('v1', 'ConfigMap', 'shop', 'tsmesh-trust-anchor') as Obj).data.note, 'kept', 'only ca.crt is ours');
    kube.remove('v1', 'ConfigMap', undefined, 'x'); // no-op
    kube.remove('v1', 'ConfigMap', 'late', 'tsmesh-trust-anchor');
    await core('late');
    const watches = kube.watches.map((w) => `${w.path}?${w.query.get('labelSelector') ?? w.query.get('fieldSelector')}`).sort();
    assert.deepEqual(watches, ['/api/v1/configmaps?metadata.name=tsmesh-trust-anchor', '/api/v1/namespaces?tsmesh.io/inject=enabled'], 'two watches, the ConfigMap one pinned by name (RBAC resourceNames)');

    // A pod opted in by annotation in an unlabelled namespace: published on injection.
    kube.put(namespace('optin'));
    kube.put(namespace('dry'));
    const agent = new Agent({ connect: { ca: root, servername: SERVICE_NAME } });
    try {
      const post = async (ns: string, extra: Obj = {}) => {
        const res = await request(`https://127.0.0.1:${injector.controlPlane.port}/inject`, { method: 'POST', dispatcher: agent, body: JSON.stringify(podCreateReview(webPod({ 'tsmesh.io/inject': 'enabled' }), ns, extra)) });
        assert.equal(((await res.body.json()) as Obj).response.patchType, 'JSONPatch');
      };
      await post('dry', { dryRun: true });
      await post('optin');
      await core('optin');
      assert.equal(trustAnchorIn(kube, 'dry'), undefined, 'a dry run has no side effects');
      // And it is kept there too.
      kube.remove('v1', 'ConfigMap', 'optin', 'tsmesh-trust-anchor');
      await core('optin');
    } finally {
      await agent.close();
    }
  });

  test('a second replica against the same API: the same root, the same serving certificate, the same caBundle', async () => {
    const b = await runInjector({ env: { TSMESH_INJECTOR_PORT: '0' }, kubeConfig: kube.kubeConfig(), logger: quiet, host: '127.0.0.1' });
    try {
      assert.deepEqual(b.ca.trustAnchors, injector.ca.trustAnchors);
      const [ca, cb] = await Promise.all([presented(injector.controlPlane.port, root), presented(b.controlPlane.port, root)]);
      assert.equal(ca.fingerprint256, cb.fingerprint256, 'one serving certificate, from the Secret');
      assert.equal(Buffer.from((MWC(kube).webhooks as Obj[])[0].clientConfig.caBundle, 'base64').toString(), root);
      const posts = kube.requests.filter((r) => r.method === 'POST' && r.path.endsWith('/secrets'));
      assert.equal(posts.length, 2, 'the Secrets were made once (tsmesh-ca, tsmesh-injector-tls)');
    } finally {
      await b.close();
    }
  });
});

describe('tsmesh injector with TSMESH_INJECTOR_TLS_DIR', () => {
  test('serves the files, leaves the caBundle alone, and warns when sidecars would not trust them', async () => {
    const kube = await KubeStandin.start();
    const dir = mkdtempSync(join(tmpdir(), 'tsmesh-tlsdir-'));
    try {
      const foreign = await testServingMaterial([SERVICE_NAME]);
      writeFileSync(join(dir, 'tls.crt'), foreign.cert);
      writeFileSync(join(dir, 'tls.key'), foreign.key);
      const c = capture();
      const injector = await runInjector({ env: { TSMESH_INJECTOR_PORT: '0', TSMESH_INJECTOR_TLS_DIR: dir }, kubeConfig: kube.kubeConfig(), logger: c.logger, host: '127.0.0.1' });
      try {
        const leaf = await presented(injector.controlPlane.port, foreign.caCert);
        assert.equal(leaf.fingerprint256, new X509Certificate(foreign.cert).fingerprint256);
        assert.equal(kube.get('v1', 'Secret', 'tsmesh-system', 'tsmesh-injector-tls'), undefined, 'no serving Secret');
        assert.ok(!kube.requests.some((r) => r.path.includes('mutatingwebhookconfigurations')), 'the caBundle is yours to set');
        const warn = c.lines.find((l) => /sidecars will refuse/.test(l.msg))!;
        assert.match(warn.reason, /is not among the mesh trust anchors/);
      } finally {
        await injector.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
      await kube.close();
    }
  });
});

describe('tsmesh injector refuses to start', () => {
  test('when a component mounts a built-in route, and stops what it had started', async () => {
    const kube = await KubeStandin.start();
    try {
      await assert.rejects(
        runInjector({ env: { TSMESH_INJECTOR_PORT: '0' }, kubeConfig: kube.kubeConfig(), logger: quiet, host: '127.0.0.1', routes: [() => new Map([['/v1/certificate', () => {}]])] }),
        /two components mount the route \/v1\/certificate/,
      );
      await eventually('every watch closed', () => kube.watches.length === 0);
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(kube.watches.length, 0, 'and none opened after');
    } finally {
      await kube.close();
    }
  });

  test('with a bad trust domain, named', async () => {
    await assert.rejects(runInjector({ env: { TSMESH_TRUST_DOMAIN: 'Not A Domain' }, logger: quiet }), /TSMESH_TRUST_DOMAIN="Not A Domain": must be a trust domain/);
  });
});

describe('serving certificate from files', () => {
  test('read, checked and re-read when the files change', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tsmesh-tls-'));
    try {
      const a = await testServingMaterial(['localhost']);
      const b = await testServingMaterial(['localhost']);
      writeFileSync(join(dir, 'tls.crt'), a.cert);
      writeFileSync(join(dir, 'tls.key'), a.key);
      const first = await readTlsDir(dir);
      const seen: TlsPair[] = [];
      const errors: string[] = [];
      const w = watchTlsDir(dir, first, (p) => seen.push(p), (e) => errors.push(e.message), 3_600_000);
      try {
        await w.check();
        assert.equal(seen.length, 0, 'unchanged');
        writeFileSync(join(dir, 'tls.crt'), b.cert); // half-way through an update
        await w.check();
        assert.equal(seen.length, 0);
        assert.match(errors[0]!, /tls\.key does not match/);
        writeFileSync(join(dir, 'tls.key'), b.key);
        await w.check();
        assert.equal(seen.length, 1);
        assert.equal(seen[0]!.cert, b.cert);
      } finally {
        w.stop();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('tsmesh inject (the command)', () => {
  const tsmesh = (args: string[], input?: string) =>
    spawnSync(NODE, [join(ROOT, 'bin/tsmesh.js'), 'inject', ...args], { input, encoding: 'utf8', env: { ...process.env, TSMESH_PROXY_IMAGE: 'registry.example/tsmesh:dev' } });

  test('-f - reads standard input; kinds pass through; order kept; skips reported on stderr', () => {
    const input = [
      'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: first # kept as written\n',
      'apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: db\nspec:\n  serviceName: db\n  selector:\n    matchLabels: {app: db}\n  template:\n    metadata:\n      labels: {app: db}\n    spec:\n      containers:\n        - name: db\n          image: postgres\n',
      'apiVersion: v1\nkind: Pod\nmetadata:\n  name: node\n  namespace: kube-system\nspec:\n  containers:\n    - name: x\n      image: x\n',
    ].join('---\n');
    const r = tsmesh(['-f', '-'], input);
    assert.equal(r.status, 0, r.stderr);
    const docs = parseAllDocuments(r.stdout).map((d) => d.toJS() as Obj);
    assert.deepEqual(docs.map((d) => d.kind), ['ConfigMap', 'StatefulSet', 'Pod']);
    assert.ok(r.stdout.startsWith('apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: first # kept as written\n'), 'untouched documents keep their text');
    const init = docs[1]!.spec.template.spec.initContainers as Obj[];
    assert.deepEqual(init.map((c) => c.name), ['tsmesh-init', 'tsmesh-proxy']);
    assert.equal(init[1]!.image, 'registry.example/tsmesh:dev', 'image from the environment');
    assert.equal(docs[2]!.spec.initContainers, undefined);
    assert.match(r.stderr, /stdin: document 3: Pod node: not injected \(system-namespace\)/);
  });

  test('-f FILE, several files; errors name the file and exit non-zero', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tsmesh-inject-'));
    try {
      writeFileSync(join(dir, 'a.yaml'), readFileSync(join(ROOT, 'injector/testdata/pod-a.yaml')));
      writeFileSync(join(dir, 'bad.yaml'), 'kind: Pod\nmetadata: [unclosed\n');
      const ok = tsmesh(['-f', join(dir, 'a.yaml'), '-f', join(dir, 'a.yaml')]);
      assert.equal(ok.status, 0, ok.stderr);
      assert.equal(parseAllDocuments(ok.stdout).length, 2);
      const bad = tsmesh(['-f', join(dir, 'bad.yaml')]);
      assert.equal(bad.status, 1);
      assert.match(bad.stderr, /bad\.yaml: YAML document 1/);
      const missing = tsmesh(['-f', join(dir, 'nope.yaml')]);
      assert.equal(missing.status, 1);
      assert.match(missing.stderr, /nope\.yaml: cannot read/);
      const none = tsmesh([]);
      assert.equal(none.status, 2);
      assert.match(none.stderr, /no input/);
      const env = spawnSync(NODE, [join(ROOT, 'bin/tsmesh.js'), 'inject', '-f', join(dir, 'a.yaml')], { encoding: 'utf8', env: { ...process.env, TSMESH_PROXY_IMAGE_PULL_POLICY: 'Sometimes' } });
      assert.equal(env.status, 1);
      assert.match(env.stderr, /TSMESH_PROXY_IMAGE_PULL_POLICY="Sometimes"/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
