// `tsmesh injector` and `tsmesh inject` as users run them: the composed control plane against
// a stand-in API server (it makes its certificate, sets the caBundle, and answers the API
// server's way of calling it: HTTPS to the Service DNS name, trusting that caBundle), and the
// CLI as a process.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { Agent, request } from 'undici';
import { parseAllDocuments } from 'yaml';
import { startFakeApiServer, type FakeApiServer } from '../injector/testing/apiserver.ts';
import { podCreateReview } from '../injector/testing/webhook.ts';
import { runInjector, type RunningInjector } from '../injector/main.ts';
import { createLogger } from '../src/log/log.ts';
import { generateServingMaterial } from '../injector/servingcert/cert.ts';
import { readTlsDir, watchTlsDir } from '../injector/server/tlsdir.ts';
import type { TlsPair } from '../injector/server/server.ts';

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const ROOT = join(import.meta.dirname, '..');
const NODE = process.execPath;
const quiet = createLogger({ level: 'silent', destination: new Writable({ write: (_c, _e, d) => d() }) });
const MWC = '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/tsmesh-injector';

describe('tsmesh injector against a stand-in API server', () => {
  let api: FakeApiServer;
  let injector: RunningInjector;
  before(async () => {
    api = await startFakeApiServer();
    api.put('/api/v1/namespaces/shop', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', labels: { 'tsmesh.io/inject': 'enabled' } } });
    api.put('/api/v1/namespaces/plain', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'plain' } });
    api.put(MWC, {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'MutatingWebhookConfiguration',
      metadata: { name: 'tsmesh-injector' },
      webhooks: [{ name: 'namespace.inject.tsmesh.io', clientConfig: { service: { name: 'tsmesh-injector', namespace: 'tsmesh-system', path: '/inject', port: 8443 } }, admissionReviewVersions: ['v1'], sideEffects: 'None' }],
    });
    injector = await runInjector({
      env: { TSMESH_INJECTOR_PORT: '0' },
      kubeConfig: api.kubeConfig(),
      logger: quiet,
      host: '127.0.0.1',
      routes: [() => new Map([['/v1/echo', (_req, res) => void res.end('mounted')]])],
    });
  });
  after(async () => {
    await injector?.close();
    await api.close();
  });

  test('provisions its certificate and caBundle, then injects as the API server calls it', async () => {
    const caBundle = (api.get(MWC)!.webhooks as Obj[])[0].clientConfig.caBundle as string;
    assert.ok(caBundle, 'the caBundle was set');
    const agent = new Agent({ connect: { ca: Buffer.from(caBundle, 'base64').toString(), servername: 'tsmesh-injector.tsmesh-system.svc' } });
    try {
      const post = async (ns: string) => {
        const res = await request(`https://127.0.0.1:${injector.controlPlane.port}/inject`, {
          method: 'POST',
          dispatcher: agent,
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(podCreateReview({ apiVersion: 'v1', kind: 'Pod', metadata: { generateName: 'web-' }, spec: { containers: [{ name: 'web', image: 'nginx' }] } }, ns)),
        });
        assert.equal(res.statusCode, 200);
        return ((await res.body.json()) as Obj).response as Obj;
      };
      assert.equal((await post('shop')).patchType, 'JSONPatch', 'labelled namespace (read from the API)');
      assert.equal((await post('plain')).patch, undefined, 'unlabelled namespace');
      const echo = await request(`https://127.0.0.1:${injector.controlPlane.port}/v1/echo`, { dispatcher: agent });
      assert.equal(await echo.body.text(), 'mounted', "another component's route is mounted");
    } finally {
      await agent.close();
    }
  });
});

describe('serving certificate from files', () => {
  test('read, checked and re-read when the files change', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tsmesh-tls-'));
    try {
      const a = await generateServingMaterial({ dnsNames: ['localhost'] });
      const b = await generateServingMaterial({ dnsNames: ['localhost'] });
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
