// The trust anchor where the pods are: a pod can mount only a ConfigMap of its own namespace, so
// the ConfigMap tsmesh-trust-anchor (ca.crt) must exist, with the right content, in every
// namespace that has injected pods. Two watches keep it so:
//   - Namespaces labelled tsmesh.io/inject=enabled: each gets the ConfigMap when it appears or
//     gains the label;
//   - ConfigMaps named tsmesh-trust-anchor, in all namespaces (a field selector on the name, so
//     RBAC can pin list/watch to that name): an edited one is written back, a deleted one is
//     made again where it is wanted.
// Pods opted in by annotation in an unlabelled namespace are covered by `podInjected`, which the
// webhook calls on each injection (nothing is written when the ConfigMap is already right).
// Every replica runs this; their writes are idempotent and conflicts (409) are re-read.
import { ApiException, CoreV1Api, ListWatch, Watch, type KubeConfig, type KubernetesObject, type V1ConfigMap, type V1Namespace } from '@kubernetes/client-node';
import { Counter, type Registry } from 'prom-client';
import type { Logger } from '../../src/log/log.ts';
import { publishTrustAnchor, TRUST_ANCHOR_CONFIGMAP, TRUST_ANCHOR_KEY } from './store.ts';

export const INJECT_LABEL_SELECTOR = 'tsmesh.io/inject=enabled';

/** A rewrite this soon after our own write means someone else writes it too. */
const FIGHT_WINDOW_MS = 10_000;

export const TRUST_ANCHOR_SYNC_DEFAULTS = {
  retryInitialMs: 1000,
  retryMaxMs: 60_000,
} as const;

export interface TrustAnchorSyncOptions {
  readonly kubeConfig: KubeConfig;
  /** PEM: the mesh trust anchors (the CA's `trustAnchors`, joined). */
  readonly caPem: string;
  /** Always kept, though never injected: where operators and tools read the root. */
  readonly controlPlaneNamespace: string;
  readonly logger: Logger;
  readonly registry?: Registry;
  readonly retryInitialMs?: number;
  readonly retryMaxMs?: number;
}

export interface TrustAnchorSync {
  /** A pod was injected into `namespace`: make sure the ConfigMap is there (cheap when it is). */
  podInjected(namespace: string): void;
  /** Resolves once both watches have listed (or failed once and are retrying). */
  readonly started: Promise<void>;
  stop(): Promise<void>;
}

const statusOf = (err: unknown): number | undefined => {
  for (let e = err; e; e = (e as { cause?: unknown }).cause) if (e instanceof ApiException) return e.code;
  return undefined;
};

