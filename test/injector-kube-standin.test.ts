// The stand-in API server's watch (test/harness/kube-standin.ts), which the injector's
// namespace and ConfigMap informers use and discovery will (EndpointSlices, Services, Pods):
// the wire format read raw, then @kubernetes/client-node's informer against it, reconnecting
// from its resourceVersion and listing again after 410 Expired.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { get, type IncomingMessage } from 'node:http';
import { createInterface } from 'node:readline';
import { CoreV1Api, ListWatch, Watch, type V1ConfigMap, type V1Namespace } from '@kubernetes/client-node';
import { KubeStandin, type KubeObject } from './harness/kube-standin.ts';

interface Event {
  type: string;
  object: KubeObject & { code?: number; reason?: string };
}

/** A raw watch: the response, and its events as they arrive. */
async function rawWatch(kube: KubeStandin, path: string): Promise<{ res: IncomingMessage; next(): Promise<Event>; ended: Promise<void> }> {
  const res = await new Promise<IncomingMessage>((resolve, reject) => get(`${kube.url}${path}`, resolve).on('error', reject));
  const queue: Event[] = [];
  const waiters: ((e: Event) => void)[] = [];
  createInterface(res).on('line', (line) => {
    const e = JSON.parse(line) as Event;
    const w = waiters.shift();
    if (w) w(e);
    else queue.push(e);
  });
  const ended = new Promise<void>((resolve) => res.once('end', resolve));
  return {
    res,
    ended,
    next: () => {
      const e = queue.shift();
      if (e) return Promise.resolve(e);
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('no event within 5 s')), 5000);
        waiters.push((ev) => {
          clearTimeout(t);
          resolve(ev);
        });
      });
    },
  };
}

const ns = (name: string, labels: Record<string, string> = {}): KubeObject => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } });
const cm = (namespace: string, name: string, data: Record<string, string>): KubeObject => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace }, data });

