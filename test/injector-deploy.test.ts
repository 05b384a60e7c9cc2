// deploy/: every manifest that `kubectl apply -k deploy/` (and deploy/examples/) would apply
// validates against the Kubernetes OpenAPI schema, and the pieces agree with each other and
// with the code (ports, paths, names, selectors, the webhook's safety settings).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync, statSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { validateObject } from '../injector/testing/schema.ts';
import { INJECT_PATH } from '../injector/webhook/route.ts';
import { CONTROL_PLANE_PORT } from '../injector/server/server.ts';
import { TRUST_ANCHOR_CONFIGMAP, injectPod } from '../injector/inject/inject.ts';
import { ROOT_SECRET, TRUST_ANCHOR_CONFIGMAP as CA_TRUST_ANCHOR_CONFIGMAP, INJECT_LABEL_SELECTOR } from '../injector/ca/index.ts';
import { injectorServerSettingsFromEnv } from '../injector/main.ts';
import { defaultInjectorSettings } from '../injector/inject/settings.ts';
import pkg from '../package.json' with { type: 'json' };

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const DEPLOY = join(import.meta.dirname, '..', 'deploy');

/** The objects a kustomization lists, following directories with their own kustomization. */
function kustomize(dir: string): Obj[] {
  const k = parseAllDocuments(readFileSync(join(dir, 'kustomization.yaml'), 'utf8'))[0]!.toJS() as Obj;
  assert.equal(k.kind, 'Kustomization', `${dir}/kustomization.yaml`);
  return (k.resources as string[]).flatMap((r) => {
    const p = join(dir, r);
    assert.ok(existsSync(p), `${dir}/kustomization.yaml lists ${r}, which does not exist`);
    if (statSync(p).isDirectory()) return kustomize(p);
    return parseAllDocuments(readFileSync(p, 'utf8')).map((d) => {
      assert.equal(d.errors.length, 0, `${p}: ${d.errors.map((e) => e.message).join('; ')}`);
      return d.toJS() as Obj;
    });
  });
}

const find = (objs: Obj[], kind: string, name: string): Obj => {
  const o = objs.find((x) => x.kind === kind && x.metadata?.name === name);
  assert.ok(o, `no ${kind} ${name}`);
  return o;
};

const matches = (selector: Obj, labels: Obj): boolean => Object.entries(selector).every(([k, v]) => labels?.[k] === v);

