// The control plane's HTTPS certificate is issued by the mesh CA (../ca), so one root serves
// both of its clients: the API server trusts it through the webhook's caBundle (the mesh trust
// anchors) and sidecars through /etc/tsmesh/trust/ca.crt (the same anchors). This file judges
// stored material: is it ours, for the right names, and how long may it be served?
import { createPrivateKey, X509Certificate } from 'node:crypto';

/** 30 days, renewed when a third is left: ten days for an API outage to be noticed. */
export const SERVING_TTL_MS = 30 * 24 * 3600_000;

/** The names clients use to reach `service` in `namespace`. */
export function serviceDnsNames(service: string, namespace: string): string[] {
  return [`${service}.${namespace}.svc`, `${service}.${namespace}.svc.cluster.local`, `${service}.${namespace}`, service];
}

export interface ServingMaterial {
  readonly cert: string; // PEM: the leaf, then any intermediates
  readonly key: string; // PEM
}

export type ServingCheck = { readonly state: 'good'; readonly renewAt: number } | { readonly state: 'renew'; readonly reason: string };

const firstCert = (pem: string): X509Certificate => new X509Certificate(pem.slice(0, pem.indexOf('-----END CERTIFICATE-----') + 25));

/**
 * Is stored material usable at `now`: a readable pair, signed by `signerPem` (the CA's signing
 * certificate, first in its chain), naming every one of `dnsNames`, and before its renewal
 * point (a third of its lifetime left)?
 */
export function checkServing(m: Partial<ServingMaterial>, o: { signerPem: string; dnsNames: readonly string[]; now: number }): ServingCheck {
  if (!m.cert || !m.key) return { state: 'renew', reason: 'no serving certificate or key' };
  let leaf: X509Certificate;
  try {
    leaf = firstCert(m.cert);
  } catch {
    return { state: 'renew', reason: 'the serving certificate is not readable PEM' };
  }
  try {
    if (!leaf.checkPrivateKey(createPrivateKey(m.key))) return { state: 'renew', reason: 'the key does not match the serving certificate' };
  } catch {
    return { state: 'renew', reason: 'the serving key is not a readable PEM private key' };
  }
  const signer = firstCert(o.signerPem);
  if (!leaf.checkIssued(signer) || !leaf.verify(signer.publicKey)) return { state: 'renew', reason: `the serving certificate was not issued by the mesh CA (issuer "${leaf.issuer.replace(/\n/g, ', ')}")` };
  const missing = o.dnsNames.filter((n) => leaf.checkHost(n) === undefined);
  if (missing.length) return { state: 'renew', reason: `the serving certificate does not name ${missing.join(', ')}` };
  const notBefore = leaf.validFromDate.getTime();
  const notAfter = leaf.validToDate.getTime();
  const renewAt = notAfter - (notAfter - notBefore) / 3;
  if (o.now >= renewAt) return { state: 'renew', reason: `the serving certificate expires at ${leaf.validToDate.toISOString()}` };
  return { state: 'good', renewAt };
}

/**
 * Why sidecars would refuse `certPem` (a chain, leaf first) when they trust `anchorsPem`, or
 * undefined when it chains to one of the anchors. For a user-supplied serving certificate.
 */
export function untrustedBy(certPem: string, anchorsPem: string): string | undefined {
  const split = (pem: string): X509Certificate[] => (pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map((p) => new X509Certificate(p));
  const chain = split(certPem);
  const anchors = split(anchorsPem);
  if (chain.length === 0) return 'no certificate';
  const top = chain[chain.length - 1]!;
  for (let i = 0; i + 1 < chain.length; i++) {
    if (!chain[i]!.checkIssued(chain[i + 1]!) || !chain[i]!.verify(chain[i + 1]!.publicKey)) return `certificate ${i + 1} of the chain is not signed by certificate ${i + 2}`;
  }
  if (anchors.some((a) => a.fingerprint256 === top.fingerprint256 || (top.checkIssued(a) && top.verify(a.publicKey)))) return undefined;
  return `its issuer "${top.issuer.replace(/\n/g, ', ')}" is not among the mesh trust anchors`;
}
