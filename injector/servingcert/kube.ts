// Provisioning the control plane's serving certificate through the Kubernetes API, without
// manual steps: the mesh CA issues it (./cert.ts says why), the Secret tsmesh-injector-tls keeps
// it (tls.crt, tls.key, and the trust anchors in ca.crt), so every replica serves the same one
// and a restart keeps it; the trust anchors go into the caBundle of every webhook of the
// MutatingWebhookConfiguration that points at our Service. Replicas race safely: creating an
// existing Secret gets 409 and the loser reads the winner's; replacing uses the resourceVersion
// it read, so a concurrent renewal gets 409 and is re-read.
import { AdmissionregistrationV1Api, ApiException, CoreV1Api, PatchStrategy, setHeaderOptions, type KubeConfig, type V1Secret } from '@kubernetes/client-node';
import type { Logger } from '../../src/log/log.ts';
import type { CA } from '../ca/ca.ts';
import type { TlsPair } from '../server/server.ts';
import { kubeApiError } from '../kube/errors.ts';
import { checkServing, serviceDnsNames, SERVING_TTL_MS, type ServingMaterial } from './cert.ts';

export interface ServingCertOptions {
  readonly kubeConfig: KubeConfig;
  /** The mesh CA: it signs the serving certificate; its trust anchors are the caBundle. */
  readonly ca: CA;
  readonly namespace: string; // the control plane's
  readonly serviceName: string; // tsmesh-injector
  readonly secretName: string; // tsmesh-injector-tls
  readonly webhookConfigName: string; // tsmesh-injector
  readonly logger: Logger;
  readonly now?: () => number;
}

/** Secret keys: kubernetes.io/tls names (cert-manager's too). */
const KEYS = { cert: 'tls.crt', key: 'tls.key', anchors: 'ca.crt' } as const;

const b64 = (s: string): string => Buffer.from(s).toString('base64');
const unb64 = (s: string | undefined): string | undefined => (s === undefined ? undefined : Buffer.from(s, 'base64').toString('utf8'));

const isCode = (err: unknown, code: number): boolean => err instanceof ApiException && err.code === code;

export interface ServingCertificate {
  readonly tls: TlsPair;
  /** PEM: the mesh trust anchors, which the webhook's caBundle must hold. */
  readonly caBundle: string;
  /** When this replica should look again (renewal time of the serving certificate). */
  readonly renewAt: number;
}

/** Reads the Secret, creating it or renewing the certificate in it when needed. */
export async function ensureServingCertificate(o: ServingCertOptions): Promise<ServingCertificate> {
  const core = o.kubeConfig.makeApiClient(CoreV1Api);
  const now = o.now ?? Date.now;
  const dnsNames = serviceDnsNames(o.serviceName, o.namespace);
  const anchors = o.ca.trustAnchors.join('');
  const log = o.logger.child({ component: 'serving-cert' });
  const check = (m: Partial<ServingMaterial>) => checkServing(m, { signerPem: o.ca.root.cert, dnsNames, now: now() });
  const issue = async (): Promise<ServingMaterial> => {
    const issued = await o.ca.issueServing(dnsNames, SERVING_TTL_MS);
    return { cert: issued.certChain.join(''), key: issued.keyPem };
  };
  // Exactly these keys: a Secret of an older version (with a CA key of its own) loses the rest.
  const data = (m: ServingMaterial): Record<string, string> => ({ [KEYS.cert]: b64(m.cert), [KEYS.key]: b64(m.key), [KEYS.anchors]: b64(anchors) });
  const result = (m: ServingMaterial): ServingCertificate => {
    const c = check(m);
    return { tls: m, caBundle: anchors, renewAt: c.state === 'good' ? c.renewAt : now() };
  };
  for (let attempt = 1; ; attempt++) {
    let secret: V1Secret | undefined;
    try {
      secret = await core.readNamespacedSecret({ name: o.secretName, namespace: o.namespace });
    } catch (err) {
      if (!isCode(err, 404)) throw kubeApiError(`read Secret ${o.namespace}/${o.secretName}`, err);
    }
    if (!secret) {
      const material = await issue();
      try {
        await core.createNamespacedSecret({
          namespace: o.namespace,
          body: { apiVersion: 'v1', kind: 'Secret', type: 'kubernetes.io/tls', metadata: { name: o.secretName, namespace: o.namespace, labels: { 'app.kubernetes.io/part-of': 'tsmesh' } }, data: data(material) },
        });
        log.info({ secret: o.secretName }, 'created the serving certificate (issued by the mesh CA)');
        return result(material);
      } catch (err) {
        if (isCode(err, 409) && attempt < 5) continue; // another replica made it first: use theirs
        throw kubeApiError(`create Secret ${o.namespace}/${o.secretName}`, err);
      }
    }
    const d = secret.data ?? {};
    const stored = { cert: unb64(d[KEYS.cert]), key: unb64(d[KEYS.key]) };
    const state = check(stored);
    if (state.state === 'good' && unb64(d[KEYS.anchors]) === anchors) return result(stored as ServingMaterial);
    const material = state.state === 'good' ? (stored as ServingMaterial) : await issue();
    try {
      await core.replaceNamespacedSecret({
        name: o.secretName,
        namespace: o.namespace,
        body: { ...secret, type: secret.type ?? 'kubernetes.io/tls', data: data(material) },
      });
      log.info({ secret: o.secretName, reason: state.state === 'renew' ? state.reason : 'the trust anchors changed' }, 'renewed the serving certificate');
      return result(material);
    } catch (err) {
      if (isCode(err, 409) && attempt < 5) continue; // renewed concurrently: read the new one
      throw kubeApiError(`update Secret ${o.namespace}/${o.secretName}`, err);
    }
  }
}

