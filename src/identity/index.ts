// The sidecar's identity, chosen from its settings (DESIGN.md "Sidecar settings"):
// TSMESH_TLS_DIR set -> files (cert-manager / SPIRE); otherwise the control plane's CA at
// TSMESH_CONTROL_PLANE. In local mode, pass `fetchCertificate` to use an in-process CA:
//   fetchCertificate: (csr) => ca.issue(csr, { namespace, serviceAccount })   // injector/ca createCA
import type { Registry } from 'prom-client';
import type { Settings } from '../config/settings.ts';
import type { Logger } from '../log/log.ts';
import { createCAIdentityProvider, httpsCertificateFetch, type CertificateFetch } from './ca-source.ts';
import type { Clock } from './clock.ts';
import { createFileIdentityProvider } from './file-source.ts';
import type { IdentityProvider } from './provider.ts';

export type { Identity, IdentityProvider, IdentityEvents } from './provider.ts';
export { IdentityNotReadyError, IdentityInvalidError, makeIdentity, EXPIRY_METRIC } from './provider.ts';
export { createCAIdentityProvider, httpsCertificateFetch, CertificateFetchError, CA_SOURCE_DEFAULTS, type CertificateFetch, type CertificateResponse, type CAIdentityOptions } from './ca-source.ts';
export { createFileIdentityProvider, TLS_FILES, type FileIdentityOptions, type FileIdentityProvider } from './file-source.ts';
export { systemClock, ManualClock, type Clock, type Timer } from './clock.ts';
export { spiffeIdOf, parseSpiffeId, serviceAccountOfUsername, type WorkloadIdentity } from './spiffe.ts';

export interface IdentityDeps {
  readonly log?: Logger;
  readonly registry?: Registry;
  readonly clock?: Clock;
  /** Overrides the HTTPS call to the control plane (local mode: an in-process CA). */
  readonly fetchCertificate?: CertificateFetch;
  /** Default /var/run/secrets/tsmesh/token. */
  readonly tokenFile?: string;
  /** Default /etc/tsmesh/trust/ca.crt. */
  readonly caFile?: string;
}

export function createIdentityProvider(settings: Pick<Settings, 'tlsDir' | 'trustDomain' | 'podNamespace' | 'serviceAccount' | 'controlPlane' | 'watchIntervalMs'>, deps: IdentityDeps = {}): IdentityProvider {
  const common = { ...(deps.log ? { log: deps.log } : {}), ...(deps.registry ? { registry: deps.registry } : {}), ...(deps.clock ? { clock: deps.clock } : {}) };
  if (settings.tlsDir && !deps.fetchCertificate) {
    return createFileIdentityProvider({ dir: settings.tlsDir, intervalMs: settings.watchIntervalMs, ...common });
  }
  return createCAIdentityProvider({
    trustDomain: settings.trustDomain,
    namespace: settings.podNamespace,
    serviceAccount: settings.serviceAccount,
    fetchCertificate:
      deps.fetchCertificate ??
      httpsCertificateFetch({ controlPlane: settings.controlPlane, ...(deps.tokenFile ? { tokenFile: deps.tokenFile } : {}), ...(deps.caFile ? { caFile: deps.caFile } : {}) }),
    ...common,
  });
}
