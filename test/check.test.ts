// `tsmesh check` against the stand-in API server (test/harness/kube-standin.ts, the Kubernetes
// JSON API over real HTTP, reached by @kubernetes/client-node as in a cluster): a healthy
// cluster passes every check (exit 0); each broken condition fails its own line with a hint
// (exit 1); an unreachable API server is named with its error and the rest is skipped.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { KubeStandin, writeKubeconfig, type KubeObject } from './harness/kube-standin.ts';
import { createCA } from '../injector/ca/index.ts';
import { runChecks } from '../injector/check/checks.ts';
import { CONTROL_PLANE_PERMISSIONS } from '../injector/check/rbac.ts';
import { DEFAULT_IMAGE } from '../injector/inject/settings.ts';

const ROOT = join(import.meta.dirname, '..');
const TSMESH = join(ROOT, 'bin', 'tsmesh.js');
const NS = 'tsmesh-system';
const dir = await mkdtemp(join(tmpdir(), 'tsmesh-check-'));
after(() => rm(dir, { recursive: true, force: true }));

const root = await createCA({ trustDomain: 'cluster.local' });
const ANCHORS = root.trustAnchors.join('');
const other = await createCA({ trustDomain: 'cluster.local' });
const b64 = (s: string): string => Buffer.from(s).toString('base64');

function configMap(namespace: string, pem: string): KubeObject {
  return { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'tsmesh-trust-anchor', namespace }, data: { 'ca.crt': pem } };
}

function meshedPod(namespace: string, name: string, o: { ready?: boolean; image?: string } = {}): KubeObject {
  const image = o.image ?? DEFAULT_IMAGE;
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace, annotations: { 'tsmesh.io/status': '{"version":"0.1.0"}' } },
    spec: { initContainers: [{ name: 'tsmesh-init', image }, { name: 'tsmesh-proxy', image, restartPolicy: 'Always' }], containers: [{ name: 'app', image: 'app' }] },
    status: { phase: 'Running', initContainerStatuses: [{ name: 'tsmesh-proxy', ready: o.ready ?? true, image, imageID: '', restartCount: 0 }] },
  };
}

/** A cluster where tsmesh is installed and works. */
async function healthyCluster(): Promise<KubeStandin> {
  const kube = await KubeStandin.start();
  after(() => kube.close());
  kube.put({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } });
  kube.put(configMap(NS, ANCHORS));
  kube.put({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'tsmesh-injector', namespace: NS },
    spec: {
      replicas: 2,
      selector: { matchLabels: { app: 'x' } },
      template: { metadata: {}, spec: { containers: [{ name: 'injector', image: 'ghcr.io/tsmesh/tsmesh-control-plane:0.1.0', env: [{ name: 'TSMESH_PROXY_IMAGE', value: DEFAULT_IMAGE }] }] } },
    },
    status: { replicas: 2, readyReplicas: 2 },
  });
  kube.put({
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'MutatingWebhookConfiguration',
    metadata: { name: 'tsmesh-injector' },
    webhooks: [
      {
        name: 'namespace.inject.tsmesh.io',
        admissionReviewVersions: ['v1'],
        sideEffects: 'NoneOnDryRun',
        clientConfig: { service: { name: 'tsmesh-injector', namespace: NS, path: '/inject' }, caBundle: b64(ANCHORS) },
      },
    ],
  });
  kube.put({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', labels: { 'tsmesh.io/inject': 'enabled' } } });
  kube.put(configMap('shop', ANCHORS));
  kube.put(meshedPod('shop', 'web-1'));
  return kube;
}

function check(args: string[], server: string): Promise<{ code: number; out: string }> {
  return writeKubeconfig(join(dir, `kubeconfig-${Math.random().toString(36).slice(2)}`), server).then(
    (KUBECONFIG) =>
      new Promise((resolve) => {
        execFile(process.execPath, [TSMESH, 'check', ...args], { env: { PATH: process.env.PATH ?? '', HOME: dir, KUBECONFIG }, timeout: 60_000 }, (err, stdout, stderr) => {
          resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr });
        });
      }),
  );
}

test('a healthy cluster: every check passes, exit 0', async () => {
  const kube = await healthyCluster();
  const r = await check([], kube.url);
  assert.equal(r.code, 0, r.out);
  assert.ok(r.out.startsWith(`tsmesh check: ${kube.url} (context test-context)\n`), r.out);
  for (const line of [
    'ok    API server: ',
    'ok    Kubernetes version: v1.31.0',
    "ok    the control plane's permissions: tsmesh-system/tsmesh-injector may do all it needs",
    'ok    control plane ready: Deployment tsmesh-system/tsmesh-injector: 2 of 2 replicas ready',
    'ok    root certificate: valid until',
    'ok    webhook configuration: 1 webhook(s), caBundle = the mesh root',
    'ok    trust anchors in meshed namespaces: present and current in 1 namespace(s)',
    'ok    meshed pods: 1 meshed pod(s), every sidecar ready',
    'ok    mesh routes (Gateway API): HTTPRoute (v1), GRPCRoute (v1) served',
  ]) {
    assert.ok(r.out.includes(line), `missing "${line}" in:\n${r.out}`);
  }
  assert.doesNotMatch(r.out, /FAIL|warn|skip/);
  assert.match(r.out, /all 9 checks passed\n$/);
  // the control plane's permissions were asked as its service account
  assert.ok(kube.requests.some((q) => q.path.endsWith('/selfsubjectaccessreviews') && q.headers['impersonate-user'] === 'system:serviceaccount:tsmesh-system:tsmesh-injector'));
});

