// Golden files: every injector/testdata/NAME.yaml has NAME.yaml.injected, the expected output
// of `tsmesh inject`. Each case also goes through the webhook over HTTPS (the returned patch
// applied with fast-json-patch must give the same pods), and once more to show that injecting
// an injected pod changes nothing. The outputs validate against the Kubernetes OpenAPI schema.
// Regenerate after an intended change: UPDATE_GOLDEN=1 node --test injector/golden.test.ts
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import fjp from 'fast-json-patch';
import { injectManifests } from './manifests/manifests.ts';
import { defaultInjectorSettings, type InjectorSettings } from './inject/settings.ts';
import { podAnnotations, policyAnnotations, PREFIX } from '../src/config/annotations.ts';
import { startTestWebhook, podCreateReview, type TestWebhook } from './testing/webhook.ts';
import { staticNamespaceLookup } from './webhook/namespaces.ts';
import { validateObject } from './testing/schema.ts';

const DIR = join(import.meta.dirname, 'testdata');
const UPDATE = process.env.UPDATE_GOLDEN === '1';
// Fixed image and version, so that a release does not make every golden file stale.
const SETTINGS: InjectorSettings = { ...defaultInjectorSettings(), image: 'ghcr.io/tsmesh/tsmesh:golden', version: 'golden' };

const inputs = readdirSync(DIR).filter((f) => f.endsWith('.yaml')).sort();
const outputs = readdirSync(DIR).filter((f) => f.endsWith('.yaml.injected'));

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const TEMPLATE: Record<string, string[]> = {
  Deployment: ['spec', 'template'],
  StatefulSet: ['spec', 'template'],
  DaemonSet: ['spec', 'template'],
  ReplicaSet: ['spec', 'template'],
  Job: ['spec', 'template'],
  CronJob: ['spec', 'jobTemplate', 'spec', 'template'],
};

/** The Pod the API server would see for a manifest object (a workload's pod from its template). */
function podOf(obj: Obj): { pod: Obj; namespace: string } | undefined {
  const namespace = obj.metadata?.namespace ?? 'default';
  if (obj.kind === 'Pod') return { pod: obj, namespace };
  const path = TEMPLATE[obj.kind];
  if (!path) return undefined;
  const t = path.reduce<Obj | undefined>((o, k) => o?.[k], obj)!;
  return { pod: { apiVersion: 'v1', kind: 'Pod', metadata: { ...t.metadata, generateName: `${obj.metadata.name}-`, namespace }, spec: t.spec }, namespace };
}

const docsOf = (text: string): Obj[] => parseAllDocuments(text).map((d) => d.toJS() as Obj).filter((d) => d !== null);

