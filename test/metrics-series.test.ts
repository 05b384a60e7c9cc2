// The request series are resolved once per endpoint (outbound) and per caller connection
// (inbound) and then reused: they must still follow the registry. Two sidecars, one keep-alive
// connection all along (app -> pod-b's sidecar -> pod-a's sidecar), and the pods' workload
// labels changed in the registry between requests: the requests after the change are counted
// under the new workload names on both sides.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { Agent } from 'node:http';
import { sidecarPair, eventually, writeRegistry, type Pair } from './harness/mesh.ts';
import { send } from './harness/client.ts';
import { parseExposition, sampleValue } from '../src/metrics/exposition.ts';

let pair: Pair;
before(async () => {
  pair = await sidecarPair((_req, res) => res.end('ok'));
});
after(() => pair?.close());

async function count(adminURL: string, labels: Record<string, string>): Promise<number> {
  const f = parseExposition(await (await fetch(`${adminURL}/metrics`)).text());
  return f.get('tsmesh_requests_total')!.samples.some((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v)) ? sampleValue(f, 'tsmesh_requests_total', labels) : 0;
}

test('a series reused across requests follows the registry: new workload names after a change, on the same connections', async () => {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  after(() => agent.destroy());
  const call = async () => assert.equal((await send(pair.proxyURL, { path: '/x', agent })).status, 200);
  for (let i = 0; i < 3; i++) await call();
  const outBefore = { direction: 'outbound', destination_workload: 'web-app', response_code: '200' };
  const inBefore = { direction: 'inbound', source_workload: 'client', response_code: '200' };
  await eventually(async () => (await count(pair.client.adminURL, outBefore)) === 3 && (await count(pair.server.adminURL, inBefore)) === 3, 5000, 'the first three requests counted');

  const { a, b } = pair.pods;
  await writeRegistry(pair.registryFile, {
    services: [{ name: 'pod-service', ports: [{ port: 80, targetPort: 8080 }], selector: { app: 'web-app' } }],
    pods: [
      { ...a, labels: { ...a.labels, 'app.kubernetes.io/name': 'web-v2' } },
      { ...b, labels: { ...b.labels, 'app.kubernetes.io/name': 'client-v2' } },
    ],
  });
  const views = () => [pair.client, pair.server].map((s) => s.sidecar.registry.view.pods.some((p) => p.labels['app.kubernetes.io/name'] !== undefined));
  await eventually(() => views().every(Boolean), 5000, 'both sidecars to load the new registry');
  for (let i = 0; i < 2; i++) await call();
  await eventually(
    async () =>
      (await count(pair.client.adminURL, { ...outBefore, destination_workload: 'web-v2' })) === 2 && (await count(pair.server.adminURL, { ...inBefore, source_workload: 'client-v2' })) === 2,
    5000,
    'the next two requests counted under the new names',
  );
  assert.equal(await count(pair.client.adminURL, outBefore), 3, 'the old series keeps its count');
  assert.equal(await count(pair.server.adminURL, inBefore), 3);
});
