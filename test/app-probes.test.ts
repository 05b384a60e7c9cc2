// The app's probes through the admin port: the kubelet cannot speak the mesh's mTLS, so the
// injector moves httpGet probes to /app-health/<container>/<kind> on 15020 and the sidecar
// probes the app itself (TSMESH_APP_PROBES).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer as createHttpsServer } from 'node:https';
import { sidecarPair, eventually } from './harness/mesh.ts';
import { createCA } from './harness/identity.ts';

test('readiness and liveness probes of an app behind a strict mTLS sidecar pass through the admin port', async (t) => {
  let ready = true;
  const probes = {
    '/app-health/web/readiness': { port: 8080, path: '/ready', scheme: 'HTTP', headers: [{ name: 'X-Probe', value: 'kubelet' }] },
    '/app-health/web/liveness': { port: 8443, path: '/live', scheme: 'HTTPS' },
  };
  const seen: Record<string, string | undefined> = {};
  const pair = await sidecarPair(
    (req, res) => {
      seen[req.url!] = req.headers['x-probe'] as string | undefined;
      res.statusCode = req.url === '/ready' && !ready ? 503 : 200;
      res.end(ready ? 'fine' : 'not yet');
    },
    { mtls: true, env: { TSMESH_APP_PROBES: JSON.stringify(probes) } },
  );
  t.after(() => pair.close());
  // an HTTPS app port with a certificate the kubelet (and so the sidecar) does not verify
  const serving = await (await createCA({ trustDomain: 'cluster.local' })).issueServing(['pod-a']);
  const tlsApp = createHttpsServer({ cert: serving.certChain.join(''), key: serving.keyPem }, (_req, res) => res.end('alive'));
  await new Promise<void>((r) => tlsApp.listen(8443, pair.pods.a.ip, r));
  t.after(() => tlsApp.close());

  const kubelet = (path: string) => fetch(`${pair.server.adminURL}${path}`);
  const r1 = await kubelet('/app-health/web/readiness');
  assert.equal(r1.status, 200);
  assert.equal(await r1.text(), 'fine');
  assert.equal(seen['/ready'], 'kubelet', "the probe's headers are sent");
  ready = false;
  assert.equal((await kubelet('/app-health/web/readiness')).status, 503, "the app's failure is the probe's failure");
  const live = await kubelet('/app-health/web/liveness');
  assert.equal(live.status, 200);
  assert.equal(await live.text(), 'alive');
  assert.equal((await kubelet('/app-health/other/readiness')).status, 404, 'a probe nobody recorded');
  await tlsApp.close();
  await new Promise((r) => setTimeout(r, 50));
  const down = await kubelet('/app-health/web/liveness');
  assert.equal(down.status, 503, 'an app not listening fails the probe');
  assert.match(await down.text(), /probe of https:\/\/.*:8443\/live failed/);
});

test('a malformed TSMESH_APP_PROBES is reported and the sidecar runs', async (t) => {
  const pair = await sidecarPair((_req, res) => res.end('ok'), { env: { TSMESH_APP_PROBES: '{"/app-health/web/ready": {"port": "eighty"}}' } });
  t.after(() => pair.close());
  await eventually(() => pair.server.logs.some((l) => l.code === 'TSMESH_CONFIG_INVALID' && /TSMESH_APP_PROBES/.test(String(l.msg))), 3000, 'the error logged');
  const line = pair.server.logs.find((l) => l.code === 'TSMESH_CONFIG_INVALID' && /TSMESH_APP_PROBES/.test(String(l.msg)))!;
  assert.match(JSON.stringify(line.issues), /readiness\|liveness\|startup/);
  assert.equal((await fetch(`${pair.server.adminURL}/livez`)).status, 200);
});
