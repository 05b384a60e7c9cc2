// Workload names for metric labels and the tracing resource: what a dashboard calls a pod's
// owner. Kubernetes does not tell a pod its owner's name through the downward API, so the
// name comes from the labels people set for it, else from the pod name that the ReplicaSet,
// StatefulSet, DaemonSet or Job controller generated.

/** The label value for anything the sidecar cannot name (bounded cardinality: one value). */
export const UNKNOWN = 'unknown';

// The alphabet Kubernetes uses for generated name suffixes (no vowels, no 0/1/3), so a
// hand-written name such as "web-server" is not mistaken for a generated one.
const SAFE = '[bcdfghjklmnpqrstvwxz2456789]';
const DEPLOYMENT_POD = new RegExp(`^(.+)-${SAFE}{6,10}-${SAFE}{5}$`); // <deploy>-<rs hash>-<pod suffix>
const GENERATED_POD = new RegExp(`^(.+)-${SAFE}{5}$`); // <daemonset|job|replicaset>-<suffix>
const STATEFUL_POD = /^(.+)-\d+$/; // <statefulset>-<ordinal>

/** The workload a pod belongs to, from its labels, else from its generated name. */
export function workloadName(podName: string | undefined, labels: Readonly<Record<string, string>> | undefined = undefined): string {
  const fromLabels = labels?.['app.kubernetes.io/name'] || labels?.['app'];
  if (fromLabels) return fromLabels;
  if (!podName) return UNKNOWN;
  const m = DEPLOYMENT_POD.exec(podName) ?? GENERATED_POD.exec(podName) ?? STATEFUL_POD.exec(podName);
  return m ? m[1]! : podName;
}
