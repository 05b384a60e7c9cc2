// The sidecar's identity providers: from the CA over real HTTPS (rotation, backoff, outages,
// expiry, the gauge) and from a TLS folder (reloads, partial and bad file sets).
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { once } from 'node:events';
import { Writable } from 'node:stream';
import { mkdtempSync, writeFileSync, rmSync, mkdirSync, symlinkSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { createCA, createCertificateHandler, staticTokenVerifier, type CA } from '../../injector/ca/index.ts';
import { createLogger } from '../log/log.ts';
import {
  createCAIdentityProvider,
  createFileIdentityProvider,
  createIdentityProvider,
  httpsCertificateFetch,
  ManualClock,
  IdentityNotReadyError,
  type CertificateFetch,
  type Identity,
} from './index.ts';
import { createCsr, generateP256, privateKeyToPem } from './x509.ts';

const TD = 'cluster.local';
const ID_A = `spiffe://${TD}/ns/default/sa/pod-a`;

function capture() {
  const lines: { level: string; msg: string; [k: string]: unknown }[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(l));
      cb();
    },
  });
  return { log: createLogger({ level: 'debug', destination: stream }), lines };
}

/** Counts calls and lets a test wait for the last one to settle. */
function counted(fetch: CertificateFetch) {
  const calls: Promise<unknown>[] = [];
  const wrapped: CertificateFetch = (csr) => {
    const p = fetch(csr);
    calls.push(p.catch(() => undefined));
    return p;
  };
  return {
    fetch: wrapped,
    calls,
    /**
     * Fires the clock's next timer and waits until the provider has scheduled its next one (every
     * attempt ends by scheduling a rotation or a retry); the expiry timer schedules nothing, so
     * that wait gives up after a while.
     */
    /** Waits for the provider's first attempt to end (it schedules a timer). */
    async settle(clock: ManualClock): Promise<void> {
      for (let waited = 0; clock.pending === 0 && waited < 2000; waited += 2) await new Promise((r) => setTimeout(r, 2));
    },
    async step(clock: ManualClock): Promise<boolean> {
      if (!clock.fireNext()) return false;
      const after = clock.pending;
      for (let waited = 0; clock.pending <= after && waited < 2000; waited += 2) await new Promise((r) => setTimeout(r, 2));
      return true;
    },
  };
}

