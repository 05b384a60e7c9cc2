// Fatal errors of the control plane say what was tried, at which API server, and why: the
// socket error under client-node's "fetch failed", the API server's Status message, or that no
// cluster is configured at all (instead of client-node's "HTTP protocol is not allowed when
// skipTLSVerify is not set or false"). Run through the `tsmesh` executable, as users see them.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KubeStandin, writeKubeconfig } from './harness/kube-standin.ts';

const TSMESH = join(import.meta.dirname, '..', 'bin', 'tsmesh.js');
const dir = await mkdtemp(join(tmpdir(), 'tsmesh-kube-errors-'));
after(() => rm(dir, { recursive: true, force: true }));

/** Runs `tsmesh ARGS` with only the given environment (no KUBECONFIG or HOME of this machine). */
function tsmesh(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [TSMESH, ...args], { env: { PATH: process.env.PATH ?? '', HOME: dir, TSMESH_INJECTOR_PORT: '0', ...env }, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}


/** A port on 127.0.0.1 where nothing listens (connections are refused). */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

test('the injector against an API server that refuses: what it tried, the server, ECONNREFUSED', async () => {
  const server = `http://127.0.0.1:${await closedPort()}`;
  const r = await tsmesh(['injector'], { KUBECONFIG: await writeKubeconfig(join(dir, 'refused'), server) });
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /^tsmesh injector: cannot read Secret tsmesh-system\/tsmesh-ca/m);
  assert.match(r.stderr, /ECONNREFUSED/);
  assert.ok(r.stderr.includes(`API server ${server}`), r.stderr);
  assert.match(r.stderr, /\[TSMESH_KUBE_API\]/);
});

test("the injector against an API server that forbids: the server's own message", async () => {
  const kube = await KubeStandin.start();
  after(() => kube.close());
  kube.use((req) => (req.path.includes('/secrets/') ? { status: 403, body: kube.status(403, 'Forbidden', 'secrets "tsmesh-ca" is forbidden: User "u" cannot get resource "secrets"') } : undefined));
  const r = await tsmesh(['injector'], { KUBECONFIG: await writeKubeconfig(join(dir, 'forbidden'), kube.url) });
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /cannot read Secret tsmesh-system\/tsmesh-ca: HTTP 403: secrets "tsmesh-ca" is forbidden/);
  assert.ok(r.stderr.includes(`API server ${kube.url}`), r.stderr);
});

test('the injector with no cluster configured says so and what to do', async () => {
  const r = await tsmesh(['injector'], {});
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /no Kubernetes cluster configured: KUBECONFIG is not set, .*\.kube\/config does not exist, and this is not a pod/);
  assert.match(r.stderr, /Set KUBECONFIG/);
  assert.doesNotMatch(r.stderr, /HTTP protocol is not allowed/);
  assert.match(r.stderr, /\[TSMESH_KUBE_NO_CONFIG\]/);
});

test('the injector with KUBECONFIG naming a missing file names it', async () => {
  const missing = join(dir, 'nope.yaml');
  const r = await tsmesh(['injector'], { KUBECONFIG: missing });
  assert.equal(r.code, 1, r.stderr);
  assert.ok(r.stderr.includes(`KUBECONFIG names ${missing}, which does not exist`), r.stderr);
  assert.match(r.stderr, /\[TSMESH_KUBE_CONFIG_INVALID\]/);
});
