// Reading certificates on the sidecar's path with node:crypto alone (its X509Certificate):
// PEM bundles, validity, URI SANs. @peculiar/x509 (./x509.ts), with its ASN.1 stack and a
// Reflect polyfill (~18 MiB of RSS), is loaded only where something is built: CSRs, the CA.
import { X509Certificate } from 'node:crypto';

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g;

/** All certificates in a PEM bundle, in order. Throws when there is none or one cannot be read. */
export function readCertificates(pem: string): X509Certificate[] {
  const blocks = pem.match(PEM_CERTIFICATE) ?? [];
  if (blocks.length === 0) throw new Error('no "CERTIFICATE" PEM block found');
  return blocks.map((block, i) => {
    try {
      return new X509Certificate(block);
    } catch (err) {
      throw new Error(`certificate ${i + 1} cannot be read (${(err as Error).message})`, { cause: err });
    }
  });
}

// One entry of Node's subjectAltName ("URI:spiffe://..., DNS:a"): a value with a comma, a quote
// or another special character comes as a JSON string.
const SAN_ENTRY = /([A-Za-z ]+):("(?:[^"\\]|\\.)*"|[^,]*)(?:, |$)/y;

/** The URI SANs of a certificate, in order. */
export function certificateUris(cert: X509Certificate): string[] {
  const text = cert.subjectAltName;
  if (!text) return [];
  const uris: string[] = [];
  SAN_ENTRY.lastIndex = 0;
  for (let m = SAN_ENTRY.exec(text); m && m[0] !== ''; m = SAN_ENTRY.exec(text)) {
    if (m[1] === 'URI') uris.push(m[2]!.startsWith('"') ? (JSON.parse(m[2]!) as string) : m[2]!);
  }
  return uris;
}
