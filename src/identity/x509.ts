// Certificates, keys and CSRs with @peculiar/x509 on Node's WebCrypto (no hand-written ASN.1).
// Shared by the CA (injector/ca) and the sidecar's identity provider.
import 'reflect-metadata'; // @peculiar/x509 (tsyringe) needs the Reflect metadata polyfill, loaded first
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as never);

export { x509 };
// WebCrypto types (the project's lib has no DOM types; Node's live under `webcrypto`).
export type CryptoKey = webcrypto.CryptoKey;
export type CryptoKeyPair = webcrypto.CryptoKeyPair;
type EcKeyGenParams = webcrypto.EcKeyGenParams;
type EcdsaParams = webcrypto.EcdsaParams;
type Algorithm = webcrypto.Algorithm;

export const OID = {
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
} as const;

/** The extension `oid` of a certificate or CSR, if it is of class `type` (as @peculiar/x509 decodes it). */
export function extensionOf<T extends x509.Extension>(
  item: { getExtension(oid: string): x509.Extension | null },
  oid: string,
  type: abstract new (...args: never[]) => T,
): T | null {
  const ext = item.getExtension(oid);
  return ext instanceof type ? ext : null;
}

export const P256: EcKeyGenParams = { name: 'ECDSA', namedCurve: 'P-256' };
export const ECDSA_SHA256: EcdsaParams = { name: 'ECDSA', hash: 'SHA-256' };

export function generateP256(extractable = true): Promise<CryptoKeyPair> {
  return webcrypto.subtle.generateKey(P256, extractable, ['sign', 'verify']) as Promise<CryptoKeyPair>;
}

export async function privateKeyToPem(key: CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey('pkcs8', key);
  return x509.PemConverter.encode(der, 'PRIVATE KEY');
}

/** Imports a PKCS#8 P-256 private key ("BEGIN PRIVATE KEY"); throws a clear error otherwise. */
export async function importP256PrivateKey(pem: string): Promise<CryptoKey> {
  let der: ArrayBuffer;
  try {
    const blocks = x509.PemConverter.decodeWithHeaders(pem);
    const block = blocks.find((b) => b.type === 'PRIVATE KEY');
    if (!block) {
      const types = blocks.map((b) => b.type).join(', ') || 'no PEM block';
      throw new Error(`expected a PKCS#8 "PRIVATE KEY" PEM block, found ${types}`);
    }
    der = block.rawData;
  } catch (err) {
    throw new Error(`cannot read the private key: ${(err as Error).message}`, { cause: err });
  }
  try {
    return await webcrypto.subtle.importKey('pkcs8', der, P256, true, ['sign']);
  } catch (err) {
    throw new Error('the private key is not an EC P-256 key in PKCS#8 form', { cause: err });
  }
}

/** All certificates in a PEM bundle, in order. Throws when there is none. */
export function parseCertificates(pem: string): x509.X509Certificate[] {
  const certs = x509.PemConverter.decodeWithHeaders(pem)
    .filter((b) => b.type === 'CERTIFICATE')
    .map((b) => new x509.X509Certificate(b.rawData));
  if (certs.length === 0) throw new Error('no "CERTIFICATE" PEM block found');
  return certs;
}

export function uriSans(cert: x509.X509Certificate | x509.Pkcs10CertificateRequest): string[] {
  const san = extensionOf(cert, OID.subjectAltName, x509.SubjectAlternativeNameExtension);
  return san ? san.names.items.filter((n) => n.type === 'url').map((n) => n.value) : [];
}

/** Every subjectAltName entry as "TYPE:value", for messages. */
export function describeSans(cert: x509.X509Certificate | x509.Pkcs10CertificateRequest): string[] {
  const san = extensionOf(cert, OID.subjectAltName, x509.SubjectAlternativeNameExtension);
  return san ? san.names.items.map((n) => `${n.type.toUpperCase()}:${n.value}`) : [];
}

/** Public keys compared by their SubjectPublicKeyInfo bytes. */
export function samePublicKey(a: x509.PublicKey, b: x509.PublicKey): boolean {
  return Buffer.from(a.rawData).equals(Buffer.from(b.rawData));
}

/** The curve of an EC public key, or the algorithm name ("RSASSA-PKCS1-v1_5 2048") for others. */
export function describeKey(key: x509.PublicKey): { ecP256: boolean; text: string } {
  const alg = key.algorithm as Algorithm & { namedCurve?: string; modulusLength?: number };
  if (alg.name === 'ECDSA' || alg.name === 'ECDH') {
    return { ecP256: alg.namedCurve === 'P-256', text: `EC ${alg.namedCurve ?? 'unknown curve'}` };
  }
  if (/^RSA/i.test(alg.name)) return { ecP256: false, text: `RSA${alg.modulusLength ? ` ${alg.modulusLength}` : ''}` };
  return { ecP256: false, text: alg.name };
}

/** A PKCS#10 request signed by `keys`, asking for the URI SANs given (the CA decides anyway). */
export async function createCsr(keys: CryptoKeyPair, uris: readonly string[] = [], dnsNames: readonly string[] = []): Promise<string> {
  const names = [...uris.map((value) => ({ type: 'url' as const, value })), ...dnsNames.map((value) => ({ type: 'dns' as const, value }))];
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    keys,
    signingAlgorithm: ECDSA_SHA256,
    ...(names.length ? { extensions: [new x509.SubjectAlternativeNameExtension(names)] } : {}),
  });
  return `${csr.toString('pem').trim()}\n`;
}