test('--pre asks only what applies before installing: the API server, its version, your permissions', async () => {
  const kube = await KubeStandin.start();
  after(() => kube.close());
  kube.version = { ...kube.version, minor: '28', gitVersion: 'v1.28.4' };
  const denied = new Set(['clusterroles', 'mutatingwebhookconfigurations']);
  kube.accessReviewer = (a, user) => user !== 'standin-admin' || !(a.verb === 'create' && denied.has(a.resource ?? ''));
  const r = await check(['--pre'], kube.url);
  assert.equal(r.code, 1, r.out);
  assert.match(r.out, /^warn {2}Kubernetes version: v1\.28\.4: native sidecars need 1\.29 or newer$/m);
  assert.match(r.out, /^FAIL {2}permissions to install: you may not create clusterroles\.rbac\.authorization\.k8s\.io, create mutatingwebhookconfigurations\.admissionregistration\.k8s\.io$/m);
  assert.match(r.out, /^ {6}hint: install as a cluster administrator/m);
  assert.doesNotMatch(r.out, /webhook configuration|control plane ready|meshed pods/);
  assert.match(r.out, /1 of 3 checks did not pass/);

  kube.accessReviewer = () => true;
  const allowed = await check(['--pre'], kube.url);
  assert.equal(allowed.code, 0, allowed.out);
});

test('a broken cluster: each condition that does not hold fails its line with a hint, exit 1', async () => {
  const kube = await healthyCluster();
  // the control plane: not ready, and its service account may not read the CA's Secret
  kube.put({ ...kube.get('apps/v1', 'Deployment', NS, 'tsmesh-injector')!, status: { replicas: 2, readyReplicas: 0 } });
  kube.accessReviewer = (a, user) => !(user.endsWith(':tsmesh-injector') && a.resource === 'secrets' && a.name === 'tsmesh-ca');
  // the webhook trusts another root
  const webhook = kube.get('admissionregistration.k8s.io/v1', 'MutatingWebhookConfiguration', undefined, 'tsmesh-injector')!;
  (webhook.webhooks as { clientConfig: { caBundle: string } }[])[0]!.clientConfig.caBundle = b64(other.trustAnchors.join(''));
  kube.put(webhook);
  // a meshed namespace without the trust anchor, one with another; a sidecar not ready, one older
  kube.put({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'billing', labels: { 'tsmesh.io/inject': 'enabled' } } });
  kube.put(configMap('shop', other.trustAnchors.join('')));
  kube.put(meshedPod('billing', 'pay-1', { ready: false }));
  kube.put(meshedPod('shop', 'web-2', { image: 'ghcr.io/tsmesh/tsmesh:0.0.9' }));

  const r = await check([], kube.url);
  assert.equal(r.code, 1, r.out);
  const expected: [RegExp, RegExp][] = [
    [/^FAIL {2}the control plane's permissions: tsmesh-system\/tsmesh-injector may not get secrets\/tsmesh-ca in tsmesh-system$/m, /hint: apply deploy\/injector\/rbac\.yaml/],
    [/^FAIL {2}control plane ready: Deployment tsmesh-system\/tsmesh-injector: 0 of 2 replicas ready$/m, /hint: kubectl -n tsmesh-system describe deployment tsmesh-injector/],
    [/^FAIL {2}webhook configuration: the caBundle of webhook namespace\.inject\.tsmesh\.io is not the mesh root/m, /hint: restart the control plane; it sets the caBundle/],
    [/^FAIL {2}trust anchors in meshed namespaces: tsmesh-trust-anchor missing in billing; not the mesh root in shop/m, /hint: the control plane writes it into every meshed namespace/],
    [/^FAIL {2}meshed pods: sidecar not ready in 1 of 3 meshed pods: billing\/pay-1$/m, /hint: kubectl -n NAMESPACE logs POD -c tsmesh-proxy/],
  ];
  for (const [line, hint] of expected) {
    assert.match(r.out, line);
    assert.match(r.out, hint);
  }
  assert.match(r.out, /^ok {4}root certificate: valid until/m);
  assert.match(r.out, /5 of 9 checks did not pass/);

  // once the sidecar is ready, the other version is a warning: it passes, and says to restart
  kube.put(meshedPod('billing', 'pay-1'));
  const pods = await runChecks({ kubeConfig: kube.kubeConfig(), namespace: NS, pre: false });
  const meshed = pods.find((p) => p.name === 'meshed pods')!;
  assert.equal(meshed.outcome, 'warn');
  assert.match(meshed.detail, /1 of 3 meshed pods run another sidecar than .*: shop\/web-2 \(ghcr\.io\/tsmesh\/tsmesh:0\.0\.9\)/);
  assert.match(meshed.hint!, /restart them/);
});

