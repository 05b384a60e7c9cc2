// The webhook over real HTTPS: AdmissionReview in and out, the decisions that need the
// namespace, bad bodies (400, and the server keeps serving), a 100 MB body refused without
// being held in memory, metrics, logs and certificate hot reload.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request as httpsRequest } from 'node:https';
import { Agent, request } from 'undici';
import { startTestWebhook, podCreateReview, testServingMaterial, type TestWebhook } from '../testing/webhook.ts';
import { staticNamespaceLookup } from './namespaces.ts';
import { defaultInjectorSettings } from '../inject/settings.ts';

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const settings = defaultInjectorSettings();
const pod = (annotations: Record<string, string> = {}, extra: Obj = {}): Obj => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { generateName: 'web-', labels: { app: 'web' }, annotations },
  spec: { containers: [{ name: 'web', image: 'nginx', ports: [{ containerPort: 8080 }] }], ...extra },
});
const LIMIT = 1024 * 1024;

describe('webhook over HTTPS', () => {
  let wh: TestWebhook;
  let failLookups = false;
  before(async () => {
    const table = staticNamespaceLookup({ meshed: { 'tsmesh.io/inject': 'enabled' }, plain: {} });
    wh = await startTestWebhook({
      settings,
      bodyLimit: LIMIT,
      namespaces: async (name) => {
        if (failLookups) throw new Error('API server unreachable');
        return table(name);
      },
    });
  });
  after(() => wh.close());

  const response = (r: { json: unknown }): Obj => (r.json as Obj).response;

  test('injects into a pod of a labelled namespace: JSONPatch, uid echoed', async () => {
    const review = podCreateReview(pod(), 'meshed') as Obj;
    const r = await wh.post(review);
    assert.equal(r.status, 200);
    assert.equal((r.json as Obj).apiVersion, 'admission.k8s.io/v1');
    assert.equal((r.json as Obj).kind, 'AdmissionReview');
    assert.equal(response(r).uid, review.request.uid);
    assert.equal(response(r).allowed, true);
    assert.equal(response(r).patchType, 'JSONPatch');
    const ops = JSON.parse(Buffer.from(response(r).patch, 'base64').toString()) as Obj[];
    assert.ok(ops.some((o) => o.path === '/spec/initContainers'), 'adds the init containers');
    assert.ok(ops.some((o) => o.path === '/metadata/annotations/tsmesh.io~1status'), 'adds the status annotation (escaped key)');
  });

  test('namespace not labelled: allowed unchanged; the pod annotation overrides either way', async () => {
    const plain = response(await wh.post(podCreateReview(pod(), 'plain')));
    assert.equal(plain.patch, undefined);
    const optIn = response(await wh.post(podCreateReview(pod({ 'tsmesh.io/inject': 'enabled' }), 'plain')));
    assert.equal(optIn.patchType, 'JSONPatch');
    const optOut = response(await wh.post(podCreateReview(pod({ 'tsmesh.io/inject': 'disabled' }), 'meshed')));
    assert.equal(optOut.patch, undefined);
  });

  test('never in kube-system, kube-public or the control plane namespace, nor hostNetwork pods', async () => {
    for (const ns of ['kube-system', 'kube-public', settings.controlPlaneNamespace]) {
      const r = response(await wh.post(podCreateReview(pod({ 'tsmesh.io/inject': 'enabled' }), ns)));
      assert.equal(r.patch, undefined, ns);
    }
    const host = response(await wh.post(podCreateReview(pod({}, { hostNetwork: true }), 'meshed')));
    assert.equal(host.patch, undefined);
  });

  test('anything but a Pod CREATE is allowed unchanged', async () => {
    const update = podCreateReview(pod(), 'meshed', { operation: 'UPDATE' }) as Obj;
    const r1 = response(await wh.post(update));
    assert.deepEqual(r1, { uid: update.request.uid, allowed: true });
    const svc = podCreateReview({ kind: 'Service' }, 'meshed', { kind: { group: '', version: 'v1', kind: 'Service' } });
    assert.equal(response(await wh.post(svc)).patch, undefined);
    const eph = podCreateReview(pod(), 'meshed', { subResource: 'ephemeralcontainers' });
    assert.equal(response(await wh.post(eph)).patch, undefined);
  });

  test('bad annotation values come back as AdmissionResponse warnings naming the key', async () => {
    const r = response(await wh.post(podCreateReview(pod({ 'tsmesh.io/timeout': 'soon', 'tsmesh.io/proxy-cpu': 'lots' }), 'meshed')));
    assert.equal(r.patchType, 'JSONPatch', 'still injected, with the defaults');
    assert.equal(r.warnings.length, 2);
    assert.match(r.warnings[0], /^annotation tsmesh\.io\/proxy-cpu="lots" ignored: .*quantity/);
    assert.match(r.warnings[1], /^annotation tsmesh\.io\/timeout="soon" ignored: .*duration/);
  });

  test('malformed bodies get 400 with a message, and the server keeps serving', async () => {
    const cases: [string, RegExp][] = [
      ['{not json', /not JSON/],
      ['', /empty/],
      ['[]', /not an AdmissionReview/],
      [JSON.stringify({ apiVersion: 'admission.k8s.io/v1beta1', kind: 'AdmissionReview', request: {} }), /apiVersion must be "admission\.k8s\.io\/v1"/],
      [JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' }), /request/],
      [JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { uid: '', kind: { group: '', version: 'v1', kind: 'Pod' }, operation: 'CREATE' } }), /request\.uid/],
      [JSON.stringify(podCreateReview('a string', 'meshed')), /request\.object must be the Pod/],
    ];
    for (const [body, message] of cases) {
      const r = await wh.post(body);
      assert.equal(r.status, 400, `${body.slice(0, 40)} -> ${r.status} ${r.text}`);
      assert.match((r.json as Obj).error.message, message);
      assert.ok((r.json as Obj).error.code);
    }
    const get = await request(`${wh.url}/inject`, { dispatcher: wh.agent });
    assert.equal(get.statusCode, 405);
    await get.body.dump();
    const missing = await wh.post('{}', '/nope');
    assert.equal(missing.status, 404);
    const ok = await wh.post(podCreateReview(pod(), 'meshed'));
    assert.equal(ok.status, 200, 'still serving after bad requests');
  });

  test('the namespace cannot be read: HTTP 500, so the API server applies the failurePolicy', async () => {
    failLookups = true;
    try {
      const r = await wh.post(podCreateReview(pod(), 'meshed'));
      assert.equal(r.status, 500);
      assert.match((r.json as Obj).error.message, /API server unreachable/);
      // The pod's own annotation needs no lookup.
      const own = await wh.post(podCreateReview(pod({ 'tsmesh.io/inject': 'enabled' }), 'meshed'));
      assert.equal(own.status, 200);
    } finally {
      failLookups = false;
    }
  });

  /** Sends `total` bytes (chunked unless `declare`) and returns the status the server answered. */
  function sendHuge(total: number, declare: boolean): Promise<number> {
    return new Promise((resolve, reject) => {
      const chunk = Buffer.alloc(64 * 1024, 0x20);
      const req = httpsRequest(`${wh.url}/inject`, {
        method: 'POST',
        ca: wh.caCert,
        servername: 'localhost',
        agent: false,
        headers: { 'content-type': 'application/json', ...(declare ? { 'content-length': String(total) } : {}) },
      });
      let sent = 0;
      let done = false;
      req.on('response', (res) => {
        done = true;
        res.resume();
        resolve(res.statusCode ?? 0);
        req.destroy();
      });
      req.on('error', (err) => {
        if (!done) reject(err);
      });
      const pump = (): void => {
        while (!done && sent < total) {
          sent += chunk.length;
          if (!req.write(chunk)) {
            req.once('drain', pump);
            return;
          }
        }
        if (!done) req.end();
      };
      pump();
    });
  }

  test('a 100 MB body is refused (413) without being held in memory, and the server keeps serving', async (t) => {
    const total = 100 * 1024 * 1024;
    global.gc?.();
    const before = process.memoryUsage();
    assert.equal(await sendHuge(total, true), 413, 'declared Content-Length over the limit');
    assert.equal(await sendHuge(total, false), 413, 'chunked body over the limit');
    const afterUse = process.memoryUsage();
    const grownMb = (afterUse.rss - before.rss) / 1024 / 1024;
    const bufMb = (afterUse.arrayBuffers - before.arrayBuffers) / 1024 / 1024;
    t.diagnostic(`100 MB bodies: rss +${grownMb.toFixed(1)} MB, buffers +${bufMb.toFixed(1)} MB`);
    assert.ok(bufMb < 50, `buffers grew by ${bufMb.toFixed(1)} MB`);
    assert.ok(grownMb < 80, `resident memory grew by ${grownMb.toFixed(1)} MB`);
    const ok = await wh.post(podCreateReview(pod(), 'meshed'));
    assert.equal(ok.status, 200);
    const tooLarge = wh.logs.filter((l) => l.code === 'BODY_TOO_LARGE');
    assert.equal(tooLarge.length, 2);
  });

  test('metrics count injections and skips by reason; logs carry the skip code', async () => {
    const res = await request(`${wh.url}/metrics`, { dispatcher: wh.agent });
    const text = await res.body.text();
    assert.equal(res.statusCode, 200);
    const value = (name: string): number => Number(new RegExp(`^${name.replace(/[{}"]/g, '\\$&')} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
    assert.ok(value('tsmesh_injector_injections_total') >= 4);
    assert.ok(value('tsmesh_injector_skips_total{reason="namespace-not-enabled"}') >= 1);
    assert.ok(value('tsmesh_injector_skips_total{reason="system-namespace"}') >= 2);
    assert.ok(value('tsmesh_injector_skips_total{reason="control-plane-namespace"}') >= 1);
    assert.ok(value('tsmesh_injector_skips_total{reason="host-network"}') >= 1);
    assert.ok(value('tsmesh_injector_skips_total{reason="pod-disabled"}') >= 1);
    assert.ok(value('tsmesh_injector_skips_total{reason="not-pod-create"}') >= 3);
    assert.ok(value('tsmesh_injector_errors_total{code="BODY_TOO_LARGE"}') >= 2);
    const skipLine = wh.logs.find((l) => l.skip === 'host-network');
    assert.ok(skipLine, 'a log line with skip=host-network');
    assert.match(String(skipLine.msg), /hostNetwork/);
  });

  test('GET /healthz', async () => {
    const res = await request(`${wh.url}/healthz`, { dispatcher: wh.agent });
    assert.equal(res.statusCode, 200);
    assert.deepEqual(await res.body.json(), { status: 'ok' });
  });

  test('the serving certificate is reloaded without a restart', async () => {
    const next = await testServingMaterial(['localhost']);
    wh.controlPlane.setCertificate({ cert: next.cert, key: next.key });
    const fresh = new Agent({ connect: { ca: next.caCert, servername: 'localhost' } });
    const stale = new Agent({ connect: { ca: wh.caCert, servername: 'localhost' } });
    try {
      const ok = await request(`${wh.url}/healthz`, { dispatcher: fresh });
      assert.equal(ok.statusCode, 200);
      await ok.body.dump();
      await assert.rejects(request(`${wh.url}/healthz`, { dispatcher: stale }), /certificate/i, 'the old CA no longer verifies');
      assert.throws(() => wh.controlPlane.setCertificate({ cert: next.cert, key: 'not a key' }));
      const still = await request(`${wh.url}/healthz`, { dispatcher: fresh });
      assert.equal(still.statusCode, 200, 'a bad pair keeps the current certificate');
      await still.body.dump();
    } finally {
      await fresh.close();
      await stale.close();
    }
  });
});
