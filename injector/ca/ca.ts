// The identity CA: signs workload certificates whose only identity is a SPIFFE ID.
// Usable in-process (`createCA`, the embedded mode of the local demo and the tests) and behind
// POST /v1/certificate (./handler.ts). The caller decides the identity (from a verified token);
// nothing the CSR asks for beyond its public key is ever copied into the certificate.
import { createPrivateKey, createPublicKey, randomBytes } from 'node:crypto';
import {
  ECDSA_SHA256,
  OID,
  extensionOf,
  type CryptoKey,
  describeKey,
  describeSans,
  generateP256,
  importP256PrivateKey,
  parseCertificates,
  privateKeyToPem,
  x509,
} from '../../src/identity/x509.ts';
import { isTrustDomain, spiffeIdOf } from '../../src/identity/spiffe.ts';
import { CAError } from './errors.ts';

export const DEFAULTS = {
  leafTtlMs: 24 * 3_600_000, // DESIGN.md: leaf certificates 24 h
  backdateMs: 60_000, // notBefore one minute back, for clocks a little behind ours
  rootTtlMs: 10 * 365 * 24 * 3_600_000,
} as const;

export interface RootMaterial {
  /** PEM: the signing CA certificate, optionally followed by its own chain (intermediate -> root). */
  readonly cert: string;
  /** PEM: its PKCS#8 EC P-256 private key. */
  readonly key: string;
  /** PEM: the trust anchor(s) to publish; default: the last certificate of `cert`. */
  readonly ca?: string;
}

export interface CAOptions {
  readonly trustDomain: string;
  /** The CA's own certificate and key; a new self-signed P-256 root is made when absent. */
  readonly root?: RootMaterial;
  readonly leafTtlMs?: number;
  readonly backdateMs?: number;
  /** Clock for validity periods (tests pass one in the past to make expired certificates). */
  readonly now?: () => number;
}

export interface IssuedCertificate {
  /** [leaf, ...intermediates], PEM each. */
  readonly certChain: string[];
  readonly trustAnchors: string[];
  /** notAfter of the leaf, ISO 8601. */
  readonly expiresAt: string;
  readonly spiffeId: string;
  /** What the CSR asked for that the certificate does not carry (subject, SANs), for logs and the response. */
  readonly ignored: string[];
}

export interface CA {
  readonly trustDomain: string;
  /** The trust anchors pods mount (ConfigMap tsmesh-trust-anchor, key ca.crt), PEM each. */
  readonly trustAnchors: readonly string[];
  /** The signing material, as stored in the Secret tsmesh-ca (tls.crt, tls.key, ca.crt). */
  readonly root: Required<RootMaterial>;
  /** Signs `csrPem` for the workload identity (namespace, service account) the caller verified. */
  issue(csrPem: string, identity: { namespace: string; serviceAccount: string }): Promise<IssuedCertificate>;
  /** A TLS server certificate for DNS names (the control plane's own HTTPS endpoint). */
  issueServing(dnsNames: readonly string[], ttlMs?: number): Promise<{ certChain: string[]; keyPem: string }>;
}

const pem = (c: x509.X509Certificate): string => `${c.toString('pem').trim()}\n`;

function randomSerial(): string {
  const b = randomBytes(16);
  b[0] = b[0]! & 0x7f; // a positive INTEGER
  if (b[0] === 0) b[0] = 1; // and no leading zero octet
  return b.toString('hex');
}

/** A new self-signed P-256 root for `trustDomain`. */
export async function generateRoot(options: { trustDomain: string; ttlMs?: number; now?: () => number }): Promise<Required<RootMaterial>> {
  const keys = await generateP256(true);
  const now = options.now?.() ?? Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: [{ O: ['tsmesh'] }, { CN: [`tsmesh root CA ${options.trustDomain}`] }],
    notBefore: new Date(now - DEFAULTS.backdateMs),
    notAfter: new Date(now + (options.ttlMs ?? DEFAULTS.rootTtlMs)),
    keys,
    signingAlgorithm: ECDSA_SHA256,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { cert: pem(cert), key: await privateKeyToPem(keys.privateKey), ca: pem(cert) };
}

