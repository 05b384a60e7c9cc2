// The webhook's serving certificate, made by the injector itself (no cert-manager, no manual
// step): a self-signed P-256 CA, kept for 10 years, and a serving certificate for the
// Service's DNS names signed by it, renewed when a third of its year is left. The CA is what
// the MutatingWebhookConfiguration's caBundle trusts, so renewing the serving certificate
// does not touch the caBundle.
import { createPrivateKey, createPublicKey, randomBytes } from 'node:crypto';
import { x509, generateP256, privateKeyToPem, importP256PrivateKey, parseCertificates, ECDSA_SHA256, OID, extensionOf } from '../../src/identity/x509.ts';

export interface ServingMaterial {
  readonly caCert: string; // PEM: the caBundle
  readonly caKey: string; // PEM PKCS#8
  readonly cert: string; // PEM: the serving certificate
  readonly key: string; // PEM PKCS#8
}

export const CA_TTL_MS = 10 * 365 * 24 * 3600_000;
export const SERVING_TTL_MS = 365 * 24 * 3600_000;
const BACKDATE_MS = 5 * 60_000; // clock skew between nodes

/** The names the API server uses to reach `service` in `namespace`. */
export function serviceDnsNames(service: string, namespace: string): string[] {
  return [`${service}.${namespace}.svc`, `${service}.${namespace}.svc.cluster.local`, `${service}.${namespace}`, service];
}

const pem = (c: x509.X509Certificate): string => `${c.toString('pem').trim()}\n`;

function serial(): string {
  const b = randomBytes(16);
  b[0] = (b[0]! & 0x7f) | 0x01;
  return b.toString('hex');
}

export async function generateServingMaterial(options: { dnsNames: readonly string[]; now?: number; caTtlMs?: number; servingTtlMs?: number }): Promise<ServingMaterial> {
  const now = options.now ?? Date.now();
  const keys = await generateP256(true);
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: [{ O: ['tsmesh'] }, { CN: ['tsmesh injector webhook CA'] }],
    notBefore: new Date(now - BACKDATE_MS),
    notAfter: new Date(now + (options.caTtlMs ?? CA_TTL_MS)),
    keys,
    signingAlgorithm: ECDSA_SHA256,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const caKey = await privateKeyToPem(keys.privateKey);
  return { caCert: pem(ca), caKey, ...(await issueServing({ caCert: pem(ca), caKey }, options.dnsNames, now, options.servingTtlMs)) };
}

/** A new serving certificate and key from an existing CA. */
export async function issueServing(ca: { caCert: string; caKey: string }, dnsNames: readonly string[], now = Date.now(), ttlMs = SERVING_TTL_MS): Promise<{ cert: string; key: string }> {
  const [caCert] = parseCertificates(ca.caCert);
  const signingKey = await importP256PrivateKey(ca.caKey);
  const keys = await generateP256(true);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${dnsNames[0] ?? 'tsmesh-injector'}`,
    issuer: caCert!.subjectName,
    notBefore: new Date(now - BACKDATE_MS),
    notAfter: new Date(Math.min(now + ttlMs, caCert!.notAfter.getTime())),
    publicKey: keys.publicKey,
    signingKey,
    signingAlgorithm: ECDSA_SHA256,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(dnsNames.map((value) => ({ type: 'dns' as const, value }))),
      await x509.AuthorityKeyIdentifierExtension.create(caCert!.publicKey),
    ],
  });
  return { cert: pem(cert), key: await privateKeyToPem(keys.privateKey) };
}

export type MaterialCheck =
  | { readonly state: 'good'; readonly renewAt: number }
  | { readonly state: 'renew'; readonly reason: string } // serving certificate only; the CA stays
  | { readonly state: 'replace'; readonly reason: string }; // unusable: a new CA too

/** Is stored material usable for `dnsNames` at `now`, and for how long? */
export function checkMaterial(m: Partial<ServingMaterial>, dnsNames: readonly string[], now = Date.now()): MaterialCheck {
  if (!m.caCert || !m.caKey) return { state: 'replace', reason: 'no CA certificate or key' };
  let ca: x509.X509Certificate;
  try {
    [ca] = parseCertificates(m.caCert) as [x509.X509Certificate];
    keyMatches(ca, m.caKey, 'CA');
  } catch (err) {
    return { state: 'replace', reason: `CA: ${(err as Error).message}` };
  }
  const caLeft = ca.notAfter.getTime() - now;
  if (caLeft < SERVING_TTL_MS / 3) return { state: 'replace', reason: `the CA expires at ${ca.notAfter.toISOString()}` };
  if (!m.cert || !m.key) return { state: 'renew', reason: 'no serving certificate or key' };
  let cert: x509.X509Certificate;
  try {
    [cert] = parseCertificates(m.cert) as [x509.X509Certificate];
    keyMatches(cert, m.key, 'serving');
  } catch (err) {
    return { state: 'renew', reason: `serving certificate: ${(err as Error).message}` };
  }
  if (cert.issuer !== ca.subject) return { state: 'renew', reason: 'the serving certificate was not issued by the stored CA' };
  const san = extensionOf(cert, OID.subjectAltName, x509.SubjectAlternativeNameExtension);
  const names = new Set(san?.names.items.filter((n) => n.type === 'dns').map((n) => n.value) ?? []);
  const missing = dnsNames.filter((n) => !names.has(n));
  if (missing.length) return { state: 'renew', reason: `the serving certificate does not name ${missing.join(', ')}` };
  const lifetime = cert.notAfter.getTime() - cert.notBefore.getTime();
  const renewAt = cert.notAfter.getTime() - lifetime / 3;
  if (now >= renewAt) return { state: 'renew', reason: `the serving certificate expires at ${cert.notAfter.toISOString()}` };
  return { state: 'good', renewAt };
}

function keyMatches(cert: x509.X509Certificate, keyPem: string, what: string): void {
  let spki: Buffer;
  try {
    spki = createPublicKey(createPrivateKey(keyPem)).export({ type: 'spki', format: 'der' });
  } catch (err) {
    throw new Error(`${what} key is not a readable PEM private key`, { cause: err });
  }
  if (!Buffer.from(cert.publicKey.rawData).equals(spki)) throw new Error(`${what} key does not match its certificate`);
}