export function startTrustAnchorSync(o: TrustAnchorSyncOptions): TrustAnchorSync {
  const log = o.logger.child({ component: 'trust-anchor' });
  const core = o.kubeConfig.makeApiClient(CoreV1Api);
  const initial = o.retryInitialMs ?? TRUST_ANCHOR_SYNC_DEFAULTS.retryInitialMs;
  const max = o.retryMaxMs ?? TRUST_ANCHOR_SYNC_DEFAULTS.retryMaxMs;
  const writes = new Counter({
    name: 'tsmesh_ca_trust_anchor_writes_total',
    help: 'Trust-anchor ConfigMaps checked in namespaces, by result (created, updated, unchanged, error)',
    labelNames: ['result'] as const,
    registers: o.registry ? [o.registry] : [],
  });
  let stopped = false;
  const timers = new Set<NodeJS.Timeout>();
  const later = (fn: () => void, ms: number): void => {
    const t = setTimeout(() => {
      timers.delete(t);
      if (!stopped) fn();
    }, ms);
    timers.add(t);
  };

  // Where the ConfigMap must exist: labelled namespaces, namespaces we injected into, ours.
  const labelled = new Set<string>();
  const injectedInto = new Set<string>();
  const wanted = (ns: string): boolean => ns === o.controlPlaneNamespace || labelled.has(ns) || injectedInto.has(ns);

  // One write at a time per namespace; a trigger during a write runs it once more after. A
  // namespace we wrote moments ago that needs writing again has another writer (a replica with
  // another root, during a rollout that changes it): back off rather than fight at full speed.
  const work = new Map<string, { again: boolean; failures: number }>();
  const lastWrite = new Map<string, { at: number; streak: number }>();
  const ensure = (namespace: string): void => {
    const w = work.get(namespace);
    if (w) {
      w.again = true;
      return;
    }
    const state = { again: false, failures: 0 };
    work.set(namespace, state);
    const attempt = async (): Promise<void> => {
      state.again = false;
      try {
        const result = await publishTrustAnchor({ core, namespace, caPem: o.caPem, log });
        writes.inc({ result });
        if (result !== 'unchanged') {
          const prev = lastWrite.get(namespace);
          lastWrite.set(namespace, { at: Date.now(), streak: prev && Date.now() - prev.at < FIGHT_WINDOW_MS ? prev.streak + 1 : 0 });
        }
        state.failures = 0;
        if (state.again && !stopped) return void attempt();
        work.delete(namespace);
      } catch (err) {
        writes.inc({ result: 'error' });
        const status = statusOf(err);
        // 404: the namespace is gone; 403: it is being deleted (or RBAC is wrong, said in the log).
        if (status === 404 || status === 403 || stopped) {
          log.warn({ namespace, status, err: (err as Error).message }, 'cannot publish the trust anchor here; not retrying until the next change');
          injectedInto.delete(namespace);
          work.delete(namespace);
          return;
        }
        state.failures++;
        const wait = Math.min(max, initial * 2 ** (state.failures - 1));
        log.warn({ namespace, status, err: (err as Error).message, retryInMs: wait }, 'cannot publish the trust anchor; retrying');
        later(() => void attempt(), wait);
      }
    };
    // One quick rewrite is normal (a user's edit); a second within the window is a fight.
    const prev = lastWrite.get(namespace);
    if (prev && prev.streak > 0 && Date.now() - prev.at < FIGHT_WINDOW_MS) {
      const wait = Math.min(max, initial * 2 ** (prev.streak - 1));
      log.warn({ namespace, retryInMs: wait }, 'the trust anchor here changed right after we wrote it (another writer with another root?); writing it again later');
      later(() => void attempt(), wait);
    } else void attempt();
  };

  const configMaps = informer<V1ConfigMap>(
    'ConfigMaps',
    '/api/v1/configmaps',
    () => core.listConfigMapForAllNamespaces({ fieldSelector: `metadata.name=${TRUST_ANCHOR_CONFIGMAP}` }),
    { fieldSelector: `metadata.name=${TRUST_ANCHOR_CONFIGMAP}` },
  );
  const isRight = (cm: V1ConfigMap | undefined): boolean => cm?.data?.[TRUST_ANCHOR_KEY] === o.caPem;
  // Any ConfigMap of this name is ours: an edit is written back wherever it is.
  const onConfigMap = (cm: V1ConfigMap): void => {
    if (!isRight(cm)) ensure(cm.metadata!.namespace!);
  };
  configMaps.on('add', onConfigMap);
  configMaps.on('update', onConfigMap);
  configMaps.on('delete', (cm) => {
    const ns = cm.metadata!.namespace!;
    if (wanted(ns)) ensure(ns);
  });

  const namespaces = informer<V1Namespace>('Namespaces', '/api/v1/namespaces', () => core.listNamespace({ labelSelector: INJECT_LABEL_SELECTOR }), { labelSelector: INJECT_LABEL_SELECTOR });
  const onNamespace = (ns: V1Namespace): void => {
    const name = ns.metadata!.name!;
    labelled.add(name);
    if (ns.metadata?.deletionTimestamp) return; // terminating: no new objects there
    if (!isRight(configMaps.get(TRUST_ANCHOR_CONFIGMAP, name))) ensure(name);
  };
  namespaces.on('add', onNamespace);
  namespaces.on('update', onNamespace);
  // Unlabelled or deleted: stop re-creating it; the ConfigMap itself stays for running pods.
  namespaces.on('delete', (ns) => labelled.delete(ns.metadata!.name!));

  function informer<T extends KubernetesObject>(what: string, path: string, list: () => Promise<{ items: T[]; metadata?: { resourceVersion?: string } }>, selectors: { labelSelector?: string; fieldSelector?: string }) {
    const i = new ListWatch<T>(path, new Watch(o.kubeConfig), list as never, false, selectors.labelSelector, selectors.fieldSelector);
    let failures = 0;
    // client-node stops an informer on an error other than 410 Expired: start it again, backing off.
    i.on('error', (err: unknown) => {
      if (stopped) return;
      failures++;
      const wait = Math.min(max, initial * 2 ** (failures - 1));
      log.warn({ watch: what, err: (err as Error)?.message ?? String(err), retryInMs: wait }, 'watch failed; starting it again');
      later(() => void begin(i), wait);
    });
    const ok = (): void => {
      failures = 0;
    };
    i.on('add', ok);
    i.on('update', ok);
    i.on('delete', ok);
    return i;
  }

  // client-node's informer opens its watch after its list even when stopped meanwhile: stop()
  // waits for starts in flight, then stops.
  const starting = new Set<Promise<void>>();
  function begin(i: ListWatch<V1ConfigMap> | ListWatch<V1Namespace>): Promise<void> {
    if (stopped) return Promise.resolve();
    const p = i.start().finally(() => starting.delete(p));
    starting.add(p);
    return p;
  }

  // (The control plane's own namespace got its ConfigMap from startClusterCA.)
  // ConfigMaps first: the namespace handler consults their cache to skip needless writes.
  const started = begin(configMaps).then(() => begin(namespaces));

  return {
    podInjected(namespace) {
      injectedInto.add(namespace);
      if (!isRight(configMaps.get(TRUST_ANCHOR_CONFIGMAP, namespace))) ensure(namespace);
    },
    started,
    async stop() {
      stopped = true;
      for (const t of timers) clearTimeout(t);
      timers.clear();
      await started.catch(() => {});
      await Promise.all([...starting].map((p) => p.catch(() => {})));
      await Promise.all([configMaps.stop(), namespaces.stop()]);
    },
  };
}