/** Checks supplied root material; throws an Error saying what is wrong with it. */
async function loadRoot(root: RootMaterial, now: number): Promise<{ chain: x509.X509Certificate[]; anchors: x509.X509Certificate[]; key: CryptoKey }> {
  let chain: x509.X509Certificate[];
  try {
    chain = parseCertificates(root.cert);
  } catch (err) {
    throw new Error(`CA certificate (tls.crt): ${(err as Error).message}`, { cause: err });
  }
  const signer = chain[0]!;
  const bc = extensionOf(signer, OID.basicConstraints, x509.BasicConstraintsExtension);
  if (!bc?.ca) throw new Error(`CA certificate (tls.crt) "${signer.subject}" is not a CA certificate (basicConstraints CA:TRUE missing)`);
  const ku = extensionOf(signer, OID.keyUsage, x509.KeyUsagesExtension);
  if (ku && !(ku.usages & x509.KeyUsageFlags.keyCertSign)) throw new Error(`CA certificate (tls.crt) "${signer.subject}" may not sign certificates (keyUsage lacks keyCertSign)`);
  if (signer.notAfter.getTime() <= now) throw new Error(`CA certificate (tls.crt) "${signer.subject}" expired at ${signer.notAfter.toISOString()}`);
  if (!describeKey(signer.publicKey).ecP256) throw new Error(`CA certificate (tls.crt) has a ${describeKey(signer.publicKey).text} key; tsmesh signs with EC P-256 only`);
  let key: CryptoKey;
  try {
    key = await importP256PrivateKey(root.key);
  } catch (err) {
    throw new Error(`CA key (tls.key): ${(err as Error).message}`, { cause: err });
  }
  // The key must belong to the certificate: compare the public halves.
  const spki = createPublicKey(createPrivateKey(root.key)).export({ type: 'spki', format: 'der' });
  if (!Buffer.from(signer.publicKey.rawData).equals(spki)) throw new Error('CA key (tls.key) does not match the CA certificate (tls.crt)');
  let anchors: x509.X509Certificate[];
  try {
    anchors = root.ca ? parseCertificates(root.ca) : [chain[chain.length - 1]!];
  } catch (err) {
    throw new Error(`trust anchor (ca.crt): ${(err as Error).message}`, { cause: err });
  }
  return { chain, anchors, key };
}