/**
 * Sets the caBundle of each webhook in the MutatingWebhookConfiguration that calls our
 * Service. Returns how many webhooks were changed (0 when they already trust `caCert`).
 * A missing configuration is not an error: it may be applied after the injector starts.
 */
export async function ensureCaBundle(o: Omit<ServingCertOptions, 'ca'>, caCert: string): Promise<number> {
  const api = o.kubeConfig.makeApiClient(AdmissionregistrationV1Api);
  const log = o.logger.child({ component: 'serving-cert' });
  let config;
  try {
    config = await api.readMutatingWebhookConfiguration({ name: o.webhookConfigName });
  } catch (err) {
    if (isCode(err, 404)) {
      log.warn({ webhookConfiguration: o.webhookConfigName }, 'MutatingWebhookConfiguration not found; will set its caBundle when it appears');
      return 0;
    }
    throw kubeApiError(`read MutatingWebhookConfiguration ${o.webhookConfigName}`, err);
  }
  const want = b64(caCert);
  const ops: object[] = [];
  (config.webhooks ?? []).forEach((w, i) => {
    const svc = w.clientConfig.service;
    if (!svc || svc.name !== o.serviceName || svc.namespace !== o.namespace) return;
    if (w.clientConfig.caBundle === want) return;
    // `test` first: if the list changed since we read it, the patch fails instead of
    // writing the wrong webhook.
    ops.push({ op: 'test', path: `/webhooks/${i}/name`, value: w.name });
    ops.push({ op: 'add', path: `/webhooks/${i}/clientConfig/caBundle`, value: want });
  });
  if (ops.length === 0) return 0;
  try {
    await api.patchMutatingWebhookConfiguration({ name: o.webhookConfigName, body: ops }, setHeaderOptions('Content-Type', PatchStrategy.JsonPatch));
  } catch (err) {
    throw kubeApiError(`patch the caBundle of MutatingWebhookConfiguration ${o.webhookConfigName}`, err);
  }
  const changed = ops.length / 2;
  log.info({ webhookConfiguration: o.webhookConfigName, webhooks: changed }, 'set the webhook caBundle');
  return changed;
}

export { KubeApiError } from '../kube/errors.ts';

/**
 * Keeps the serving certificate and the caBundle right: once now, then every `intervalMs`
 * (the Secret may have been renewed by another replica, the configuration re-applied).
 * `onCertificate` gets each new pair; errors are logged and retried at the next tick.
 */
export function startServingCertLoop(
  o: ServingCertOptions & { intervalMs?: number; onCertificate: (tls: TlsPair) => void },
  first: ServingCertificate,
): { stop(): void; tick(): Promise<void> } {
  const log = o.logger.child({ component: 'serving-cert' });
  let current = first.tls.cert;
  const tick = async (): Promise<void> => {
    try {
      const s = await ensureServingCertificate(o);
      if (s.tls.cert !== current) {
        current = s.tls.cert;
        o.onCertificate(s.tls);
      }
      await ensureCaBundle(o, s.caBundle);
    } catch (err) {
      log.error({ err }, 'serving certificate check failed; retrying later');
    }
  };
  const timer = setInterval(() => void tick(), o.intervalMs ?? 60_000);
  timer.unref();
  return { stop: () => clearInterval(timer), tick };
}
