// `tsmesh init` applying rules for real, in a network namespace: idempotent, replaces its own
// rules, leaves others alone, uninstalls, and fails with a stable code without NET_ADMIN or
// without iptables.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { netnsCluster, NODE, TSMESH, APP_UID, type NetnsCluster } from './harness/netns.ts';
import { parseInitArgs } from '../src/cli/init.ts';
import { UsageError } from '../src/errors/errors.ts';

let cluster: NetnsCluster;
before(async () => {
  cluster = await netnsCluster({ pods: [{ name: 'pod-a', annotations: { 'tsmesh.io/exclude-outbound-ports': '25' } }] });
});
after(() => cluster?.close());

async function nat(family: 4 | 6 = 4): Promise<string[]> {
  const r = await cluster.exec('pod-a', [family === 6 ? 'ip6tables-save' : 'iptables-save', '-t', 'nat']);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.split('\n').filter((l) => l.startsWith('-A ') || l.startsWith(':'));
}
const tsmeshLines = (lines: string[]) => lines.filter((l) => l.includes('TSMESH_'));

void test('installs the rules, with the annotations of the pod', async () => {
  await cluster.init('pod-a');
  const lines = await nat();
  assert.ok(lines.includes('-A OUTPUT -p tcp -j TSMESH_OUTBOUND'));
  assert.ok(lines.includes('-A PREROUTING -p tcp -j TSMESH_INBOUND'));
  assert.ok(lines.includes('-A TSMESH_OUTBOUND -p tcp -m tcp --dport 25 -j RETURN'));
  // an IPv4-only pod gets no ip6tables rules
  assert.deepEqual(tsmeshLines(await nat(6)), []);
});

void test('running it twice leaves the same rules, and other rules alone', async () => {
  await cluster.exec('pod-a', ['iptables', '-t', 'nat', '-A', 'OUTPUT', '-d', '192.0.2.1/32', '-j', 'RETURN']);
  const first = await nat();
  await cluster.init('pod-a');
  const second = await nat();
  assert.deepEqual(second, first);
  assert.equal(second.filter((l) => l === '-A OUTPUT -p tcp -j TSMESH_OUTBOUND').length, 1);
  assert.ok(second.includes('-A OUTPUT -d 192.0.2.1/32 -j RETURN'));
});

void test('running it with other settings replaces the rules', async () => {
  await cluster.init('pod-a', ['--exclude-outbound-ports', '3306', '--proxy-uid', '2000']);
  const lines = await nat();
  assert.ok(lines.includes('-A TSMESH_OUTBOUND -p tcp -m tcp --dport 3306 -j RETURN'));
  assert.ok(!lines.some((l) => l.includes('--dport 25 ')));
  assert.ok(lines.includes('-A TSMESH_OUTBOUND -m owner --uid-owner 2000 -j RETURN'));
  assert.ok(!lines.some((l) => l.includes('--uid-owner 1337')));
});

void test('removes chains of an older tsmesh that it no longer uses', async () => {
  await cluster.exec('pod-a', ['iptables', '-t', 'nat', '-N', 'TSMESH_LEGACY']);
  await cluster.exec('pod-a', ['iptables', '-t', 'nat', '-A', 'OUTPUT', '-p', 'tcp', '-j', 'TSMESH_LEGACY']);
  await cluster.init('pod-a');
  assert.ok(!(await nat()).some((l) => l.includes('TSMESH_LEGACY')));
});

void test('--ipv6 true installs the ip6tables rules too, and --uninstall removes both', async () => {
  await cluster.init('pod-a', ['--ipv6', 'true']);
  assert.ok((await nat(6)).includes('-A OUTPUT -p tcp -j TSMESH_OUTBOUND'));
  await cluster.init('pod-a', ['--uninstall', '--ipv6', 'true']);
  assert.deepEqual(tsmeshLines(await nat()), []);
  assert.deepEqual(tsmeshLines(await nat(6)), []);
  assert.ok((await nat()).includes('-A OUTPUT -d 192.0.2.1/32 -j RETURN'), 'other rules stay');
  await cluster.init('pod-a', ['--uninstall']); // nothing to remove is fine
});

void test('without NET_ADMIN it fails with TSMESH_INIT_NO_NET_ADMIN and changes nothing', async () => {
  const asApp = await cluster.exec('pod-a', [NODE, TSMESH, 'init'], { uid: APP_UID });
  assert.equal(asApp.code, 1);
  assert.match(asApp.stderr, /TSMESH_INIT_NO_NET_ADMIN: .*NET_ADMIN/);
  // root, but with NET_ADMIN dropped from the bounding set (as in a container without the capability)
  const noCap = await cluster.exec('pod-a', ['setpriv', '--bounding-set=-net_admin', '--', NODE, TSMESH, 'init']);
  assert.equal(noCap.code, 1);
  assert.match(noCap.stderr, /TSMESH_INIT_NO_NET_ADMIN/);
  assert.deepEqual(tsmeshLines(await nat()), []);
});

void test('without iptables it fails with TSMESH_INIT_IPTABLES_MISSING', async () => {
  const r = await cluster.exec('pod-a', [NODE, TSMESH, 'init'], { env: { PATH: '/nonexistent' } });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /TSMESH_INIT_IPTABLES_MISSING: iptables-save not found/);
});

void test('bad flags are usage errors naming the flag (exit status 2)', async () => {
  assert.throws(() => parseInitArgs(['--outbound-port', '99999']), (e: unknown) => e instanceof UsageError && /--outbound-port: 99999 is outside/.test(e.message));
  assert.throws(() => parseInitArgs(['--exclude-outbound-cidrs', '10.0.0.0/33']), /--exclude-outbound-cidrs: "10.0.0.0\/33" is not a CIDR/);
  assert.throws(() => parseInitArgs(['--ipv6', 'maybe']), /--ipv6: "maybe" is not auto, true or false/);
  assert.throws(() => parseInitArgs(['--inbound-port', '15001']), /must differ/);
  assert.throws(() => parseInitArgs(['--bogus']), UsageError);
  const r = await cluster.exec('pod-a', [NODE, TSMESH, 'init', '--proxy-uid', 'root']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--proxy-uid: "root" is not a whole number/);
});

void test('parseInitArgs: flags, TSMESH_ANNOTATIONS and defaults', () => {
  const args = parseInitArgs(['--dry-run', '--inbound-ports', '*', '--exclude-inbound-ports', '80,80,22'], { TSMESH_ANNOTATIONS: '/tmp/a' });
  assert.deepEqual(args, { dryRun: true, uninstall: false, ipv6: 'auto', annotationsFile: '/tmp/a', flags: { inboundPorts: 'all', excludeInboundPorts: [22, 80] } });
  assert.equal(parseInitArgs([], {}).annotationsFile, '/etc/tsmesh/podinfo/annotations');
});