export async function createCA(options: CAOptions): Promise<CA> {
  const trustDomain = options.trustDomain.toLowerCase();
  if (!isTrustDomain(trustDomain)) throw new Error(`trust domain "${options.trustDomain}" is not valid (lower-case letters, digits, ".", "-", "_")`);
  const now = options.now ?? Date.now;
  const leafTtlMs = options.leafTtlMs ?? DEFAULTS.leafTtlMs;
  const backdateMs = options.backdateMs ?? DEFAULTS.backdateMs;
  if (!(leafTtlMs > 0)) throw new Error(`leaf certificate lifetime must be positive, got ${leafTtlMs} ms`);

  const material = options.root ?? (await generateRoot({ trustDomain, now }));
  const { chain, anchors, key: signingKey } = await loadRoot(material, now());
  const signer = chain[0]!;
  const anchorPems = anchors.map(pem);
  // Intermediates sent with each leaf: the signer and whatever of its chain is not an anchor.
  const anchorThumbs = new Set(anchorPems);
  const intermediates = chain.map(pem).filter((p) => !anchorThumbs.has(p));
  const aki = await x509.AuthorityKeyIdentifierExtension.create(signer.publicKey);

  async function sign(publicKey: x509.PublicKey, ttlMs: number, extensions: x509.Extension[]): Promise<x509.X509Certificate> {
    const t = now();
    const notAfter = Math.min(t + ttlMs, signer.notAfter.getTime()); // never outlive the CA
    return x509.X509CertificateGenerator.create({
      serialNumber: randomSerial(),
      subject: '',
      issuer: signer.subjectName,
      notBefore: new Date(t - backdateMs),
      notAfter: new Date(notAfter),
      publicKey,
      signingKey,
      signingAlgorithm: ECDSA_SHA256,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        aki,
        await x509.SubjectKeyIdentifierExtension.create(publicKey),
        ...extensions,
      ],
    });
  }

  return {
    trustDomain,
    trustAnchors: anchorPems,
    root: { cert: material.cert, key: material.key, ca: anchorPems.join('') },

    async issue(csrPem, identity) {
      const csr = parseCsr(csrPem);
      const keyInfo = describeKey(csr.publicKey);
      if (!keyInfo.ecP256) {
        throw new CAError('TSMESH_CA_CSR_KEY_UNSUPPORTED', `the CSR's key is ${keyInfo.text}; tsmesh issues certificates only for EC P-256 keys`);
      }
      const valid = await csr.verify().catch(() => false);
      if (!valid) throw new CAError('TSMESH_CA_CSR_SIGNATURE', "the CSR's signature does not verify with the key it carries");

      const spiffeId = spiffeIdOf({ trustDomain, ...identity });
      const ignored: string[] = [];
      if (csr.subject) ignored.push(`subject "${csr.subject}"`);
      const sans = describeSans(csr).filter((s) => s !== `URL:${spiffeId}`);
      if (sans.length) ignored.push(`subjectAltName ${sans.join(', ')}`);

      const leaf = await sign(csr.publicKey, leafTtlMs, [
        // The subject is empty, so the SAN is critical (RFC 5280 4.2.1.6); it is the only identity.
        new x509.SubjectAlternativeNameExtension([{ type: 'url', value: spiffeId }], true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
      ]);
      return {
        certChain: [pem(leaf), ...intermediates],
        trustAnchors: [...anchorPems],
        expiresAt: leaf.notAfter.toISOString(),
        spiffeId,
        ignored,
      };
    },

    async issueServing(dnsNames, ttlMs = leafTtlMs) {
      if (dnsNames.length === 0) throw new Error('a serving certificate needs at least one DNS name');
      const keys = await generateP256(true);
      const publicKey = await x509.PublicKey.create(keys.publicKey);
      const cert = await sign(publicKey, ttlMs, [
        new x509.SubjectAlternativeNameExtension(dnsNames.map((value) => ({ type: 'dns' as const, value })), true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      ]);
      return { certChain: [pem(cert), ...intermediates], keyPem: await privateKeyToPem(keys.privateKey) };
    },
  };
}

function parseCsr(csrPem: string): x509.Pkcs10CertificateRequest {
  let blocks: { type: string; rawData: ArrayBuffer }[];
  try {
    blocks = x509.PemConverter.decodeWithHeaders(csrPem);
  } catch (err) {
    throw new CAError('TSMESH_CA_CSR_INVALID', `"csr" is not PEM: ${(err as Error).message}`, { cause: err });
  }
  const requests = blocks.filter((b) => b.type === 'CERTIFICATE REQUEST' || b.type === 'NEW CERTIFICATE REQUEST');
  if (requests.length !== 1) {
    const found = blocks.map((b) => `"${b.type}"`).join(', ') || 'no PEM block';
    throw new CAError('TSMESH_CA_CSR_INVALID', `"csr" must hold exactly one "CERTIFICATE REQUEST" PEM block; found ${found}`);
  }
  try {
    return new x509.Pkcs10CertificateRequest(requests[0]!.rawData);
  } catch (err) {
    throw new CAError('TSMESH_CA_CSR_INVALID', `"csr" is not a readable PKCS#10 certificate request: ${(err as Error).message}`, { cause: err });
  }
}
