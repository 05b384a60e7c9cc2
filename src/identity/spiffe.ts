// SPIFFE IDs as tsmesh uses them: spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>
// (DESIGN.md, "Identity"). Shared by the CA (which writes them) and the sidecar (which checks them).

export interface WorkloadIdentity {
  readonly trustDomain: string;
  readonly namespace: string;
  readonly serviceAccount: string;
}

const TRUST_DOMAIN = /^[a-z0-9._-]+$/;
// Kubernetes names: namespaces are DNS labels, service accounts DNS subdomains.
const K8S_NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

export function isTrustDomain(text: string): boolean {
  return text.length > 0 && text.length <= 255 && TRUST_DOMAIN.test(text);
}

export function spiffeIdOf(id: WorkloadIdentity): string {
  return `spiffe://${id.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}`;
}

/**
 * Parses a tsmesh SPIFFE ID; returns null for anything else (another path shape, another
 * scheme, a query or fragment). The trust domain is lower-cased (SPIFFE: case-insensitive).
 */
export function parseSpiffeId(uri: string): WorkloadIdentity | null {
  const m = /^spiffe:\/\/([^/?#]+)\/ns\/([^/?#]+)\/sa\/([^/?#]+)$/i.exec(uri);
  if (!m) return null;
  const trustDomain = m[1]!.toLowerCase();
  const [namespace, serviceAccount] = [m[2]!, m[3]!];
  if (!isTrustDomain(trustDomain) || !K8S_NAME.test(namespace) || !K8S_NAME.test(serviceAccount)) return null;
  return { trustDomain, namespace, serviceAccount };
}

/** `system:serviceaccount:NS:SA` (a TokenReview username) -> { namespace, serviceAccount }, else null. */
export function serviceAccountOfUsername(username: string): { namespace: string; serviceAccount: string } | null {
  const m = /^system:serviceaccount:([^:]+):([^:]+)$/.exec(username);
  if (!m || !K8S_NAME.test(m[1]!) || !K8S_NAME.test(m[2]!)) return null;
  return { namespace: m[1]!, serviceAccount: m[2]! };
}
