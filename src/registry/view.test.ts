import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RegistryView } from './view.ts';
import { validateRegistry } from './model.ts';
import { parseRegistryYaml } from './file-source.ts';

const data = validateRegistry(
  {
    services: [
      { name: 'web', namespace: 'shop', clusterIP: '10.96.0.10', ports: [{ port: 80, targetPort: 8080 }, { port: 9090 }], selector: { app: 'web' } },
      { name: 'db', namespace: 'shop', ports: [{ port: 5432 }], selector: { app: 'db' } },
      { name: 'headless', ports: [{ port: 80 }] },
    ],
    pods: [
      { name: 'web-1', namespace: 'shop', ip: '10.244.0.1', labels: { app: 'web', v: '1' }, meshed: true },
      { name: 'web-2', namespace: 'shop', ip: '10.244.0.2', labels: { app: 'web' }, ready: false },
      { name: 'web-3', namespace: 'other', ip: '10.244.0.3', labels: { app: 'web' } },
      { name: 'web-4', namespace: 'shop', ip: 'fd00::4', labels: { app: 'web' } },
    ],
  },
  'test',
);
const view = new RegistryView(data, 1);

test('authority forms resolve like Kubernetes DNS from the caller namespace', () => {
  assert.equal(view.byAuthority('web', 'shop')?.service.name, 'web');
  assert.equal(view.byAuthority('web', 'default'), undefined, 'short name is namespace-relative');
  assert.equal(view.byAuthority('web.shop', 'default')?.port.targetPort, 8080);
  assert.equal(view.byAuthority('web.shop.svc:9090', 'default')?.port.targetPort, 9090, 'targetPort defaults to port');
  assert.equal(view.byAuthority('WEB.shop.svc.cluster.local.', 'x')?.service.name, 'web');
  assert.equal(view.byAuthority('10.96.0.10', 'x')?.service.name, 'web');
  assert.equal(view.byAuthority('10.96.0.10:81', 'x'), undefined);
  assert.equal(view.byAuthority('web.shop.example.com', 'x'), undefined);
});

test("endpoints are the namespace's ready pods matching the selector; no selector, no endpoints", () => {
  const eps = view.endpoints(view.byAuthority('web.shop', 'x')!);
  assert.deepEqual(eps.map((e) => e.key), ['10.244.0.1:8080', 'fd00::4:8080']);
  assert.equal(eps[0]!.pod.meshed, true);
  assert.deepEqual(view.endpoints(view.byAuthority('headless.default', 'x')!), []);
});

test('original destinations: ClusterIP:port is a service, a pod IP is a pod', () => {
  const svc = view.byAddress('10.96.0.10', 9090);
  assert.ok(svc && 'target' in svc && svc.target.port.port === 9090);
  const pod = view.byAddress('10.244.0.3', 1234);
  assert.ok(pod && 'pod' in pod && pod.pod.name === 'web-3');
  assert.equal(view.byAddress('10.1.1.1', 80), undefined);
});

test('invalid registry files name every bad field', () => {
  assert.throws(
    () => parseRegistryYaml('services:\n  - name: Web\n    ports: []\npods:\n  - name: p\n    ip: 300.1.1.1\n    extra: 1\n', 'reg.yaml'),
    (err: Error & { issues: string[] }) => {
      const all = err.issues.join('\n');
      assert.match(all, /services\[0\] \(Web\)\.name: must be a DNS label/);
      assert.match(all, /services\[0\] \(Web\)\.ports: a service needs at least one port/);
      assert.match(all, /pods\[0\] \(p\)\.ip: must be an IP address/);
      assert.match(all, /pods\[0\] \(p\).*extra/);
      return true;
    },
  );
  assert.throws(() => parseRegistryYaml('services:\n  - {name: a, ports: [{port: 80}]}\n  - {name: a, ports: [{port: 80}]}\n', 'r'), /duplicate service/);
  assert.throws(() => parseRegistryYaml(':\n  - [', 'r'), /not valid YAML/);
  assert.throws(() => parseRegistryYaml('  \n', 'r'), /the file is empty/, 'a file caught mid-write does not empty the mesh');
  assert.deepEqual(parseRegistryYaml('services: []', 'r'), { services: [], pods: [] });
});
