// mTLS between sidecars over real TLS (node:tls and openssl s_client): who is refused, SPIFFE ID
// checks, sessions, and certificate rotation under live connections.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as tls from 'node:tls';
import * as net from 'node:net';
import { once } from 'node:events';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCA, type CA } from '../injector/ca/index.ts';
import { createCAIdentityProvider, ManualClock, type IdentityProvider } from '../src/identity/index.ts';
import { createMeshTls, handOver, peerSpiffeId, PeerIdentityError, type PeerRejectedError, type MeshTls, type InboundTlsMode } from '../src/mtls/index.ts';
import { createCsr, generateP256, privateKeyToPem } from '../src/identity/x509.ts';

const TD = 'cluster.local';
const idOf = (ns: string, sa: string) => `spiffe://${TD}/ns/${ns}/sa/${sa}`;

async function identityFrom(ca: CA, namespace: string, serviceAccount: string, clock?: ManualClock): Promise<IdentityProvider> {
  const p = createCAIdentityProvider({
    trustDomain: TD,
    namespace,
    serviceAccount,
    fetchCertificate: (csr) => ca.issue(csr, { namespace, serviceAccount }),
    ...(clock ? { clock } : {}),
  });
  await p.ready;
  return p;
}

/** A raw cert/key pair from `ca` (for clients that are not tsmesh sidecars). */
async function rawPair(ca: CA, ns: string, sa: string): Promise<{ cert: string; key: string }> {
  const keys = await generateP256();
  const out = await ca.issue(await createCsr(keys), { namespace: ns, serviceAccount: sa });
  return { cert: out.certChain.join(''), key: await privateKeyToPem(keys.privateKey) };
}

interface Inbound {
  port: number;
  server: tls.Server;
  secured: tls.TLSSocket[];
  close(): Promise<void>;
}

/** The inbound path as the sidecar runs it: a TCP listener handing sockets to the mesh's TLS server. Echoes with the peer's ID. */
async function inbound(mesh: MeshTls, mode: InboundTlsMode): Promise<Inbound> {
  const secured: tls.TLSSocket[] = [];
  const server = mesh.inboundServer(mode, (s) => {
    secured.push(s);
    const who = peerSpiffeId(s) ?? 'anonymous';
    s.on('data', (d) => s.write(`${who} ${d.toString()}`));
    s.on('error', () => {});
  });
  const tcp = net.createServer((sock) => handOver(server, sock));
  await new Promise<void>((r) => tcp.listen(0, '127.0.0.1', r));
  return {
    port: (tcp.address() as net.AddressInfo).port,
    server,
    secured,
    async close() {
      for (const s of secured) s.destroy();
      await new Promise((r) => tcp.close(r));
      server.close();
    },
  };
}

/** Resolves with the next TLS error of the inbound server matching `pattern` (others, e.g. from earlier clients, are skipped). */
function nextClientError(server: tls.Server, pattern: RegExp): Promise<Error> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      server.off('tlsClientError', on);
      reject(new Error(`no TLS error matching ${pattern} on the server`));
    }, 5000);
    const on = (err: Error) => {
      if (!pattern.test(err.message)) return;
      clearTimeout(timer);
      server.off('tlsClientError', on);
      resolve(err);
    };
    server.on('tlsClientError', on);
  });
}

/** Sends a line and resolves with the answer, or rejects with the connection's error. */
function exchange(socket: tls.TLSSocket, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const go = () => {
      socket.write(text);
      socket.once('data', (d) => resolve(d.toString()));
    };
    socket.once('error', reject);
    socket.once('close', () => reject(new Error('closed without an answer')));
    if ((socket as tls.TLSSocket & { _secureEstablished?: boolean })._secureEstablished) go();
    else socket.once('secureConnect', go);
  });
}

async function failure(socket: tls.TLSSocket, text = 'hello'): Promise<Error> {
  try {
    const answer = await exchange(socket, text);
    assert.fail(`expected the connection to fail, got "${answer}"`);
  } catch (err) {
    return err as Error;
  } finally {
    socket.destroy();
  }
}

function sClient(port: number, args: string[]): Promise<string> {
  return new Promise((resolve) => {
    const p = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-tls1_3', '-alpn', 'tsmesh/1', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    p.stdin.write('ping\n');
    // keep stdin open briefly so the server's post-handshake verdict arrives, then close
    setTimeout(() => p.stdin.end(), 300);
    p.on('close', () => resolve(out));
  });
}