describe('stand-in watch: the wire format', () => {
  let kube: KubeStandin;
  before(async () => {
    kube = await KubeStandin.start();
  });
  after(() => kube.close());

  test('200, chunked JSON lines; without a resourceVersion the current objects come first as ADDED, then live changes', async () => {
    kube.put(ns('a'));
    kube.put(ns('b'));
    const w = await rawWatch(kube, '/api/v1/namespaces?watch=true');
    assert.equal(w.res.statusCode, 200);
    assert.equal(w.res.headers['transfer-encoding'], 'chunked');
    assert.equal(w.res.headers['content-type'], 'application/json');
    const [e1, e2] = [await w.next(), await w.next()];
    assert.deepEqual([e1.type, e1.object.metadata.name, e2.type, e2.object.metadata.name], ['ADDED', 'a', 'ADDED', 'b']);
    kube.put(ns('a', { x: 'y' }));
    const mod = await w.next();
    assert.equal(mod.type, 'MODIFIED');
    assert.deepEqual(mod.object.metadata.labels, { x: 'y' });
    assert.equal(mod.object.metadata.resourceVersion, kube.resourceVersion);
    const before = Number(kube.resourceVersion);
    const del = await fetch(`${kube.url}/api/v1/namespaces/b`, { method: 'DELETE' });
    assert.equal(del.status, 200);
    const gone = await w.next();
    assert.equal(gone.type, 'DELETED');
    assert.equal(gone.object.metadata.name, 'b');
    assert.equal(Number(gone.object.metadata.resourceVersion), before + 1, 'a deletion has its own resourceVersion');
    w.res.destroy();
  });

  test('from a resourceVersion: only what happened after it; namespaced paths see their namespace only', async () => {
    kube.put(cm('one', 'c', { v: '1' }));
    const rv = kube.resourceVersion;
    kube.put(cm('one', 'c', { v: '2' }));
    kube.put(cm('two', 'c', { v: 'other namespace' }));
    kube.put(cm('one', 'd', { v: '3' }));
    const w = await rawWatch(kube, `/api/v1/namespaces/one/configmaps?watch=true&resourceVersion=${rv}`);
    const e1 = await w.next();
    const e2 = await w.next();
    assert.deepEqual([e1.type, (e1.object as { data?: object }).data, e2.type, e2.object.metadata.name], ['MODIFIED', { v: '2' }, 'ADDED', 'd']);
    kube.put(cm('two', 'c', { v: 'still not ours' }));
    kube.put(cm('one', 'e', {}));
    assert.equal((await w.next()).object.metadata.name, 'e');
    w.res.destroy();
  });

  test('a resourceVersion older than the history: an ERROR event with a 410 Expired Status, then the stream ends', async () => {
    kube.put(ns('old'));
    const rv = kube.resourceVersion;
    kube.put(ns('newer'));
    kube.compact();
    const w = await rawWatch(kube, `/api/v1/namespaces?watch=true&resourceVersion=${Number(rv) - 1}`);
    assert.equal(w.res.statusCode, 200);
    const e = await w.next();
    assert.equal(e.type, 'ERROR');
    assert.equal(e.object.kind, 'Status');
    assert.equal(e.object.code, 410);
    assert.equal(e.object.reason, 'Expired');
    await w.ended;
    // The current version itself is still fine, and the history limit compacts as it goes.
    kube.historyLimit = 2;
    const from = kube.resourceVersion;
    for (const n of ['h1', 'h2', 'h3']) kube.put(ns(n));
    const stale = await rawWatch(kube, `/api/v1/namespaces?watch=true&resourceVersion=${from}`);
    assert.equal((await stale.next()).object.code, 410, 'three changes since, two kept');
    kube.historyLimit = 1000;
    const bad = await fetch(`${kube.url}/api/v1/namespaces?watch=true&resourceVersion=soon`);
    assert.equal(bad.status, 400);
    assert.equal(((await bad.json()) as { reason: string }).reason, 'BadRequest');
  });

  test('selectors: entering is ADDED, leaving is DELETED; fieldSelector by name; lists filter the same way', async () => {
    kube.put(ns('sel-in', { 'tsmesh.io/inject': 'enabled' }));
    kube.put(ns('sel-out'));
    const sel = encodeURIComponent('tsmesh.io/inject=enabled,kubernetes.io/metadata.name notin (kube-system)');
    const list = (await (await fetch(`${kube.url}/api/v1/namespaces?labelSelector=${sel}`)).json()) as { items: KubeObject[] };
    assert.deepEqual(list.items.map((o) => o.metadata.name), ['sel-in']);
    const w = await rawWatch(kube, `/api/v1/namespaces?watch=true&resourceVersion=${kube.resourceVersion}&labelSelector=${sel}`);
    kube.put(ns('sel-out', { 'tsmesh.io/inject': 'enabled' }));
    kube.put(ns('sel-in', { 'tsmesh.io/inject': 'disabled' }));
    kube.put(ns('unrelated'));
    kube.put(ns('sel-out', { 'tsmesh.io/inject': 'enabled', more: 'x' }));
    const events = [await w.next(), await w.next(), await w.next()].map((e) => `${e.type} ${e.object.metadata.name}`);
    assert.deepEqual(events, ['ADDED sel-out', 'DELETED sel-in', 'MODIFIED sel-out']);
    w.res.destroy();

    kube.put(cm('f1', 'tsmesh-trust-anchor', {}));
    kube.put(cm('f1', 'other', {}));
    const fw = await rawWatch(kube, '/api/v1/configmaps?watch=true&fieldSelector=metadata.name%3Dtsmesh-trust-anchor');
    const first = await fw.next();
    assert.equal(first.object.metadata.name, 'tsmesh-trust-anchor');
    kube.put(cm('f2', 'other', {}));
    kube.put(cm('f2', 'tsmesh-trust-anchor', {}));
    const second = await fw.next();
    assert.deepEqual([second.type, second.object.metadata.namespace], ['ADDED', 'f2']);
    fw.res.destroy();
    const badSel = await fetch(`${kube.url}/api/v1/namespaces?labelSelector=${encodeURIComponent('a in b')}`);
    assert.equal(badSel.status, 400);
  });

  test('bookmarks only for streams that asked; timeoutSeconds ends a stream; closeWatches ends them all', async () => {
    const plain = await rawWatch(kube, `/api/v1/services?watch=true&resourceVersion=${kube.resourceVersion}`);
    const marked = await rawWatch(kube, `/api/v1/services?watch=true&resourceVersion=${kube.resourceVersion}&allowWatchBookmarks=true`);
    await kube.waitForWatch((x) => x.bookmarks);
    kube.bookmark();
    const b = await marked.next();
    assert.equal(b.type, 'BOOKMARK');
    assert.equal(b.object.kind, 'Service');
    assert.equal(b.object.metadata.resourceVersion, kube.resourceVersion);
    assert.equal(kube.watches.find((x) => !x.bookmarks)!.sent.length, 0, 'no bookmark without allowWatchBookmarks');
    kube.closeWatches();
    await Promise.all([plain.ended, marked.ended]);
    assert.equal(kube.watches.length, 0);
    const timed = await rawWatch(kube, `/api/v1/services?watch=true&resourceVersion=${kube.resourceVersion}&timeoutSeconds=1`);
    await timed.ended;
  });
});