describe('deploy/', () => {
  const control = kustomize(DEPLOY);
  const examples = kustomize(join(DEPLOY, 'examples'));

  test('every manifest validates against the Kubernetes OpenAPI schema', async () => {
    for (const obj of [...control, ...examples]) await validateObject(obj);
  });

  test('kubectl kustomize renders the same objects (when kubectl is installed)', (t) => {
    const k = spawnSync('kubectl', ['kustomize', DEPLOY], { encoding: 'utf8' });
    if (k.error) {
      t.skip('kubectl is not installed');
      return;
    }
    assert.equal(k.status, 0, k.stderr);
    const rendered = parseAllDocuments(k.stdout).map((d) => d.toJS() as Obj);
    const key = (o: Obj) => `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`;
    assert.deepEqual(rendered.map(key).sort(), control.map(key).sort());
  });

  test('everything of the control plane lives in tsmesh-system', () => {
    find(control, 'Namespace', 'tsmesh-system');
    const clusterScoped = ['Namespace', 'ClusterRole', 'ClusterRoleBinding', 'MutatingWebhookConfiguration'];
    for (const o of control) if (!clusterScoped.includes(o.kind)) assert.equal(o.metadata.namespace, 'tsmesh-system', `${o.kind} ${o.metadata.name}`);
  });

  test('the injector Deployment: 2 replicas, PDB, probes, resources, non-root, read-only root', () => {
    const d = find(control, 'Deployment', 'tsmesh-injector');
    assert.equal(d.spec.replicas, 2);
    const pod = d.spec.template.spec;
    const c = pod.containers[0];
    assert.deepEqual(c.args, ['injector']);
    assert.equal(c.image, `ghcr.io/tsmesh/tsmesh-control-plane:${pkg.version}`); // Dockerfile target control-plane
    assert.equal(c.env.find((e: Obj) => e.name === 'TSMESH_PROXY_IMAGE').value, `ghcr.io/tsmesh/tsmesh:${pkg.version}`);
    assert.equal(c.ports[0].containerPort, CONTROL_PLANE_PORT);
    for (const probe of [c.readinessProbe, c.livenessProbe]) {
      assert.equal(probe.httpGet.path, '/healthz');
      assert.equal(probe.httpGet.scheme, 'HTTPS');
    }
    assert.ok(c.resources.requests.cpu && c.resources.requests.memory && c.resources.limits.memory);
    assert.equal(pod.securityContext.runAsNonRoot, true);
    assert.equal(c.securityContext.readOnlyRootFilesystem, true);
    assert.equal(c.securityContext.allowPrivilegeEscalation, false);
    assert.deepEqual(c.securityContext.capabilities.drop, ['ALL']);
    assert.equal(pod.serviceAccountName, 'tsmesh-injector');
    const pdb = find(control, 'PodDisruptionBudget', 'tsmesh-injector');
    assert.ok(matches(pdb.spec.selector.matchLabels, d.spec.template.metadata.labels));
    assert.equal(pdb.spec.minAvailable, 1);
    const svc = find(control, 'Service', 'tsmesh-injector');
    assert.ok(matches(svc.spec.selector, d.spec.template.metadata.labels), 'the Service selects the injector pods');
    assert.equal(svc.spec.ports[0].port, CONTROL_PLANE_PORT);
    assert.equal(svc.spec.ports[0].targetPort, c.ports[0].name);
  });

  test('the webhooks: sideEffects NoneOnDryRun, timeout, IfNeeded, explicit failurePolicy, system namespaces excluded', () => {
    const mwc = find(control, 'MutatingWebhookConfiguration', 'tsmesh-injector');
    const svc = find(control, 'Service', 'tsmesh-injector');
    assert.equal(mwc.webhooks.length, 2);
    for (const w of mwc.webhooks) {
      assert.equal(w.sideEffects, 'NoneOnDryRun', 'injection publishes the trust anchor, except on dry runs');
      assert.ok(w.timeoutSeconds >= 1 && w.timeoutSeconds <= 10);
      assert.equal(w.reinvocationPolicy, 'IfNeeded');
      assert.ok(['Fail', 'Ignore'].includes(w.failurePolicy));
      assert.deepEqual(w.admissionReviewVersions, ['v1']);
      assert.equal(w.clientConfig.caBundle, undefined, 'the injector sets the caBundle; applying again must not erase it');
      assert.deepEqual(w.clientConfig.service, { name: svc.metadata.name, namespace: 'tsmesh-system', path: INJECT_PATH, port: svc.spec.ports[0].port });
      assert.deepEqual(w.rules, [{ operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods'], scope: 'Namespaced' }]);
      const byName = w.namespaceSelector.matchExpressions.find((e: Obj) => e.key === 'kubernetes.io/metadata.name');
      assert.equal(byName.operator, 'NotIn');
      for (const ns of ['kube-system', 'kube-public', 'tsmesh-system']) assert.ok(byName.values.includes(ns), `${w.name} excludes ${ns}`);
    }
    const [enabled, others] = mwc.webhooks;
    assert.deepEqual(enabled.namespaceSelector.matchExpressions[0], { key: 'tsmesh.io/inject', operator: 'In', values: ['enabled'] });
    assert.equal(enabled.failurePolicy, 'Fail');
    assert.deepEqual(others.namespaceSelector.matchExpressions[0], { key: 'tsmesh.io/inject', operator: 'NotIn', values: ['enabled'] });
    assert.equal(others.failurePolicy, 'Ignore');
  });

  test('RBAC: what the injector uses, names pinned where RBAC allows', () => {
    const cr = find(control, 'ClusterRole', 'tsmesh-injector');
    const rule = (resource: string, pred: (r: Obj) => boolean = () => true): Obj[] => cr.rules.filter((r: Obj) => r.resources.includes(resource) && pred(r));
    const [mwcRule] = rule('mutatingwebhookconfigurations');
    assert.deepEqual(mwcRule.resourceNames, ['tsmesh-injector']);
    assert.deepEqual(mwcRule.verbs, ['get', 'patch']);
    assert.deepEqual(rule('namespaces')[0].verbs, ['get', 'list', 'watch'], 'labels for the webhook, a watch for the trust anchor');
    assert.equal(INJECT_LABEL_SELECTOR, 'tsmesh.io/inject=enabled');
    // ConfigMaps: by name for everything RBAC can pin; create alone without a name (it cannot be pinned).
    assert.equal(CA_TRUST_ANCHOR_CONFIGMAP, TRUST_ANCHOR_CONFIGMAP, 'the CA publishes what injected pods mount');
    const cms = rule('configmaps');
    assert.equal(cms.length, 2);
    const named = cms.find((r) => r.resourceNames)!;
    assert.deepEqual(named.resourceNames, [TRUST_ANCHOR_CONFIGMAP]);
    assert.deepEqual(named.verbs.sort(), ['get', 'list', 'update', 'watch']);
    assert.deepEqual(cms.find((r) => !r.resourceNames)!.verbs, ['create']);
    assert.deepEqual(rule('tokenreviews')[0].verbs, ['create']);
    for (const r of cr.rules) assert.ok(!r.verbs.includes('*') && !r.resources.includes('*') && !r.resources.includes('secrets') && !r.verbs.includes('delete'), JSON.stringify(r));

    // Secrets: in tsmesh-system only; the root read-only, the serving certificate read and renewed.
    const role = find(control, 'Role', 'tsmesh-injector');
    const secretRules = role.rules.filter((r: Obj) => r.resources.includes('secrets'));
    const server = injectorServerSettingsFromEnv({});
    assert.deepEqual(
      secretRules.map((r: Obj) => `${(r.resourceNames ?? ['*any*']).join('+')}: ${r.verbs.join(',')}`).sort(),
      [`*any*: create`, `${ROOT_SECRET}: get`, `${server.secretName}: get,update`].sort(),
    );
    assert.equal(role.rules.length, secretRules.length, 'nothing but Secrets in the namespaced Role');
    for (const b of [find(control, 'ClusterRoleBinding', 'tsmesh-injector'), find(control, 'RoleBinding', 'tsmesh-injector')]) {
      assert.deepEqual(b.subjects, [{ kind: 'ServiceAccount', name: 'tsmesh-injector', namespace: 'tsmesh-system' }]);
    }
    // Every rule says why it is there.
    const text = readFileSync(join(DEPLOY, 'injector/rbac.yaml'), 'utf8');
    const lines = text.split('\n');
    lines.forEach((l, i) => {
      if (/^\s+- apiGroups:/.test(l)) assert.match(lines[i - 1]!, /^\s+#/, `rbac.yaml line ${i + 1} has a comment above it`);
    });
  });

  test('the trust anchor ConfigMap is not shipped (the injector writes it everywhere); Jaeger takes OTLP on 4317/4318, UI on 16686', () => {
    assert.equal(control.find((o) => o.kind === 'ConfigMap' && o.metadata.name === TRUST_ANCHOR_CONFIGMAP), undefined);
    const svc = find(control, 'Service', 'jaeger');
    assert.deepEqual(svc.spec.ports.map((p: Obj) => p.port).sort((a: number, b: number) => a - b), [4317, 4318, 16686]);
    const d = find(control, 'Deployment', 'jaeger');
    assert.ok(matches(svc.spec.selector, d.spec.template.metadata.labels));
    assert.equal(defaultInjectorSettings().otlpEndpoint, 'http://jaeger.tsmesh-system.svc:4318', 'the sidecars export where Jaeger listens');
  });

  test("examples: the article's pod-a, pod-b and pod-service in a namespace labelled for injection", async () => {
    const ns = examples.find((o) => o.kind === 'Namespace')!;
    assert.equal(ns.metadata.labels['tsmesh.io/inject'], 'enabled');
    const a = find(examples, 'Pod', 'pod-a');
    const b = find(examples, 'Pod', 'pod-b');
    const svc = find(examples, 'Service', 'pod-service');
    assert.deepEqual(a.metadata.labels, { app: 'web-app' });
    assert.equal(a.spec.containers[0].ports[0].containerPort, 8080);
    assert.deepEqual(svc.spec.selector, { app: 'web-app' });
    assert.deepEqual([svc.spec.ports[0].port, svc.spec.ports[0].targetPort], [80, 8080]);
    for (const o of [a, b, svc]) assert.equal(o.metadata.namespace, ns.metadata.name);
    for (const p of [a, b]) {
      const r = injectPod(p, { name: ns.metadata.name, labels: ns.metadata.labels }, defaultInjectorSettings());
      assert.ok(r.injected, `${p.metadata.name} is injected`);
      assert.deepEqual(r.warnings, []);
      await validateObject(r.pod);
    }
  });
});
