// Where the CA's root lives in a cluster: the Secret `tsmesh-ca` (tls.crt, tls.key, ca.crt) in
// the control-plane namespace, made on first start or supplied by the user; and the trust anchor
// every pod mounts: the ConfigMap `tsmesh-trust-anchor` (ca.crt). All access through
// @kubernetes/client-node's CoreV1Api.
import type { CoreV1Api, V1ConfigMap, V1Secret } from '@kubernetes/client-node';
import type { Logger } from '../../src/log/log.ts';
import { generateRoot, type RootMaterial } from './ca.ts';
import { kubeApiError, statusOf } from '../kube/errors.ts';

export const ROOT_SECRET = 'tsmesh-ca';
export const TRUST_ANCHOR_CONFIGMAP = 'tsmesh-trust-anchor';
export const TRUST_ANCHOR_KEY = 'ca.crt';

const LABELS = { 'app.kubernetes.io/part-of': 'tsmesh', 'app.kubernetes.io/component': 'ca' };


function rootFromSecret(secret: V1Secret, where: string): RootMaterial {
  const data = secret.data ?? {};
  const text = (k: string): string | undefined => {
    if (data[k] !== undefined) return Buffer.from(data[k], 'base64').toString('utf8');
    return secret.stringData?.[k];
  };
  const cert = text('tls.crt');
  const key = text('tls.key');
  const missing = [!cert && 'tls.crt', !key && 'tls.key'].filter(Boolean);
  if (missing.length) throw new Error(`Secret ${where} lacks ${missing.join(' and ')}`);
  const ca = text('ca.crt');
  return { cert: cert!, key: key!, ...(ca ? { ca } : {}) };
}

/**
 * Reads the root from the Secret, or makes one and stores it. Two replicas starting together
 * both try to create it; the one that gets 409 AlreadyExists reads the winner's, so the cluster
 * has a single root.
 */
export async function loadOrCreateRoot(options: {
  core: CoreV1Api;
  namespace: string;
  trustDomain: string;
  secretName?: string;
  log?: Logger;
}): Promise<{ root: RootMaterial; created: boolean }> {
  const { core, namespace } = options;
  const name = options.secretName ?? ROOT_SECRET;
  const where = `${namespace}/${name}`;
  try {
    const secret = await core.readNamespacedSecret({ name, namespace });
    options.log?.info({ secret: where }, 'using the CA root from the Secret');
    return { root: rootFromSecret(secret, where), created: false };
  } catch (err) {
    if (statusOf(err) !== 404) throw kubeApiError(`read Secret ${where}`, err);
  }
  const root = await generateRoot({ trustDomain: options.trustDomain });
  const body: V1Secret = {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name, namespace, labels: LABELS },
    type: 'kubernetes.io/tls',
    data: {
      'tls.crt': Buffer.from(root.cert).toString('base64'),
      'tls.key': Buffer.from(root.key).toString('base64'),
      'ca.crt': Buffer.from(root.ca).toString('base64'),
    },
  };
  try {
    await core.createNamespacedSecret({ namespace, body });
    options.log?.info({ secret: where }, 'created a new CA root and stored it in the Secret');
    return { root, created: true };
  } catch (err) {
    if (statusOf(err) !== 409) throw kubeApiError(`create Secret ${where}`, err);
  }
  // Another replica won the race: use its root.
  const secret = await core.readNamespacedSecret({ name, namespace });
  options.log?.info({ secret: where }, 'another replica created the CA root first; using it');
  return { root: rootFromSecret(secret, where), created: false };
}

/**
 * Makes the ConfigMap hold exactly `caPem` under ca.crt (create, or update on change), retrying
 * on 409 conflicts with another writer. Returns what it did.
 */
export async function publishTrustAnchor(options: {
  core: CoreV1Api;
  namespace: string;
  caPem: string;
  configMapName?: string;
  log?: Logger;
}): Promise<'created' | 'updated' | 'unchanged'> {
  const { core, namespace, caPem } = options;
  const name = options.configMapName ?? TRUST_ANCHOR_CONFIGMAP;
  const where = `${namespace}/${name}`;
  for (let attempt = 1; ; attempt++) {
    let current: V1ConfigMap | undefined;
    try {
      current = await core.readNamespacedConfigMap({ name, namespace });
    } catch (err) {
      if (statusOf(err) !== 404) throw kubeApiError(`read ConfigMap ${where}`, err);
    }
    try {
      if (!current) {
        await core.createNamespacedConfigMap({
          namespace,
          body: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace, labels: LABELS }, data: { [TRUST_ANCHOR_KEY]: caPem } },
        });
        options.log?.info({ configMap: where }, 'published the trust anchor');
        return 'created';
      }
      if (current.data?.[TRUST_ANCHOR_KEY] === caPem) return 'unchanged';
      await core.replaceNamespacedConfigMap({
        name,
        namespace,
        // resourceVersion from the read: a concurrent writer makes this a 409, and we read again.
        body: { ...current, data: { ...current.data, [TRUST_ANCHOR_KEY]: caPem } },
      });
      options.log?.info({ configMap: where }, 'updated the trust anchor');
      return 'updated';
    } catch (err) {
      if (statusOf(err) !== 409 || attempt >= 5) throw kubeApiError(`write ConfigMap ${where}`, err);
    }
  }
}