test('without the Gateway API CRDs: mesh routes are unavailable, a warning (the mesh works without them); HTTPRoute v1beta1 alone is served', async () => {
  const kube = await healthyCluster();
  kube.unserve('gateway.networking.k8s.io/v1', 'gateway.networking.k8s.io/v1beta1', 'gateway.networking.k8s.io/v1alpha2');
  const r = await check([], kube.url);
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /^warn {2}mesh routes \(Gateway API\): routes unavailable: the API server does not serve HTTPRoute, GRPCRoute; the mesh works without them$/m);
  assert.match(r.out, /hint: to route with HTTPRoute\/GRPCRoute, install the Gateway API CRDs/);
  assert.match(r.out, /all 9 checks passed \(1 with a warning\)/);
  kube.serve('gateway.networking.k8s.io/v1beta1');
  const older = (await runChecks({ kubeConfig: kube.kubeConfig(), namespace: NS, pre: false })).find((c) => c.name === 'mesh routes (Gateway API)')!;
  assert.equal(older.outcome, 'warn');
  assert.match(older.detail, /does not serve GRPCRoute \(it serves HTTPRoute \(v1beta1\)\)/);
});

test('the root certificate: expired fails, expiring soon warns', async () => {
  const kube = await healthyCluster();
  const validTo = Date.parse(new (await import('node:crypto')).X509Certificate(ANCHORS).validTo);
  const at = async (now: number) => (await runChecks({ kubeConfig: kube.kubeConfig(), namespace: NS, pre: false, now: () => now })).find((c) => c.name === 'root certificate')!;
  const soon = await at(validTo - 10 * 86_400_000);
  assert.equal(soon.outcome, 'warn');
  assert.match(soon.detail, /expires in (9|10) days/);
  const expired = await at(validTo + 1000);
  assert.equal(expired.outcome, 'fail');
  assert.match(expired.detail, /expired on/);
  assert.match(expired.hint!, /rotate the root/);
  // not installed: no trust anchor published
  kube.remove('v1', 'ConfigMap', NS, 'tsmesh-trust-anchor');
  const none = await at(Date.now());
  assert.equal(none.outcome, 'fail');
  assert.match(none.detail, /no trust anchor in ConfigMap tsmesh-system\/tsmesh-trust-anchor/);
});

test('an API server that refuses: named with the error, every other check skipped, exit 1', async () => {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const server = `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
  await new Promise((r) => s.close(r));
  const r = await check([], server);
  assert.equal(r.code, 1, r.out);
  assert.ok(r.out.includes(`FAIL  API server: cannot read the version at ${server}: fetch failed`), r.out);
  assert.match(r.out, /ECONNREFUSED/);
  assert.match(r.out, /hint: check the current context/);
  assert.match(r.out, /^skip {2}webhook configuration: not checked: the API server check failed$/m);
});

test('an API server that refuses the credentials: the 401 and what to do', async () => {
  const kube = await healthyCluster();
  kube.use(() => ({ status: 401, body: kube.status(401, 'Unauthorized', 'Unauthorized') }));
  const r = await check([], kube.url);
  assert.equal(r.code, 1, r.out);
  assert.match(r.out, /FAIL {2}API server: cannot read the version at .*: HTTP 401: Unauthorized/);
  assert.match(r.out, /hint: the API server does not accept the kubeconfig's credentials/);
});

test("the control plane's permissions are deploy/injector/rbac.yaml's, one per verb", async () => {
  const docs = parseAllDocuments(await readFile(join(ROOT, 'deploy', 'injector', 'rbac.yaml'), 'utf8')).map((d) => d.toJS() as { kind: string; rules?: { apiGroups: string[]; resources: string[]; resourceNames?: string[]; verbs: string[] }[] });
  const fromYaml = docs
    .filter((d) => d.kind === 'ClusterRole' || d.kind === 'Role')
    .flatMap((d) =>
      d.rules!.flatMap((r) =>
        r.apiGroups.flatMap((group) => r.resources.flatMap((resource) => (r.resourceNames ?? [undefined]).flatMap((name) => r.verbs.map((verb) => JSON.stringify({ verb, group, resource, name, ns: d.kind === 'Role' }))))),
      ),
    )
    .sort();
  const ours = CONTROL_PLANE_PERMISSIONS.map((p) => JSON.stringify({ verb: p.verb, group: p.group, resource: p.subresource ? `${p.resource}/${p.subresource}` : p.resource, name: p.name, ns: p.inControlPlaneNamespace ?? false })).sort();
  assert.deepEqual(ours, fromYaml);
});
