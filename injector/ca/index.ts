// The CA's public surface. In a cluster: `startClusterCA` (root from the Secret, trust anchor
// published, TokenReview) returns the `(req, res) => void` handler to mount at POST /v1/certificate;
// `startTrustAnchorSync` keeps the trust anchor in every meshed namespace.
// In-process (local demo, tests): `createCA` + `staticTokenVerifier` + `createCertificateHandler`.
import { AuthenticationV1Api, CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import type { Registry } from 'prom-client';
import type { Logger } from '../../src/log/log.ts';
import { createCA, type CA } from './ca.ts';
import { createCertificateHandler, type CertificateHandler, type CertificateHandlerOptions } from './handler.ts';
import { loadOrCreateRoot, publishTrustAnchor } from './store.ts';
import { tokenReviewVerifier, type TokenVerifier } from './token.ts';

export { createCA, generateRoot, DEFAULTS as CA_DEFAULTS, type CA, type CAOptions, type IssuedCertificate, type RootMaterial } from './ca.ts';
export { createCertificateHandler, CERTIFICATE_PATH, HANDLER_DEFAULTS, type CertificateHandler, type CertificateHandlerOptions } from './handler.ts';
export { tokenReviewVerifier, staticTokenVerifier, TOKEN_AUDIENCE, type TokenVerifier, type VerifiedCaller } from './token.ts';
export { loadOrCreateRoot, publishTrustAnchor, ROOT_SECRET, TRUST_ANCHOR_CONFIGMAP, TRUST_ANCHOR_KEY } from './store.ts';
export { CAError, caCodes, type CACode } from './errors.ts';
export { startTrustAnchorSync, INJECT_LABEL_SELECTOR, type TrustAnchorSync, type TrustAnchorSyncOptions } from './trust-anchors.ts';

export interface ClusterCAOptions {
  readonly kubeConfig: KubeConfig;
  /** The control-plane namespace (holds the Secret and the ConfigMap). */
  readonly namespace: string;
  readonly trustDomain: string;
  readonly leafTtlMs?: number;
  readonly registry?: Registry;
  readonly log?: Logger;
  readonly rateLimit?: CertificateHandlerOptions['rateLimit'];
  readonly maxBodyBytes?: number;
}

/** Loads (or creates) the root, publishes the trust anchor, and builds the POST /v1/certificate handler. */
export async function startClusterCA(options: ClusterCAOptions): Promise<{ ca: CA; verifier: TokenVerifier; handler: CertificateHandler }> {
  const core = options.kubeConfig.makeApiClient(CoreV1Api);
  const log = options.log?.child({ component: 'ca' });
  const { root } = await loadOrCreateRoot({ core, namespace: options.namespace, trustDomain: options.trustDomain, ...(log ? { log } : {}) });
  const ca = await createCA({ trustDomain: options.trustDomain, root, ...(options.leafTtlMs ? { leafTtlMs: options.leafTtlMs } : {}) });
  await publishTrustAnchor({ core, namespace: options.namespace, caPem: ca.trustAnchors.join(''), ...(log ? { log } : {}) });
  const verifier = tokenReviewVerifier({ api: options.kubeConfig.makeApiClient(AuthenticationV1Api) });
  const handler = createCertificateHandler({
    ca,
    verifier,
    ...(options.registry ? { registry: options.registry } : {}),
    ...(log ? { log } : {}),
    ...(options.rateLimit ? { rateLimit: options.rateLimit } : {}),
    ...(options.maxBodyBytes ? { maxBodyBytes: options.maxBodyBytes } : {}),
  });
  return { ca, verifier, handler };
}
