// `tsmesh inject`: the webhook's injection applied to manifests on disk. Every YAML document
// is read; a Pod, or the pod template of a Deployment, StatefulSet, DaemonSet, ReplicaSet,
// Job or CronJob (and the items of a List), goes through injectPod; any other kind passes
// through untouched (comments and all); the documents come out in the same order.
import { Document, parseAllDocuments } from 'yaml';
import { ConfigError } from '../../src/errors/errors.ts';
import { INJECT_KEY, injectPod, type PodLike } from '../inject/inject.ts';
import type { InjectorSettings } from '../inject/settings.ts';
import type { Skip } from '../inject/skip.ts';

/** Where each workload kind keeps its pod template. */
const TEMPLATE_PATHS: Record<string, readonly string[]> = {
  Deployment: ['spec', 'template'],
  StatefulSet: ['spec', 'template'],
  DaemonSet: ['spec', 'template'],
  ReplicaSet: ['spec', 'template'],
  ReplicationController: ['spec', 'template'],
  Job: ['spec', 'template'],
  CronJob: ['spec', 'jobTemplate', 'spec', 'template'],
};

export interface ObjectReport {
  readonly document: number; // 1-based
  readonly kind: string;
  readonly name: string;
  readonly result: 'injected' | 'skipped' | 'passed';
  readonly skip?: Skip;
  readonly warnings: readonly string[];
}

export interface InjectOptions {
  /** Namespace of objects that name none (kubectl's -n). Default "default". */
  readonly namespace?: string;
  /** For messages. */
  readonly source?: string;
}

interface K8sObject {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; generateName?: string; namespace?: string };
  items?: unknown[];
  [key: string]: unknown;
}

/** Injects into every workload in `text` (multi-document YAML) and returns the YAML to print. */
export function injectManifests(text: string, settings: InjectorSettings, options: InjectOptions = {}): { output: string; reports: ObjectReport[] } {
  const source = options.source ?? 'input';
  const docs = parseAllDocuments(text, { prettyErrors: true });
  if (!Array.isArray(docs)) return { output: text, reports: [] }; // an empty stream
  const reports: ObjectReport[] = [];
  const out: string[] = [];
  docs.forEach((doc, i) => {
    if (doc.errors.length) throw new ConfigError(`${source}: YAML document ${i + 1}`, doc.errors.map((e) => e.message));
    const value = doc.toJS({ maxAliasCount: 100 }) as unknown;
    if (value === null || value === undefined) {
      const rest = stripMarker(String(doc));
      if (rest.trim()) out.push(rest); // a document of comments only
      return;
    }
    if (typeof value !== 'object' || Array.isArray(value)) {
      throw new ConfigError(`${source}: YAML document ${i + 1}`, ['is not a Kubernetes object (a mapping with apiVersion and kind)']);
    }
    const before = reports.length;
    const mutated = injectObject(value as K8sObject, i + 1, settings, options.namespace ?? 'default', reports);
    const changed = reports.slice(before).some((r) => r.result === 'injected');
    out.push(changed ? new Document(mutated).toString({ lineWidth: 0 }) : stripMarker(String(doc)));
  });
  return { output: out.join('---\n'), reports };
}

function injectObject(obj: K8sObject, document: number, settings: InjectorSettings, defaultNamespace: string, reports: ObjectReport[]): K8sObject {
  const kind = typeof obj.kind === 'string' ? obj.kind : '(no kind)';
  const name = obj.metadata?.name ?? obj.metadata?.generateName ?? '(unnamed)';
  const namespace = obj.metadata?.namespace || defaultNamespace;
  const report = (r: Omit<ObjectReport, 'document' | 'kind' | 'name'>): void => {
    reports.push({ document, kind, name, ...r });
  };

  if (kind.endsWith('List') && Array.isArray(obj.items)) {
    return { ...obj, items: obj.items.map((item) => (isObject(item) ? injectObject(item, document, settings, namespace, reports) : item)) };
  }
  let pod: PodLike;
  let put: (p: PodLike) => K8sObject;
  if (kind === 'Pod' && obj.apiVersion === 'v1') {
    pod = obj as PodLike;
    put = (p) => p as K8sObject;
  } else if (Object.hasOwn(TEMPLATE_PATHS, kind)) {
    const path = TEMPLATE_PATHS[kind]!;
    const template = getPath(obj, path);
    if (!isObject(template)) {
      report({ result: 'passed', warnings: [`${kind} ${name} has no pod template at ${path.join('.')}; left as it is`] });
      return obj;
    }
    pod = template as PodLike;
    put = (p) => setPath(obj, path, p);
  } else {
    report({ result: 'passed', warnings: [] });
    return obj;
  }
  // `tsmesh inject` is an explicit request, as istioctl kube-inject is: the namespace counts as
  // enabled; the pod's own annotation, system namespaces and hostNetwork still decide.
  const result = injectPod(pod, { name: namespace, labels: { [INJECT_KEY]: 'enabled' } }, settings);
  if (!result.injected) {
    report({ result: 'skipped', skip: result.skip, warnings: result.warnings });
    return obj;
  }
  report({ result: 'injected', warnings: result.warnings });
  return put(result.pod);
}

function stripMarker(text: string): string {
  return text.replace(/^---[ \t]*\n/, '');
}

function isObject(v: unknown): v is K8sObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function getPath(obj: unknown, path: readonly string[]): unknown {
  let cur = obj;
  for (const key of path) cur = isObject(cur) ? cur[key] : undefined;
  return cur;
}

/** A copy of `obj` with `value` at `path` (the containers on the way are copied, not changed). */
function setPath(obj: K8sObject, path: readonly string[], value: unknown): K8sObject {
  const [head, ...rest] = path as [string, ...string[]];
  return { ...obj, [head]: rest.length ? setPath(obj[head] as K8sObject, rest, value) : value };
}
