// Which API server the control plane and `tsmesh check` talk to: in a pod its service account,
// elsewhere KUBECONFIG or ~/.kube/config, as kubectl does. With none of them, client-node
// quietly falls back to http://localhost:8080 and every call fails with "HTTP protocol is not
// allowed when skipTLSVerify is not set or false"; this says what is missing instead.
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { describeError } from '../../src/errors/describe.ts';
import { KubeApiError } from './errors.ts';

const SERVICE_ACCOUNT_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token';

export interface KubeConfigSources {
  readonly env?: NodeJS.ProcessEnv;
  readonly home?: string;
  /** the in-cluster token file (a test points it elsewhere) */
  readonly serviceAccountToken?: string;
}

/** The kubeconfig kubectl would use; throws TSMESH_KUBE_NO_CONFIG when there is none. */
export function loadKubeConfig(sources: KubeConfigSources = {}): KubeConfig {
  const env = sources.env ?? process.env;
  const file = join(sources.home ?? env.HOME ?? homedir(), '.kube', 'config');
  const token = sources.serviceAccountToken ?? SERVICE_ACCOUNT_TOKEN;
  const kc = new KubeConfig();
  try {
    if (env.KUBECONFIG) {
      // as kubectl: the first file, the others merged into it
      const [first, ...more] = env.KUBECONFIG.split(':').filter(Boolean).map((f) => {
        if (!existsSync(f)) throw new Error(`KUBECONFIG names ${f}, which does not exist`);
        return f;
      });
      kc.loadFromFile(first!);
      for (const f of more) {
        const other = new KubeConfig();
        other.loadFromFile(f);
        kc.mergeConfig(other);
      }
    } else if (existsSync(file)) {
      kc.loadFromFile(file);
    } else if (existsSync(token) && env.KUBERNETES_SERVICE_HOST) {
      kc.loadFromCluster();
    } else {
      throw new KubeApiError(
        `no Kubernetes cluster configured: KUBECONFIG is not set, ${file} does not exist, and this is not a pod (no ${token} and KUBERNETES_SERVICE_HOST). ` +
          'Set KUBECONFIG to a kubeconfig file (or run `kubectl config view --raw > ~/.kube/config`), or run it in the cluster (deploy/).',
        undefined,
        { code: 'TSMESH_KUBE_NO_CONFIG' },
      );
    }
  } catch (err) {
    if (err instanceof KubeApiError) throw err;
    throw new KubeApiError(`cannot use the kubeconfig: ${describeError(err)}`, undefined, { cause: err, code: 'TSMESH_KUBE_CONFIG_INVALID' });
  }
  if (!kc.getCurrentCluster()) {
    throw new KubeApiError(`the kubeconfig has no current cluster (context "${kc.getCurrentContext()}"): pick one with \`kubectl config use-context\``, undefined, { code: 'TSMESH_KUBE_CONFIG_INVALID' });
  }
  return kc;
}

/** The URL of the API server the kubeconfig points at ("(no cluster)" when it has none). */
export function apiServerOf(kc: KubeConfig): string {
  return kc.getCurrentCluster()?.server ?? '(no cluster)';
}