describe('identity from the control plane CA, over HTTPS', () => {
  let dir: string;
  let clock: ManualClock;
  let ca: CA;
  let server: Server;
  let port: number;
  const seenTokens: string[] = [];

  const startServer = async (listenPort = 0) => {
    const handler = createCertificateHandler({
      ca,
      verifier: { verify: async (t) => (seenTokens.push(t), staticTokenVerifier({ t1: { namespace: 'default', serviceAccount: 'pod-a' }, t2: { namespace: 'default', serviceAccount: 'pod-a' } }).verify(t)) },
      rateLimit: { perClient: { ratePerSec: 1000, burst: 1000 }, global: { ratePerSec: 1000, burst: 1000 } },
    });
    // The serving certificate must be valid in real time (the client's TLS checks it so): same root, real clock.
    const serving = await (await createCA({ trustDomain: TD, root: ca.root })).issueServing(['localhost']);
    server = createServer({ cert: serving.certChain.join(''), key: serving.keyPem }, handler);
    await new Promise<void>((r) => server.listen(listenPort, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
  };
  const stopServer = async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tsmesh-id-'));
    clock = new ManualClock(Date.now());
    // The CA shares the manual clock: validity periods follow the test's time.
    ca = await createCA({ trustDomain: TD, now: () => clock.now(), leafTtlMs: 30 * 60_000 });
    writeFileSync(join(dir, 'token'), 't1\n');
    writeFileSync(join(dir, 'ca.crt'), ca.trustAnchors.join(''));
    await startServer();
  });
  after(async () => {
    await stopServer().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  });

  test('gets a certificate before ready, rotates at 2/3 of its life, keeps serving through a CA outage longer than that, then expires', async () => {
    const { log, lines } = capture();
    const registry = new Registry();
    const c = counted(httpsCertificateFetch({ controlPlane: `https://localhost:${port}`, tokenFile: join(dir, 'token'), caFile: join(dir, 'ca.crt') }));
    const p = createCAIdentityProvider({ trustDomain: TD, namespace: 'default', serviceAccount: 'pod-a', fetchCertificate: c.fetch, clock, log, registry, random: () => 0.5 });
    assert.throws(() => p.current(), IdentityNotReadyError);
    const first = await p.ready;
    assert.equal(first.spiffeId, ID_A);
    assert.equal(p.current(), first);
    assert.deepEqual(seenTokens, ['t1'], 'the projected token was sent');
    assert.match(await registry.metrics(), /tsmesh_certificate_expiry_seconds 1[78]\d\d/);

    // Rotation is due at 2/3 of the lifetime (notBefore is backdated 60 s).
    const life = first.notAfter.getTime() - first.notBefore.getTime();
    assert.equal(clock.nextAt, first.notBefore.getTime() + Math.round(life * (2 / 3)));
    writeFileSync(join(dir, 'token'), 't2\n'); // the kubelet refreshed the token
    const updated = once(p, 'update');
    await c.step(clock);
    const [second] = (await updated) as [Identity];
    assert.notEqual(second.certChainPem, first.certChainPem);
    assert.notEqual(second.keyPem, first.keyPem, 'a fresh key for each certificate');
    assert.equal(seenTokens.at(-1), 't2', 'the token is read again for each request');
    assert.ok(lines.some((l) => l.msg === 'workload certificate rotated'));

    // The CA goes away; the rotation time passes, and much more.
    await stopServer();
    const before = c.calls.length;
    let expired = false;
    p.on('expired', () => (expired = true));
    while ((clock.nextAt ?? Infinity) < second.notAfter.getTime() - 60_000) await c.step(clock);
    assert.ok(clock.now() > second.notBefore.getTime() + life * (2 / 3 + 1 / 4), 'well past the rotation time');
    assert.ok(c.calls.length - before >= 8, `retried ${c.calls.length - before} times`);
    assert.equal(p.current(), second, 'still serving with the current certificate');
    assert.equal(expired, false);
    const warns = lines.filter((l) => l.msg === 'cannot renew the workload certificate; still serving with the current one');
    assert.ok(warns.length >= 8);
    assert.match(String(warns[0]!.reason), /cannot reach the CA at https:\/\/localhost:\d+: connect ECONNREFUSED/);
    // backoff grows and is capped (random()=0.5: 3/4 of each step), and tightens as expiry nears
    const waits = warns.map((w) => Number(w.retryInMs));
    assert.deepEqual(waits.slice(0, 4), [750, 1500, 3000, 6000]);
    assert.ok(Math.max(...waits) <= 45_000);

    // The CA is back on the same address before expiry: the next retry renews.
    await startServer(port);
    const renewed = once(p, 'update');
    for (let n = 0; n < 5 && p.current() === second; n++) await c.step(clock);
    const [third] = (await renewed) as [Identity];
    assert.ok(third.notAfter > second.notAfter);
    assert.equal(expired, false);

    // Down again until the certificate expires: 'expired' is emitted, the gauge goes negative.
    await stopServer();
    while (!expired && (await c.step(clock)));
    assert.equal(expired, true);
    assert.ok(clock.now() >= third.notAfter.getTime());
    assert.match(await registry.metrics(), /tsmesh_certificate_expiry_seconds -?\d/);
    assert.ok(lines.some((l) => l.level === 'error' && /expired/.test(l.msg)));
    assert.ok(clock.pending >= 1, 'and it keeps trying');
    p.close();
    assert.equal(clock.pending, 0, 'close cancels the timers');
  });

  test('before the first certificate, failures back off with jitter and ready waits', async () => {
    const fails: string[] = [];
    const clock2 = new ManualClock(Date.now());
    const c = counted(async () => {
      fails.push('x');
      throw new Error('CA unreachable');
    });
    let r = 0;
    const p = createCAIdentityProvider({ trustDomain: TD, namespace: 'default', serviceAccount: 'pod-a', fetchCertificate: c.fetch, clock: clock2, random: () => [0, 0.99][r++ % 2]! });
    let ready = false;
    p.ready.then(() => (ready = true), () => {});
    await c.settle(clock2);
    for (let i = 0; i < 12; i++) await c.step(clock2);
    assert.equal(ready, false);
    assert.ok(fails.length >= 12);
    assert.ok((clock2.nextAt ?? 0) - clock2.now() <= 60_000, 'capped at a minute');
    p.close();
    await assert.rejects(p.ready, IdentityNotReadyError);
  });

  test('a CA answer that does not fit (another key, garbage, the anchors of another CA) is refused and retried', async () => {
    const clock3 = new ManualClock(Date.now());
    const { log, lines } = capture();
    const ca = await createCA({ trustDomain: TD }); // its own, on the real clock
    const other = await generateP256();
    const otherAnchors = (await createCA({ trustDomain: TD })).trustAnchors;
    const answers: CertificateFetch[] = [
      async () => ca.issue(await createCsr(other), { namespace: 'default', serviceAccount: 'pod-a' }),
      async () => ({ certChain: ['not a certificate'], trustAnchors: ca.trustAnchors }),
      async (csr) => ({ certChain: (await ca.issue(csr, { namespace: 'default', serviceAccount: 'pod-a' })).certChain, trustAnchors: otherAnchors }),
      async (csr) => ca.issue(csr, { namespace: 'default', serviceAccount: 'pod-a' }),
    ];
    let i = 0;
    const c = counted((csr) => answers[Math.min(i++, answers.length - 1)]!(csr));
    const p = createCAIdentityProvider({ trustDomain: TD, namespace: 'default', serviceAccount: 'pod-a', fetchCertificate: c.fetch, clock: clock3, log });
    await c.settle(clock3);
    for (let n = 0; !p.isReady && n < 10; n++) await c.step(clock3);
    assert.equal(p.current().spiffeId, ID_A);
    const reasons = lines.filter((l) => l.msg === 'cannot get a workload certificate').map((l) => String(l.reason));
    assert.match(reasons[0]!, /our key does not match the certificate/);
    assert.match(reasons[1]!, /no "CERTIFICATE" PEM block/);
    assert.match(reasons[2]!, /does not chain to the CA's trust anchors/);
    p.close();
  });

  test('createIdentityProvider with an in-process CA (local mode)', async () => {
    const local = await createCA({ trustDomain: 'demo.local' });
    const p = createIdentityProvider(
      { tlsDir: undefined, trustDomain: 'demo.local', podNamespace: 'default', serviceAccount: 'pod-b', controlPlane: 'https://unused.invalid', watchIntervalMs: 1000 },
      { fetchCertificate: (csr) => local.issue(csr, { namespace: 'default', serviceAccount: 'pod-b' }) },
    );
    assert.equal((await p.ready).spiffeId, 'spiffe://demo.local/ns/default/sa/pod-b');
    p.close();
  });
});

describe('identity from a TLS folder (TSMESH_TLS_DIR)', () => {
  let ca: CA;
  let otherCA: CA;
  let dir: string;
  before(async () => {
    ca = await createCA({ trustDomain: TD });
    otherCA = await createCA({ trustDomain: TD });
    dir = mkdtempSync(join(tmpdir(), 'tsmesh-tlsdir-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const pair = async (from: CA, sa: string) => {
    const keys = await generateP256();
    const out = await from.issue(await createCsr(keys), { namespace: 'default', serviceAccount: sa });
    return { cert: out.certChain.join(''), key: await privateKeyToPem(keys.privateKey), ca: from.trustAnchors.join('') };
  };

  test('loads tls.crt/tls.key/ca.crt, follows a Kubernetes-style symlink swap, keeps the last good set on partial or bad updates', async () => {
    const { log, lines } = capture();
    // Kubernetes volume layout: files are symlinks into ..data, which is swapped atomically.
    const write = (version: string, files: Partial<Record<'tls.crt' | 'tls.key' | 'ca.crt', string>>) => {
      mkdirSync(join(dir, version));
      for (const [k, v] of Object.entries(files)) writeFileSync(join(dir, version, k), v);
      symlinkSync(version, join(dir, '..data_tmp'));
      renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
    };
    const a = await pair(ca, 'pod-a');
    write('v1', { 'tls.crt': a.cert, 'tls.key': a.key, 'ca.crt': a.ca });
    for (const f of ['tls.crt', 'tls.key', 'ca.crt']) symlinkSync(join('..data', f), join(dir, f));
    const registry = new Registry();
    const p = createFileIdentityProvider({ dir, log, registry, intervalMs: 50 });
    const first = await p.ready;
    assert.equal(first.spiffeId, ID_A);
    assert.equal(first.keyPem, a.key);
    assert.match(await registry.metrics(), /tsmesh_certificate_expiry_seconds 86\d\d\d/);

    // cert-manager renews: the watcher picks the new set up by itself
    const a2 = await pair(ca, 'pod-a');
    const updated = once(p, 'update');
    write('v2', { 'tls.crt': a2.cert, 'tls.key': a2.key, 'ca.crt': a2.ca });
    const [second] = (await updated) as [Identity];
    assert.equal(second.certChainPem, a2.cert);

    // partial update: a new certificate with the old key -> keep the last good identity
    const a3 = await pair(ca, 'pod-a');
    write('v3', { 'tls.crt': a3.cert, 'tls.key': a2.key, 'ca.crt': a3.ca });
    await p.reload();
    assert.equal(p.current(), second);
    assert.ok(lines.some((l) => l.level === 'warn' && /tls.key does not match the certificate in tls.crt/.test(String(l.reason))));

    // a missing file, a certificate of another CA, garbage: all kept out
    write('v4', { 'tls.crt': a3.cert, 'ca.crt': a3.ca });
    await p.reload();
    assert.equal(p.current(), second);
    assert.ok(lines.some((l) => /cannot read .*tls.key \(ENOENT\)/.test(String(l.reason))));
    const foreign = await pair(otherCA, 'pod-a');
    write('v5', { 'tls.crt': foreign.cert, 'tls.key': foreign.key, 'ca.crt': a.ca });
    await p.reload();
    assert.equal(p.current(), second);
    assert.ok(lines.some((l) => /does not chain to ca.crt/.test(String(l.reason))));
    write('v6', { 'tls.crt': 'garbage', 'tls.key': a3.key, 'ca.crt': a3.ca });
    await p.reload();
    assert.equal(p.current(), second);

    // the complete new set arrives
    const done = once(p, 'update');
    write('v7', { 'tls.crt': a3.cert, 'tls.key': a3.key, 'ca.crt': a3.ca });
    await p.reload();
    await done;
    assert.equal(p.current().certChainPem, a3.cert);
    p.close();
  });

  test('an expired or non-SPIFFE set is never taken; the provider waits for good files', async () => {
    const d = mkdtempSync(join(tmpdir(), 'tsmesh-tlsdir2-'));
    try {
      const { log, lines } = capture();
      const past = await createCA({ trustDomain: TD, root: ca.root, now: () => Date.now() - 48 * 3600_000 });
      const old = await pair(past, 'pod-a');
      writeFileSync(join(d, 'tls.crt'), old.cert);
      writeFileSync(join(d, 'tls.key'), old.key);
      writeFileSync(join(d, 'ca.crt'), old.ca);
      const p = createFileIdentityProvider({ dir: d, log, intervalMs: 50 });
      await p.reload();
      assert.equal(p.isReady, false);
      assert.ok(lines.some((l) => l.level === 'error' && /expired at/.test(String(l.reason))));
      const serving = await ca.issueServing(['pod-a.default.svc']);
      writeFileSync(join(d, 'tls.crt'), serving.certChain.join(''));
      writeFileSync(join(d, 'tls.key'), serving.keyPem);
      await p.reload();
      assert.equal(p.isReady, false);
      assert.ok(lines.some((l) => /exactly one SPIFFE ID \(URI SAN\), found none/.test(String(l.reason))));
      const good = await pair(ca, 'pod-a');
      writeFileSync(join(d, 'tls.key'), good.key);
      writeFileSync(join(d, 'tls.crt'), good.cert);
      assert.equal((await p.ready).spiffeId, ID_A);
      p.close();
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });
});