describe('mTLS between sidecars', () => {
  let ca: CA;
  let otherCA: CA;
  let a: IdentityProvider;
  let b: IdentityProvider;
  let meshA: MeshTls;
  let meshB: MeshTls;
  let strictB: Inbound;
  let dir: string;

  before(async () => {
    ca = await createCA({ trustDomain: TD });
    otherCA = await createCA({ trustDomain: TD });
    a = await identityFrom(ca, 'default', 'pod-a');
    b = await identityFrom(ca, 'default', 'pod-b');
    meshA = createMeshTls(a);
    meshB = createMeshTls(b);
    strictB = await inbound(meshB, 'strict');
    dir = mkdtempSync(join(tmpdir(), 'tsmesh-mtls-'));
    writeFileSync(join(dir, 'root.pem'), ca.trustAnchors[0]!);
    const pair = await rawPair(ca, 'default', 'pod-a');
    writeFileSync(join(dir, 'a.crt'), pair.cert);
    writeFileSync(join(dir, 'a.key'), pair.key);
  });
  after(async () => {
    await strictB.close();
    for (const x of [meshA, meshB]) x.close();
    for (const x of [a, b]) x.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('A reaches B: TLS 1.3, ALPN tsmesh/1, each side sees the other\'s SPIFFE ID', async () => {
    const s = meshA.connect({ host: '127.0.0.1', port: strictB.port, spiffeId: idOf('default', 'pod-b') });
    assert.equal(await exchange(s, 'hi'), `${idOf('default', 'pod-a')} hi`);
    assert.equal(s.getProtocol(), 'TLSv1.3');
    assert.equal(s.alpnProtocol, 'tsmesh/1');
    assert.equal(peerSpiffeId(s), idOf('default', 'pod-b'));
    s.destroy();
  });

  test('a strict server refuses a client without a certificate (node:tls and openssl s_client)', async () => {
    const before = strictB.secured.length;
    const refused = nextClientError(strictB.server, /refused: no client certificate/);
    const s = tls.connect({ host: '127.0.0.1', port: strictB.port, ca: ca.trustAnchors[0]!, ALPNProtocols: ['tsmesh/1'], checkServerIdentity: () => undefined });
    await failure(s);
    assert.equal(((await refused) as PeerRejectedError).reason, 'NO_CERTIFICATE');
    assert.equal(strictB.secured.length, before, 'no connection reached the app side');

    const refusedAgain = nextClientError(strictB.server, /refused: no client certificate/);
    const out = await sClient(strictB.port, ['-CAfile', join(dir, 'root.pem')]);
    await refusedAgain;
    assert.match(out, /Verify return code: 0 \(ok\)/, 'openssl trusted the server');
    assert.doesNotMatch(out, /ping/, 'and got no answer');
    assert.equal(strictB.secured.length, before);
    // the same openssl client with a certificate from the mesh CA is let in and gets an answer
    const ok = await sClient(strictB.port, ['-CAfile', join(dir, 'root.pem'), '-cert', join(dir, 'a.crt'), '-key', join(dir, 'a.key')]);
    assert.match(ok, /spiffe:\/\/cluster.local\/ns\/default\/sa\/pod-a ping/);
    assert.match(ok, /ALPN protocol: tsmesh\/1/);
  });

  test('a certificate from another CA is refused', async () => {
    const foreign = await rawPair(otherCA, 'default', 'pod-a');
    const refused = nextClientError(strictB.server, /refused/);
    const before = strictB.secured.length;
    const s = tls.connect({ host: '127.0.0.1', port: strictB.port, ca: ca.trustAnchors[0]!, cert: foreign.cert, key: foreign.key, checkServerIdentity: () => undefined });
    await failure(s);
    const err = (await refused) as PeerRejectedError;
    assert.match(err.message, /does not verify against the mesh trust anchors/);
    assert.match(err.reason, /^UNABLE_TO_(GET_ISSUER_CERT(_LOCALLY)?|VERIFY_LEAF_SIGNATURE)$/);
    assert.equal(strictB.secured.length, before);
    // and a sidecar of the other mesh does not accept B's certificate either
    const c = await identityFrom(otherCA, 'default', 'pod-a');
    const meshC = createMeshTls(c);
    const clientErr = await failure(meshC.connect({ host: '127.0.0.1', port: strictB.port, spiffeId: idOf('default', 'pod-b') }));
    assert.match(String((clientErr as NodeJS.ErrnoException).code), /UNABLE_TO_GET_ISSUER_CERT|UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT_IN_CHAIN/);
    meshC.close();
    c.close();
  });

  test('an expired certificate is refused, on either side', async () => {
    const past = await createCA({ trustDomain: TD, root: ca.root, now: () => Date.now() - 48 * 3600_000 });
    const expired = await rawPair(past, 'default', 'pod-a');
    const refused = nextClientError(strictB.server, /\(CERT_HAS_EXPIRED\)/);
    const s = tls.connect({ host: '127.0.0.1', port: strictB.port, ca: ca.trustAnchors[0]!, cert: expired.cert, key: expired.key, checkServerIdentity: () => undefined });
    await failure(s);
    await refused;
    // a server presenting an expired certificate: the client refuses it
    const srv = tls.createServer({ cert: expired.cert, key: expired.key, minVersion: 'TLSv1.3' }, (x) => x.end());
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    try {
      const err = await failure(meshA.connect({ host: '127.0.0.1', port: (srv.address() as net.AddressInfo).port, spiffeId: idOf('default', 'pod-a') }));
      assert.equal((err as NodeJS.ErrnoException).code, 'CERT_HAS_EXPIRED');
    } finally {
      srv.close();
    }
  });

  test('a certificate of the mesh CA without a SPIFFE ID is refused as a client certificate', async () => {
    const serving = await ca.issueServing(['localhost']);
    const refused = nextClientError(strictB.server, /refused/);
    const before = strictB.secured.length;
    await failure(tls.connect({ host: '127.0.0.1', port: strictB.port, ca: ca.trustAnchors[0]!, cert: serving.certChain.join(''), key: serving.keyPem, checkServerIdentity: () => undefined }));
    // serverAuth-only: OpenSSL finds the purpose wrong; either way it is no workload identity
    assert.match(((await refused) as PeerRejectedError).reason, /INVALID_PURPOSE|UNSUPPORTED_CERTIFICATE_PURPOSE|NO_SPIFFE_ID/);
    assert.equal(strictB.secured.length, before);
  });

  test('a client expecting SPIFFE ID X refuses a server presenting Y, with a clear error', async () => {
    const before = strictB.secured.length;
    const err = await failure(meshA.connect({ host: '127.0.0.1', port: strictB.port, spiffeId: idOf('default', 'pod-c') }));
    assert.ok(err instanceof PeerIdentityError, String(err));
    assert.equal(err.code, 'ERR_TSMESH_PEER_IDENTITY');
    assert.equal(err.message, `the server at 127.0.0.1:${strictB.port} presented ${idOf('default', 'pod-b')}, expected ${idOf('default', 'pod-c')}`);
    assert.ok(strictB.secured.length <= before + 1);
    // the host name does not matter: a certificate for "localhost" is no SPIFFE ID
    const serving = await ca.issueServing(['localhost', '127.0.0.1']);
    const srv = tls.createServer({ cert: serving.certChain.join(''), key: serving.keyPem }, (x) => x.end());
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    try {
      const e2 = await failure(meshA.connect({ host: '127.0.0.1', port: (srv.address() as net.AddressInfo).port, spiffeId: idOf('default', 'pod-b') }));
      assert.match(e2.message, /presented no tsmesh SPIFFE ID, expected/);
    } finally {
      srv.close();
    }
  });

  test('sessions are kept per peer and resumed', async () => {
    const peer = { host: '127.0.0.1', port: strictB.port, spiffeId: idOf('default', 'pod-b') };
    const first = meshA.connect(peer);
    await exchange(first, 'one');
    await new Promise((r) => setTimeout(r, 20)); // the TLS 1.3 ticket follows the handshake
    first.destroy();
    const second = meshA.connect(peer);
    assert.equal(await exchange(second, 'two'), `${idOf('default', 'pod-a')} two`);
    assert.equal(second.isSessionReused(), true);
    assert.equal(peerSpiffeId(second), idOf('default', 'pod-b'), 'the peer identity survives resumption');
    second.destroy();
  });

  test('permissive: a client without a certificate gets through with no identity; a valid one is identified', async () => {
    const perm = await inbound(meshB, 'permissive');
    try {
      const anon = tls.connect({ host: '127.0.0.1', port: perm.port, ca: ca.trustAnchors[0]!, checkServerIdentity: () => undefined });
      assert.equal(await exchange(anon, 'x'), 'anonymous x');
      anon.destroy();
      const foreign = await rawPair(otherCA, 'default', 'pod-a');
      const bad = tls.connect({ host: '127.0.0.1', port: perm.port, ca: ca.trustAnchors[0]!, cert: foreign.cert, key: foreign.key, checkServerIdentity: () => undefined });
      assert.equal(await exchange(bad, 'y'), 'anonymous y', 'an unverifiable certificate is no identity');
      bad.destroy();
      const s = meshA.connect({ host: '127.0.0.1', port: perm.port, spiffeId: idOf('default', 'pod-b') });
      assert.equal(await exchange(s, 'z'), `${idOf('default', 'pod-a')} z`);
      s.destroy();
    } finally {
      await perm.close();
    }
  });
});

describe('rotation under live connections', () => {
  test('a rotated certificate is used for new connections; open and in-flight ones keep working', async () => {
    const ca = await createCA({ trustDomain: TD });
    // Real time (certificates must be valid for real TLS), timers fired at will.
    const clockA = new ManualClock(Date.now);
    const clockB = new ManualClock(Date.now);
    const rotate = async () => {
      const updated = Promise.all([once(a, 'update'), once(b, 'update')]);
      assert.ok(clockA.fireNext() && clockB.fireNext(), 'rotation timers are pending');
      await updated;
    };
    const a = await identityFrom(ca, 'default', 'pod-a', clockA);
    const b = await identityFrom(ca, 'default', 'pod-b', clockB);
    const meshA = createMeshTls(a);
    const meshB = createMeshTls(b);
    const inb = await inbound(meshB, 'strict');
    const peer = { host: '127.0.0.1', port: inb.port, spiffeId: idOf('default', 'pod-b') };
    try {
      const oldB = b.current();
      const oldA = a.current();
      const live = meshA.connect(peer);
      assert.equal(await exchange(live, 'before'), `${idOf('default', 'pod-a')} before`);
      const oldServerSerial = live.getPeerCertificate().serialNumber;

      // Half-way through a transfer on the live connection, both sides rotate (2/3 of 24 h later).
      const inFlight = exchange(live, 'during');
      await rotate();
      assert.equal(await inFlight, `${idOf('default', 'pod-a')} during`);
      assert.notEqual(b.current().certChainPem, oldB.certChainPem);
      assert.notEqual(a.current().keyPem, oldA.keyPem, 'a new key with the new certificate');

      // the open connection keeps going
      assert.equal(await exchange(live, 'after'), `${idOf('default', 'pod-a')} after`);
      assert.equal(live.getPeerCertificate().serialNumber, oldServerSerial, 'the open connection keeps its certificate');

      // new connections use the new certificates on both sides
      const fresh = meshA.connect(peer);
      assert.equal(await exchange(fresh, 'new'), `${idOf('default', 'pod-a')} new`);
      assert.notEqual(fresh.getPeerCertificate().serialNumber, oldServerSerial);
      assert.equal(fresh.isSessionReused(), false, 'sessions of the old certificate are dropped');
      const lastServerSide = inb.secured.at(-1)!;
      const clientCert = lastServerSide.getPeerCertificate();
      assert.equal(`-----BEGIN CERTIFICATE-----\n${clientCert.raw.toString('base64').match(/.{1,64}/g)!.join('\n')}\n-----END CERTIFICATE-----\n`, a.current().certChainPem.split(/(?<=-----END CERTIFICATE-----\n)/)[0]);
      live.destroy();
      fresh.destroy();

      // a burst of connections across another rotation: none fails
      const burst = Array.from({ length: 6 }, (_, i) => exchange(meshA.connect(peer), `c${i}`));
      await rotate();
      const answers = await Promise.all(burst);
      const burst2 = await Promise.all(Array.from({ length: 6 }, (_, i) => exchange(meshA.connect(peer), `d${i}`)));
      assert.deepEqual(answers, Array.from({ length: 6 }, (_, i) => `${idOf('default', 'pod-a')} c${i}`));
      assert.deepEqual(burst2, Array.from({ length: 6 }, (_, i) => `${idOf('default', 'pod-a')} d${i}`));
    } finally {
      await inb.close();
      meshA.close();
      meshB.close();
      a.close();
      b.close();
    }
  });
});
