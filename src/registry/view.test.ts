import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RegistryView } from './view.ts';
import { validateRegistry } from './model.ts';
import { parseRegistryYaml } from './file-source.ts';
import { Registry, type OnDemandSource } from './registry.ts';

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
  assert.deepEqual(parseRegistryYaml('services: []', 'r'), { services: [], pods: [], routes: [] });
});

test('explicit endpoints (EndpointSlice addresses): ready ones only, joined to their pods by IP, the selector unused', () => {
  const v = new RegistryView(
    validateRegistry(
      {
        services: [
          {
            name: 'web',
            namespace: 'shop',
            ports: [{ port: 80, targetPort: 8080 }],
            selector: { app: 'nothing-matches' },
            endpoints: [{ ip: '10.244.0.1', pod: 'web-1' }, { ip: '10.244.0.2', ready: false }, { ip: '10.244.0.3', pod: 'web-3.stateful' }],
          },
        ],
        pods: [{ name: 'web-1', namespace: 'shop', ip: '10.244.0.1', meshed: true, serviceAccount: 'web' }],
      },
      'test',
    ),
    1,
  );
  const eps = v.endpoints(v.byAuthority('web.shop', 'x')!);
  assert.deepEqual(eps.map((e) => [e.key, e.pod.name, e.pod.meshed, e.pod.serviceAccount]), [
    ['10.244.0.1:8080', 'web-1', true, 'web'],
    ['10.244.0.3:8080', 'web-3.stateful', false, 'default'],
  ], 'an address without a pod record is a plain, unmeshed endpoint');
  assert.throws(() => validateRegistry({ services: [{ name: 'a', ports: [{ port: 80 }], endpoints: [{ ip: '10.0.0.1' }, { ip: '10.0.0.1' }] }] }, 'r'), /endpoints\[1\]: duplicate address 10\.0\.0\.1/);
  assert.throws(() => validateRegistry({ services: [{ name: 'a', ports: [{ port: 80 }], endpoints: [{ ip: 'nope' }] }] }, 'r'), /endpoints\[0\]\.ip: must be an IP address/);
});

test('Registry.ensure*: from the view at once without an on-demand source; with one, bounded by the timeout', async () => {
  const registry = new Registry();
  registry.replace(data);
  assert.equal((await registry.ensureAuthority('web.shop', 'x'))?.service.name, 'web');
  assert.equal(await registry.ensureAuthority('nope.shop', 'x'), undefined);
  const found = await registry.ensureAddress('10.96.0.10', 80);
  assert.ok(found && 'target' in found);

  // A source that knows "shop/slow" but never delivers it, and "shop/late" that it delivers.
  const loads: string[][] = [];
  const source: OnDemandSource = {
    servicesAt: (ip) => (ip === '10.96.9.9' ? ['shop/late'] : []),
    has: (ns, name) => ns === 'shop' && (name === 'slow' || name === 'late'),
    load: (keys, timeoutMs) => {
      loads.push([...keys]);
      if (keys.includes('shop/late')) {
        registry.replace({ services: [...data.services, { name: 'late', namespace: 'shop', clusterIP: '10.96.9.9', ports: [{ port: 80 }], selector: {}, annotations: {} }], pods: data.pods });
        return Promise.resolve();
      }
      return new Promise((resolve) => setTimeout(resolve, timeoutMs));
    },
    used: () => undefined,
  };
  registry.setOnDemandSource(source);
  registry.replace(data);
  assert.equal(await registry.ensureAuthority('slow.shop.svc', 'x', 50), undefined, 'never delivered: undefined after the bound');
  assert.deepEqual(loads, [['shop/slow']]);
  const late = await registry.ensureAddress('10.96.9.9', 80);
  assert.ok(late && 'target' in late && late.target.service.name === 'late', 'loaded by its ClusterIP');
  assert.equal((await registry.ensureAuthority('late', 'shop'))?.service.name, 'late');
  assert.equal(await registry.ensureAuthority('other', 'shop'), undefined, 'unknown to the source: no load');
  assert.ok(!loads.some((k) => k.includes('shop/other')));
});

test('lookups remembered per snapshot answer as before, and still tell the source what is used and missed', () => {
  const seen: string[] = [];
  const v = new RegistryView(data, 1, {
    used: (s) => seen.push(`used ${s.name}`),
    missedAuthority: (a, ns) => seen.push(`missed ${a} ${ns}`),
    missedAddress: () => undefined,
  });
  const first = v.byAuthority('web.shop', 'x');
  const again = v.byAuthority('web.shop', 'x');
  assert.equal(again, first, 'the same target');
  assert.equal(v.byAuthority('web', 'x'), undefined, 'a hit for one caller namespace is not one for another');
  assert.equal(v.byAuthority('web', 'x'), undefined);
  assert.equal(v.byAuthority('web', 'shop')?.service.name, 'web');
  assert.equal(v.endpoints(first!), v.endpoints(again!));
  assert.deepEqual(seen, ['used web', 'used web', 'missed web x', 'missed web x', 'used web', 'used web', 'used web']);
});