describe('stand-in watch: @kubernetes/client-node informers', () => {
  let kube: KubeStandin;
  before(async () => {
    kube = await KubeStandin.start();
  });
  after(() => kube.close());

  test('list then watch; after the server drops the stream the informer resumes from its version; after 410 it lists again', async () => {
    const kc = kube.kubeConfig();
    const core = kc.makeApiClient(CoreV1Api);
    kube.put(ns('shop', { 'tsmesh.io/inject': 'enabled' }));
    kube.put(ns('plain'));
    const informer = new ListWatch<V1Namespace>('/api/v1/namespaces', new Watch(kc), () => core.listNamespace({ labelSelector: 'tsmesh.io/inject=enabled' }), false, 'tsmesh.io/inject=enabled');
    const seen: string[] = [];
    informer.on('add', (o) => seen.push(`add ${o.metadata!.name}`));
    informer.on('update', (o) => seen.push(`update ${o.metadata!.name}`));
    informer.on('delete', (o) => seen.push(`delete ${o.metadata!.name}`));
    const until = async (want: string): Promise<void> => {
      for (let i = 0; i < 250 && !seen.includes(want); i++) await new Promise((r) => setTimeout(r, 20));
      assert.ok(seen.includes(want), `saw ${want}; got ${seen.join(', ')}`);
    };
    await informer.start();
    try {
      assert.deepEqual(seen, ['add shop']);
      const lists = () => kube.requests.filter((r) => r.path === '/api/v1/namespaces' && !r.query.has('watch')).length;
      assert.equal(lists(), 1);
      const w = await kube.waitForWatch();
      assert.equal(w.query.get('labelSelector'), 'tsmesh.io/inject=enabled');
      assert.equal(w.query.get('resourceVersion'), kube.resourceVersion, 'watches from the list');

      kube.put(ns('plain', { 'tsmesh.io/inject': 'enabled' }));
      await until('add plain');
      // The API server drops the stream; a change happens before the informer is back.
      kube.closeWatches();
      kube.put(ns('shop', { 'tsmesh.io/inject': 'enabled', team: 'a' }));
      await until('update shop');
      assert.equal(lists(), 1, 'resumed from its resourceVersion, no new list');

      // Dropped again, and the history is gone meanwhile: 410, then a new list.
      const rvBefore = kube.resourceVersion;
      kube.closeWatches();
      kube.remove('v1', 'Namespace', undefined, 'plain');
      kube.compact();
      await until('delete plain');
      assert.equal(lists(), 2, 'listed again after 410 Expired');
      assert.ok(Number(rvBefore) < Number(kube.resourceVersion));
      assert.deepEqual(informer.list().map((o) => o.metadata!.name), ['shop']);
    } finally {
      await informer.stop();
    }
  });

  test('a ConfigMap informer across namespaces with a field selector sees only that name', async () => {
    const kc = kube.kubeConfig();
    const core = kc.makeApiClient(CoreV1Api);
    const field = 'metadata.name=tsmesh-trust-anchor';
    const informer = new ListWatch<V1ConfigMap>('/api/v1/configmaps', new Watch(kc), () => core.listConfigMapForAllNamespaces({ fieldSelector: field }), false, undefined, field);
    const seen: string[] = [];
    informer.on('add', (o) => seen.push(`${o.metadata!.namespace}/${o.metadata!.name}`));
    await informer.start();
    try {
      kube.put(cm('x', 'unrelated', {}));
      kube.put(cm('x', 'tsmesh-trust-anchor', { 'ca.crt': 'pem' }));
      for (let i = 0; i < 250 && seen.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
      assert.deepEqual(seen, ['x/tsmesh-trust-anchor']);
    } finally {
      await informer.stop();
    }
  });
});
