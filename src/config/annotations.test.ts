import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readAnnotations, podAnnotations, policyAnnotations, defaultsOf } from './annotations.ts';
import { parseDuration, parseCidrList, parsePercent, parsePortList } from './parse.ts';
import { parsePodInfo, formatPodInfo } from './podinfo.ts';

test('durations as Kubernetes users write them', () => {
  assert.equal(parseDuration('250ms'), 250);
  assert.equal(parseDuration('10s'), 10_000);
  assert.equal(parseDuration('1m30s'), 90_000);
  assert.equal(parseDuration('1.5s'), 1500);
  assert.equal(parseDuration('0'), 0);
  for (const bad of ['', '10', 'soon', '5 s', '-1s', '1d']) assert.throws(() => parseDuration(bad), /not a duration|empty/, bad);
});

test('ports, CIDRs and percentages', () => {
  assert.deepEqual(parsePortList('8080, 80,8080'), [80, 8080]);
  assert.throws(() => parsePortList('80,70000'), /"70000" is not a port/);
  assert.throws(() => parsePortList('1000-2000'), /ranges are not supported/);
  assert.deepEqual(parseCidrList('10.0.0.0/8, fd00::/8, 192.168.1.1'), ['10.0.0.0/8', 'fd00::/8', '192.168.1.1/32']);
  assert.throws(() => parseCidrList('10.0.0.0/33'), /not a CIDR/);
  assert.throws(() => parseCidrList('example.com'), /not a CIDR/);
  assert.equal(parsePercent('20%'), 0.2);
  assert.equal(parsePercent('0.5'), 0.5);
  assert.throws(() => parsePercent('150%'), /percentage/);
});

test('annotations: defaults, valid values, and a bad value reported with its key', () => {
  const r = readAnnotations(policyAnnotations, {
    'tsmesh.io/timeout': '2s',
    'tsmesh.io/retry-attempts': 'many',
    'tsmesh.io/retry-on': '5xx,reset',
    'other.io/timeout': '1s',
  });
  assert.equal(r.values.timeout, 2000);
  assert.equal(r.values['retry-attempts'], 2, 'bad value: the default stays');
  assert.deepEqual(r.values['retry-on'], ['5xx', 'reset']);
  assert.deepEqual(r.problems.map((p) => p.key), ['tsmesh.io/retry-attempts']);
  assert.match(r.problems[0]!.reason, /"many" is not a whole number/);
});

test('trace-sampling defaults to 0.01 (1% of new traces, as Istio)', () => {
  assert.equal(readAnnotations(podAnnotations, {}).values['trace-sampling'], 0.01);
  assert.equal(readAnnotations(podAnnotations, { 'tsmesh.io/trace-sampling': '1' }).values['trace-sampling'], 1);
});

test('annotations: a bad value keeps the previous good value, a removed one returns to the default', () => {
  const first = readAnnotations(podAnnotations, { 'tsmesh.io/mtls': 'permissive', 'tsmesh.io/trace-sampling': '0.25' });
  assert.equal(first.values.mtls, 'permissive');
  const second = readAnnotations(podAnnotations, { 'tsmesh.io/mtls': 'loose' }, undefined, first.values);
  assert.equal(second.values.mtls, 'permissive');
  assert.equal(second.values['trace-sampling'], 0.01, 'removed: default');
  assert.match(second.problems[0]!.reason, /not one of strict, permissive, disabled/);
});

test('allow-list entries must be SPIFFE IDs or ns/NS/sa/SA', () => {
  const ok = readAnnotations(podAnnotations, { 'tsmesh.io/allow': 'spiffe://cluster.local/ns/a/sa/b, ns/web/sa/front, ns/ops' });
  assert.deepEqual(ok.values.allow, ['spiffe://cluster.local/ns/a/sa/b', 'ns/web/sa/front', 'ns/ops']);
  const bad = readAnnotations(podAnnotations, { 'tsmesh.io/allow': 'everyone' });
  assert.deepEqual(bad.values.allow, []);
  assert.equal(bad.problems.length, 1);
});

test('every annotation has a default that its own parser accepts', () => {
  for (const specs of [podAnnotations, policyAnnotations] as Record<string, { default: unknown; parse: (v: string) => unknown }>[]) {
    assert.deepEqual(Object.keys(defaultsOf(podAnnotations)), Object.keys(podAnnotations));
    for (const [key, spec] of Object.entries(specs)) {
      const text = Array.isArray(spec.default) ? spec.default.join(',') : spec.default === null ? 'none' : typeof spec.default === 'number' && key.match(/timeout/) ? `${spec.default}ms` : typeof spec.default === 'number' && key === 'retry-budget' ? `${spec.default * 100}%` : String(spec.default);
      assert.deepEqual(spec.parse(text), spec.default, key);
    }
  }
});

test('downward-API files: key="value" lines with Go quoting', () => {
  const text = 'tsmesh.io/timeout="2s"\nkubectl.kubernetes.io/last-applied-configuration="{\\"a\\":\\"b\\\\n\\"}"\nempty=""\n';
  assert.deepEqual(parsePodInfo(text), { 'tsmesh.io/timeout': '2s', 'kubectl.kubernetes.io/last-applied-configuration': '{"a":"b\\n"}', empty: '' });
  const round = { a: 'x"y', b: 'line\nbreak' };
  assert.deepEqual(parsePodInfo(formatPodInfo(round)), round);
});