describe('golden files', () => {
  let webhook: TestWebhook;
  before(async () => {
    // Every namespace enabled, as `tsmesh inject` assumes.
    webhook = await startTestWebhook({ settings: SETTINGS, namespaces: staticNamespaceLookup({}, { 'tsmesh.io/inject': 'enabled' }) });
  });
  after(() => webhook.close());

  test('every golden output has its input (no orphans)', () => {
    const orphans = outputs.filter((o) => !inputs.includes(o.replace(/\.injected$/, '')));
    assert.deepEqual(orphans, [], `golden outputs without an input: ${orphans.join(', ')}`);
    assert.ok(inputs.length >= 8, `expected the golden cases, found ${inputs.length}`);
  });

  for (const input of inputs) {
    describe(input, () => {
      const inPath = join(DIR, input);
      const outPath = `${inPath}.injected`;
      const text = readFileSync(inPath, 'utf8');
      const { output, reports } = injectManifests(text, SETTINGS, { source: input });

      test('CLI path matches the golden file', () => {
        if (UPDATE) writeFileSync(outPath, output);
        assert.ok(existsSync(outPath), `${outPath} is missing: run with UPDATE_GOLDEN=1 to create it`);
        assert.equal(output, readFileSync(outPath, 'utf8'), `${input}: the output differs from ${input}.injected (stale golden file? rerun with UPDATE_GOLDEN=1 and review the diff)`);
      });

      test('webhook path: the patch gives the same pods, with the same warnings', async () => {
        const expected = docsOf(readFileSync(outPath, 'utf8'));
        const original = docsOf(text);
        assert.equal(expected.length, original.length, 'same number of documents');
        for (let i = 0; i < original.length; i++) {
          const src = podOf(original[i]!);
          if (!src) continue;
          const want = podOf(expected[i]!)!;
          const res = await webhook.post(podCreateReview(src.pod, src.namespace));
          assert.equal(res.status, 200, res.text);
          const response = (res.json as Obj).response;
          assert.equal(response.allowed, true);
          const patched = response.patch
            ? fjp.applyPatch(structuredClone(src.pod), JSON.parse(Buffer.from(response.patch, 'base64').toString('utf8')), true, false).newDocument
            : src.pod;
          assert.deepEqual(patched, want.pod, `document ${i + 1}: the webhook's patch does not give the golden pod`);
          const cliWarnings = reports.filter((r) => r.document === i + 1).flatMap((r) => r.warnings);
          assert.deepEqual(response.warnings ?? [], cliWarnings, 'the webhook warns as the CLI does');
        }
      });

      test('re-injection changes nothing (empty patch, same manifests)', async () => {
        const injected = readFileSync(outPath, 'utf8');
        const again = injectManifests(injected, SETTINGS);
        assert.deepEqual(docsOf(again.output), docsOf(injected));
        assert.equal(again.reports.filter((r) => r.result === 'injected').length, 0);
        for (const doc of docsOf(injected)) {
          const p = podOf(doc);
          if (!p) continue;
          const res = await webhook.post(podCreateReview(p.pod, p.namespace));
          const response = (res.json as Obj).response;
          assert.equal(response.allowed, true);
          assert.equal(response.patch, undefined, 'an injected pod gets no patch');
        }
      });

      test('the output validates against the Kubernetes OpenAPI schema', async () => {
        for (const doc of docsOf(readFileSync(outPath, 'utf8'))) {
          await validateObject(doc);
          const p = podOf(doc);
          if (p) await validateObject(p.pod);
        }
      });
    });
  }

  test('bad annotation values: every key is named in a warning, defaults kept', () => {
    const { reports, output } = injectManifests(readFileSync(join(DIR, 'bad-annotations.yaml'), 'utf8'), SETTINGS);
    const warnings = reports.flatMap((r) => r.warnings);
    for (const key of [...Object.keys(podAnnotations), ...Object.keys(policyAnnotations)]) {
      assert.ok(warnings.some((w) => w.startsWith(`annotation ${PREFIX}${key}=`)), `no warning names ${PREFIX}${key}`);
    }
    assert.ok(warnings.some((w) => w.includes('tsmesh.io/retry-attemps') && w.includes('no such annotation')));
    const pod = docsOf(output)[0]!;
    const proxy = pod.spec.initContainers.find((c: Obj) => c.name === 'tsmesh-proxy');
    assert.deepEqual(proxy.resources, { requests: { cpu: '50m', memory: '64Mi' } }, 'bad proxy-cpu/memory keep the defaults');
    assert.equal(proxy.restartPolicy, 'Always', 'bad native-sidecar keeps the default (native)');
  });

  test('skipped cases are reported with their reason', () => {
    const reason = (file: string) => injectManifests(readFileSync(join(DIR, file), 'utf8'), SETTINGS).reports.find((r) => r.result === 'skipped')?.skip?.code;
    assert.equal(reason('opt-out.yaml'), 'pod-disabled');
    assert.equal(reason('kube-system.yaml'), 'system-namespace');
    assert.equal(reason('host-network.yaml'), 'host-network');
  });
});
