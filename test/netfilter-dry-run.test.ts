// Golden files of `tsmesh init --dry-run`: test/testdata/init-NAME.rules is the exact output for
// case NAME below (the CLI run as a process, annotations from a downward-API file). A file
// without a case fails the test. Regenerate with UPDATE_GOLDEN=1.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, NODE, TSMESH } from './harness/netns.ts';
import { formatPodInfo } from '../src/config/podinfo.ts';

const TESTDATA = join(ROOT, 'test/testdata');
const update = process.env.UPDATE_GOLDEN === '1';

const cases: Record<string, { args: string[]; annotations?: Record<string, string> }> = {
  defaults: { args: ['--ipv6', 'false'] },
  ipv6: { args: ['--ipv6', 'true', '--exclude-outbound-cidrs', '10.0.0.0/8,fd00::/8'] },
  annotations: {
    args: ['--ipv6', 'false'],
    annotations: {
      'tsmesh.io/exclude-outbound-ports': '3306, 25',
      'tsmesh.io/exclude-inbound-ports': '9090',
      'tsmesh.io/exclude-outbound-cidrs': '169.254.169.254',
      'tsmesh.io/mtls': 'permissive',
    },
  },
  'flags-win': {
    args: ['--ipv6', 'false', '--exclude-outbound-ports', '22', '--exclude-outbound-cidrs', ''],
    annotations: { 'tsmesh.io/exclude-outbound-ports': '3306', 'tsmesh.io/exclude-inbound-ports': '9090', 'tsmesh.io/exclude-outbound-cidrs': '10.0.0.0/8' },
  },
  'bad-annotation': { args: ['--ipv6', 'false'], annotations: { 'tsmesh.io/exclude-outbound-ports': '25,http', 'tsmesh.io/exclude-inbound-ports': '9090' } },
  'inbound-ports': { args: ['--ipv6', 'false', '--inbound-ports', '8080,9090,15020', '--exclude-inbound-ports', '9090'] },
  'no-inbound': { args: ['--ipv6', 'false', '--inbound-ports='] },
  'custom-ports': { args: ['--ipv6', 'false', '--outbound-port', '16001', '--inbound-port', '16006', '--admin-port', '16020', '--proxy-uid', '2000'] },
};

const dir = mkdtempSync(join(tmpdir(), 'tsmesh-init-golden-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function dryRun(name: string, c: (typeof cases)[string]) {
  const annotations = join(dir, `${name}.annotations`);
  if (c.annotations) writeFileSync(annotations, formatPodInfo(c.annotations));
  const env = { PATH: process.env.PATH, TSMESH_ANNOTATIONS: c.annotations ? annotations : join(dir, 'none') };
  return spawnSync(NODE, [TSMESH, 'init', '--dry-run', ...c.args], { env, encoding: 'utf8' });
}

for (const [name, c] of Object.entries(cases)) {
  void test(`init --dry-run: ${name}`, () => {
    const r = dryRun(name, c);
    assert.equal(r.status, 0, r.stderr);
    const file = join(TESTDATA, `init-${name}.rules`);
    if (update) writeFileSync(file, r.stdout);
    assert.equal(r.stdout, readFileSync(file, 'utf8'), `stale golden file ${file}: rerun with UPDATE_GOLDEN=1 and review the diff`);
    assert.equal(dryRun(name, c).stdout, r.stdout, 'the output is stable');
  });
}

void test('init --dry-run reports a bad annotation by key and keeps the default', () => {
  const r = dryRun('bad-annotation', cases['bad-annotation']!);
  assert.match(r.stderr, /tsmesh\.io\/exclude-outbound-ports.*http.* is not a port/);
  assert.ok(!r.stdout.includes('--dport 25 '));
  assert.ok(r.stdout.includes('--dport 9090 -j RETURN'), 'the valid annotation still applies');
});

void test('every golden file has a case', () => {
  const files = readdirSync(TESTDATA).filter((f) => /^init-.*\.rules$/.test(f));
  const stale = files.filter((f) => !Object.hasOwn(cases, f.slice('init-'.length, -'.rules'.length)));
  assert.deepEqual(stale, []);
});
