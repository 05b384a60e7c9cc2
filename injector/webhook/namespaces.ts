// The namespace's labels, which decide injection when the pod does not. AdmissionReviews do not
// carry them, so the webhook reads the Namespace from the API, with a short cache (a rollout of
// many pods reads it once; a new label is seen within `ttlMs`). Concurrent lookups share one call.
import { ApiException, CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import type { NamespaceInfo } from '../inject/inject.ts';
import type { NamespaceLookup } from './admission.ts';

export function kubeNamespaceLookup(kubeConfig: KubeConfig, options: { ttlMs?: number; now?: () => number } = {}): NamespaceLookup {
  const core = kubeConfig.makeApiClient(CoreV1Api);
  const ttl = options.ttlMs ?? 2000;
  const now = options.now ?? Date.now;
  const cache = new Map<string, { at: number; info: Promise<NamespaceInfo> }>();
  return (name) => {
    const hit = cache.get(name);
    if (hit && now() - hit.at < ttl) return hit.info;
    const info = core.readNamespace({ name }).then(
      (ns) => ({ name, labels: ns.metadata?.labels ?? {} }),
      (err: unknown) => {
        cache.delete(name); // errors are not cached
        if (err instanceof ApiException && err.code === 404) return { name, labels: {} };
        const code = err instanceof ApiException ? `HTTP ${err.code}` : (err as Error).message;
        throw new Error(`cannot read namespace ${name}: ${code}`, { cause: err });
      },
    );
    cache.set(name, { at: now(), info });
    return info;
  };
}

/** A fixed table, for tests and `tsmesh injector --no-kube` style local runs. */
export function staticNamespaceLookup(labels: Record<string, Record<string, string>>, fallback: Record<string, string> = {}): NamespaceLookup {
  return async (name) => ({ name, labels: labels[name] ?? fallback });
}
