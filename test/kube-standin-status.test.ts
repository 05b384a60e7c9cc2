// The stand-in API server's status subresource and unserved groups, through
// @kubernetes/client-node as the control plane uses them: what the route status tests rely on.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { CustomObjectsApi } from '@kubernetes/client-node';
import { KubeStandin } from './harness/kube-standin.ts';

let kube: KubeStandin;
let api: CustomObjectsApi;
const ref = { group: 'gateway.networking.k8s.io', version: 'v1', namespace: 'default', plural: 'httproutes', name: 'r' };
type Route = { metadata: { resourceVersion: string; generation: number }; spec: unknown; status?: unknown };

before(async () => {
  kube = await KubeStandin.start();
  api = kube.kubeConfig().makeApiClient(CustomObjectsApi);
});
after(() => kube.close());

test('status subresource: PUT .../status changes only status; PUT on the object keeps status; generation counts spec changes', async () => {
  const created = (await api.createNamespacedCustomObject({ ...ref, body: { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'r' }, spec: { rules: [] }, status: { parents: ['ignored?'] } } })) as Route;
  assert.equal(created.metadata.generation, 1);
  assert.equal(created.status, undefined, 'a create does not set status');
  const s = (await api.replaceNamespacedCustomObjectStatus({ ...ref, body: { metadata: { name: 'r', resourceVersion: created.metadata.resourceVersion }, spec: { rules: ['not taken'] }, status: { parents: [1] } } })) as Route;
  assert.deepEqual(s.status, { parents: [1] });
  assert.deepEqual(s.spec, { rules: [] }, 'a status write does not change the spec');
  assert.equal(s.metadata.generation, 1, 'nor the generation');
  await assert.rejects(api.replaceNamespacedCustomObjectStatus({ ...ref, body: { metadata: { name: 'r', resourceVersion: created.metadata.resourceVersion }, status: {} } }), (e: { code?: number }) => e.code === 409);
  const replaced = (await api.replaceNamespacedCustomObject({ ...ref, body: { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'r' }, spec: { rules: [{}] }, status: { parents: [] } } })) as Route;
  assert.deepEqual(replaced.status, { parents: [1] }, 'a write to the object leaves its status');
  assert.equal(replaced.metadata.generation, 2);
  assert.deepEqual(((await api.getNamespacedCustomObjectStatus(ref)) as Route).status, { parents: [1] });
});

test('an unserved group version answers 404 to lists, gets and watches, as without the CRD', async () => {
  kube.unserve('gateway.networking.k8s.io/v1');
  try {
    await assert.rejects(api.listClusterCustomObject({ group: ref.group, version: 'v1', plural: 'httproutes' }), (e: { code?: number }) => e.code === 404);
    await assert.rejects(api.getNamespacedCustomObject(ref), (e: { code?: number }) => e.code === 404);
    const watch = await fetch(`${kube.url}/apis/gateway.networking.k8s.io/v1/httproutes?watch=true`);
    assert.equal(watch.status, 404);
    assert.equal(((await watch.json()) as { reason: string }).reason, 'NotFound');
  } finally {
    kube.serve('gateway.networking.k8s.io/v1');
  }
  assert.ok(await api.getNamespacedCustomObject(ref));
});
