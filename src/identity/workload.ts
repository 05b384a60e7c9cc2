// Which workload identity the sidecar has: the one it is given, else the files in TSMESH_TLS_DIR,
// else the control plane's CA; none (a plaintext mesh, reported) in local mode (TSMESH_REGISTRY)
// without TSMESH_TLS_DIR.
import type { Settings } from '../config/settings.ts';
import type { Logger } from '../log/log.ts';
import { createIdentityProvider, type IdentityDeps } from './index.ts';
import type { IdentityProvider } from './provider.ts';

export function workloadIdentity(
  settings: Pick<Settings, 'registryFile' | 'tlsDir' | 'trustDomain' | 'podNamespace' | 'serviceAccount' | 'controlPlane' | 'watchIntervalMs'>,
  given: IdentityProvider | null | undefined,
  log: Logger,
  metrics: IdentityDeps['registry'],
): IdentityProvider | null {
  const identity =
    given !== undefined
      ? given
      : settings.registryFile && !settings.tlsDir
        ? null
        : createIdentityProvider(settings, { log: log.child({ component: 'identity' }), registry: metrics });
  if (!identity) log.warn({ code: 'TSMESH_MTLS_OFF' }, 'no workload identity (local mode without TSMESH_TLS_DIR): the mesh hop is plaintext');
  return identity;
}
