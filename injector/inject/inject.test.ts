// injectPod's decisions and edge cases (the full output is covered by the golden files).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { injectPod, isInjected, type PodLike } from './inject.ts';
import { defaultInjectorSettings, injectorSettingsFromEnv, DEFAULT_IMAGE } from './settings.ts';
import pkg from '../../package.json' with { type: 'json' };

const settings = defaultInjectorSettings();
const enabled = { name: 'app', labels: { 'tsmesh.io/inject': 'enabled' } };

test('the default image is the one the Dockerfile builds, tagged with the package version', () => {
  assert.equal(DEFAULT_IMAGE, `ghcr.io/tsmesh/tsmesh:${pkg.version}`);
  assert.equal(settings.image, DEFAULT_IMAGE);
  const custom = injectorSettingsFromEnv({ TSMESH_PROXY_IMAGE: 'r.example/t:1', TSMESH_PROXY_OTLP_ENDPOINT: 'none', TSMESH_NAMESPACE: 'mesh' });
  assert.equal(custom.image, 'r.example/t:1');
  assert.equal(custom.otlpEndpoint, '');
  assert.equal(custom.controlPlane, 'https://tsmesh-injector.mesh.svc:8443');
  assert.throws(() => injectorSettingsFromEnv({ TSMESH_PROXY_CONTROL_PLANE: 'not a url' }), /TSMESH_PROXY_CONTROL_PLANE="not a url"/);
});

test('does not modify its input, and its output is recognised as injected', () => {
  const pod: PodLike = { metadata: { name: 'p' }, spec: { containers: [{ name: 'a', image: 'x', readinessProbe: { httpGet: { port: 80, path: '/r' } } }] } };
  const before = structuredClone(pod);
  const r = injectPod(pod, enabled, settings);
  assert.deepEqual(pod, before);
  assert.ok(r.injected);
  assert.ok(isInjected(r.pod));
  assert.equal(injectPod(r.pod, enabled, settings).injected, false);
});

test('a pod with our container but no status annotation is not injected twice', () => {
  const pod: PodLike = { spec: { containers: [{ name: 'tsmesh-proxy', image: 'x' }, { name: 'a', image: 'x' }] } };
  const r = injectPod(pod, enabled, settings);
  assert.equal(r.injected, false);
  assert.equal(!r.injected && r.skip.code, 'already-injected');
});

test('a probe on an unknown named port is left alone, with a warning', () => {
  const pod: PodLike = { spec: { containers: [{ name: 'a', image: 'x', livenessProbe: { httpGet: { port: 'admin', path: '/l' } } }] } };
  const r = injectPod(pod, enabled, settings);
  assert.ok(r.injected);
  assert.deepEqual(r.pod.spec!.containers[0]!.livenessProbe!.httpGet, { port: 'admin', path: '/l' });
  assert.match(r.warnings[0]!, /container a: livenessProbe uses port "admin"/);
});

test('a bad tsmesh.io/inject value is a warning and the namespace decides', () => {
  const pod: PodLike = { metadata: { annotations: { 'tsmesh.io/inject': 'yes' } }, spec: { containers: [{ name: 'a', image: 'x' }] } };
  const off = injectPod(pod, { name: 'app' }, settings);
  assert.equal(off.injected, false);
  assert.match(off.warnings[0]!, /tsmesh\.io\/inject="yes" ignored/);
  assert.equal(injectPod(pod, enabled, settings).injected, true);
});

test('a pod without a spec does not crash', () => {
  const r = injectPod({ metadata: {} }, enabled, settings);
  assert.ok(r.injected);
  assert.deepEqual(r.pod.spec!.initContainers!.map((c) => c.name), ['tsmesh-init', 'tsmesh-proxy']);
});

test('a trust domain other than the default reaches the sidecar as TSMESH_TRUST_DOMAIN; a bad one is refused by name', () => {
  const pod: PodLike = { metadata: { name: 'p' }, spec: { containers: [{ name: 'a', image: 'x' }] } };
  const envOf = (r: ReturnType<typeof injectPod>) => (r.pod.spec!.initContainers ?? []).find((c) => c.name === 'tsmesh-proxy')!.env!;
  assert.equal(envOf(injectPod(pod, enabled, settings)).find((e) => e.name === 'TSMESH_TRUST_DOMAIN'), undefined, 'the default is the sidecar default: not repeated');
  const custom = injectorSettingsFromEnv({ TSMESH_TRUST_DOMAIN: 'prod.example.org' });
  assert.equal(custom.trustDomain, 'prod.example.org');
  assert.deepEqual(envOf(injectPod(pod, enabled, custom)).find((e) => e.name === 'TSMESH_TRUST_DOMAIN'), { name: 'TSMESH_TRUST_DOMAIN', value: 'prod.example.org' });
  assert.throws(() => injectorSettingsFromEnv({ TSMESH_TRUST_DOMAIN: 'Prod Domain' }), /TSMESH_TRUST_DOMAIN="Prod Domain": must be a trust domain/);
});
