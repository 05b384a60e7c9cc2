// Issue 14, item 4: the upstream pool per endpoint is capped (TSMESH_MAX_UPSTREAM_CONNECTIONS);
// requests beyond the cap wait for a connection, up to their deadline (504 timeout), instead
// of opening one upstream connection each. Counted at the test upstream: the connections and
// the requests in flight the app sees.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ServerResponse } from 'node:http';
import { sidecarPair, eventually } from './harness/mesh.ts';
import { send } from './harness/client.ts';

test("the inbound's pool to the app holds at TSMESH_MAX_UPSTREAM_CONNECTIONS; the requests beyond wait and are served in turn", async (t) => {
  const held: ServerResponse[] = [];
  let inFlight = 0;
  let most = 0;
  const pair = await sidecarPair((req, res) => {
    held.push(res);
    most = Math.max(most, ++inFlight);
    res.once('finish', () => inFlight--);
    req.resume();
  }, { podEnv: { a: { TSMESH_MAX_UPSTREAM_CONNECTIONS: '2' } } });
  t.after(() => pair.close());
  const replies = Array.from({ length: 6 }, (_, i) => send(pair.proxyURL, { path: `/r${i}` }));
  await eventually(() => held.length === 2, 5000, 'two requests at the app');
  // the others are waiting for a connection in pod-a's sidecar, not at the app
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(pair.app.requests.length, 2, 'no third request reached the app while two hold their connections');
  // answer one at a time: each frees a connection for the next waiting request
  for (let served = 0; served < 6; served++) {
    await eventually(() => held.length > 0, 5000, `request ${served + 1} at the app`);
    held.shift()!.end('ok');
  }
  for (const r of await Promise.all(replies)) assert.equal(r.status, 200);
  assert.equal(most, 2, 'never more than two requests at the app at once');
  assert.equal(pair.app.connections, 2, 'two connections to the app, reused');
});

test('at the cap, a request that waits past its deadline gets 504 timeout; the pool stays at the cap', async (t) => {
  // Two Services select the same pod, so they share its endpoint's pool: the two holders go
  // through hold-service (a long deadline) and fill the pool; the waiters go through
  // pod-service (1s) and must time out waiting, whatever the machine's load (the holders'
  // deadline never passes first and frees the pool).
  const held: ServerResponse[] = [];
  const pair = await sidecarPair(
    (req, res) => {
      held.push(res);
      req.resume();
    },
    {
      podEnv: { b: { TSMESH_MAX_UPSTREAM_CONNECTIONS: '2' } },
      serviceAnnotations: { 'tsmesh.io/timeout': '1s', 'tsmesh.io/retry-attempts': '0' },
      services: [{ name: 'hold-service', ports: [{ port: 80, targetPort: 8080 }], selector: { app: 'web-app' }, annotations: { 'tsmesh.io/timeout': '60s', 'tsmesh.io/retry-attempts': '0' } }],
    },
  );
  t.after(async () => {
    for (const res of held) res.destroy();
    await pair.close();
  });
  const holders = Array.from({ length: 2 }, (_, i) => send(pair.proxyURL, { path: `/hold${i}`, headers: { host: 'hold-service' } }).catch(() => undefined));
  await eventually(() => held.length === 2, 10_000, 'the two holders at the app');
  const replies = await Promise.all(Array.from({ length: 2 }, (_, i) => send(pair.proxyURL, { path: `/w${i}` })));
  for (const r of replies) {
    assert.equal(r.status, 504);
    assert.equal(r.headers['x-tsmesh-error'], 'timeout');
  }
  assert.equal(pair.app.requests.length, 2, 'only the two holders got a connection through pod-b (cap 2); the waiters timed out waiting');
  for (const res of held) res.end('ok');
  await Promise.all(holders);
});

test('TSMESH_MAX_UPSTREAM_CONNECTIONS is validated like every setting; default 1024', async () => {
  const { settingsFromEnv } = await import('../src/config/settings.ts');
  assert.equal(settingsFromEnv({}).limits.maxUpstreamConnections, 1024);
  assert.equal(settingsFromEnv({ TSMESH_MAX_UPSTREAM_CONNECTIONS: '8' }).limits.maxUpstreamConnections, 8);
  assert.throws(() => settingsFromEnv({ TSMESH_MAX_UPSTREAM_CONNECTIONS: '0' }), /TSMESH_MAX_UPSTREAM_CONNECTIONS/);
});
