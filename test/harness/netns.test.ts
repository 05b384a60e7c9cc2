// The netns harness itself: pods reach each other by IP, service names resolve to a VIP that
// the node's kube-proxy stand-in forwards, processes run as the UID asked, the registry
// matches, and close() leaves nothing behind.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, mkdtemp, mkdir, chmod, writeFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { existsSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { parse } from 'yaml';
import { netnsCluster, removeStaleNamespaces, NODE, APP_UID, PROXY_UID, type NetnsCluster } from './netns.ts';
import { registryFileSchema } from '../../src/registry/model.ts';

const APP = `
import { createServer } from 'node:http';
const server = createServer((req, res) => res.end(JSON.stringify({ pod: process.argv[1], uid: process.getuid(), from: req.socket.remoteAddress })));
server.listen(8080, '0.0.0.0', () => console.log('listening'));
`;

let cluster: NetnsCluster;
after(() => cluster?.close());

void test('builds pods that reach each other by IP and by service name', async () => {
  cluster = await netnsCluster({
    pods: [{ name: 'pod-a', labels: { app: 'web-app' } }, { name: 'pod-b' }],
    services: [{ name: 'pod-service', ports: [{ name: 'http', port: 80, targetPort: 8080 }], selector: { app: 'web-app' } }],
  });
  const a = cluster.pod('pod-a');
  const b = cluster.pod('pod-b');
  assert.notEqual(a.ip, b.ip);
  assert.deepEqual(cluster.service('pod-service').endpoints, [a.ip]);

  const app = cluster.spawn('pod-a', [NODE, '--input-type=module', '-e', APP, 'pod-a'], { uid: APP_UID });
  await app.waitForLine(/listening/);

  // by pod IP, from another pod: the app sees the caller's IP and runs as the app user
  const direct = await cluster.curl('pod-b', `http://${a.ip}:8080/`);
  assert.equal(direct.status, 200, direct.stderr);
  assert.deepEqual(JSON.parse(direct.body), { pod: 'pod-a', uid: APP_UID, from: b.ip });

  // the service name resolves to the VIP, from the pod's own hosts file
  const vip = cluster.service('pod-service').clusterIP;
  const hosts = await cluster.exec('pod-b', ['getent', 'hosts', 'pod-service']);
  assert.equal(hosts.stdout.trim().split(/\s+/)[0], vip);
  const fqdn = await cluster.exec('pod-b', ['getent', 'hosts', 'pod-service.default.svc.cluster.local']);
  assert.equal(fqdn.stdout.trim().split(/\s+/)[0], vip);
  assert.notEqual((await cluster.exec('pod-b', ['getent', 'hosts', 'no-such-service'])).code, 0);

  // no namespace owns the VIP: the node's kube-proxy stand-in forwards port 80 to pod-a:8080
  const owners = await cluster.exec('pod-a', ['ip', '-o', 'addr']);
  assert.ok(!owners.stdout.includes(vip));
  const viaService = await cluster.curl('pod-b', 'http://pod-service/');
  assert.equal(viaService.status, 200, viaService.stderr);
  assert.equal(JSON.parse(viaService.body).pod, 'pod-a');
});

void test('runs commands as the requested user', async () => {
  assert.equal((await cluster.exec('pod-a', ['id', '-u'], { uid: 1337 })).stdout.trim(), '1337');
  assert.equal((await cluster.exec('pod-a', ['id', '-G'], { uid: 1337 })).stdout.trim(), '1337');
  assert.equal((await cluster.exec('pod-a', ['id', '-u'])).stdout.trim(), '0');
});

void test('writes the registry in the sidecar format with the assigned IPs', async () => {
  const checked = registryFileSchema.safeParse(parse(await readFile(cluster.registryFile, 'utf8')));
  assert.ok(checked.success, JSON.stringify(checked));
  const data = checked.data;
  assert.deepEqual(
    data.pods.map((p) => [p.name, p.ip, p.meshed]),
    [['pod-a', cluster.pod('pod-a').ip, false], ['pod-b', cluster.pod('pod-b').ip, false]],
  );
  assert.equal(data.services[0]!.clusterIP, cluster.service('pod-service').clusterIP);
  assert.deepEqual(data.services[0]!.ports, [{ name: 'http', port: 80, targetPort: 8080 }]);
});

void test('close() removes the namespaces, their /etc/netns files and the processes', async () => {
  const spawned = cluster.spawn('pod-b', ['sleep', '60']);
  const namespaces = cluster.existingNamespaces();
  assert.equal(namespaces.length, 3); // node + 2 pods
  await cluster.close();
  assert.deepEqual(cluster.existingNamespaces(), []);
  for (const ns of namespaces) assert.equal(existsSync(`/etc/netns/${ns}`), false);
  assert.equal(existsSync(cluster.dir), false);
  assert.ok(spawned.child.exitCode !== null || spawned.child.signalCode !== null);
  await cluster.close(); // twice is fine
});

void test('removes namespaces left behind by a test process that died', () => {
  const stale = 'tsm-2147483646-dead00-node'; // no process has that PID
  execFileSync('ip', ['netns', 'add', stale]);
  try {
    assert.ok(removeStaleNamespaces().includes(stale));
    assert.ok(!execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).includes(stale));
  } finally {
    try {
      execFileSync('ip', ['netns', 'del', stale], { stdio: 'ignore' });
    } catch {
      /* removed */
    }
  }
});

void test('pods run a project that sits under a folder only root can enter, and the folder stays as it was', async () => {
  // a project (its bin/tsmesh.js stands in for the checkout) cloned under a private folder
  const home = await mkdtemp(join(tmpdir(), 'tsmesh-private-'));
  after(() => rm(home, { recursive: true, force: true }));
  assert.equal((await stat(home)).mode & 0o777, 0o700);
  const project = join(home, 'src', 'tsmesh');
  await mkdir(join(project, 'bin'), { recursive: true, mode: 0o755 });
  await chmod(join(home, 'src'), 0o755);
  const tsmesh = join(project, 'bin', 'tsmesh.js');
  await writeFile(tsmesh, "console.log('project readable as', process.getuid());\n", { mode: 0o644 });
  await writeFile(join(home, 'secret'), 'not for pods\n', { mode: 0o644 });

  const private_ = await netnsCluster({ tsmesh, pods: [{ name: 'pod-p' }] });
  after(() => private_.close());
  for (const uid of [PROXY_UID, APP_UID]) {
    const r = await private_.exec('pod-p', [NODE, tsmesh], { uid });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), `project readable as ${uid}`);
  }
  // only the project is shown to the pod users: the rest of the private folder is not
  const other = await private_.exec('pod-p', ['cat', join(home, 'secret')], { uid: APP_UID });
  assert.notEqual(other.code, 0);
  // nothing changed outside: same mode, same content, no mount left behind
  assert.equal((await stat(home)).mode & 0o777, 0o700);
  assert.equal(await readFile(join(home, 'secret'), 'utf8'), 'not for pods\n');
  assert.ok(!(await readFile('/proc/self/mounts', 'utf8')).includes(project));
});
