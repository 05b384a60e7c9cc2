// The tracing resource: which workload, pod, namespace and node made a span. service.name is
// the workload (the name dashboards and Jaeger group by), the k8s.* attributes say which pod.
import { defaultResource, resourceFromAttributes, type Resource } from '@opentelemetry/resources';
import type { Attributes } from '@opentelemetry/api';
import { workloadName } from '../metrics/workload.ts';

export interface PodIdentity {
  readonly podName?: string | undefined;
  readonly namespace?: string | undefined;
  /** The pod's labels (downward API): app.kubernetes.io/name or app name the workload. */
  readonly labels?: Readonly<Record<string, string>> | undefined;
  /** The node, from env NODE_NAME when the injector sets it. */
  readonly nodeName?: string | undefined;
}

export function resourceAttributes(pod: PodIdentity): Attributes {
  const attrs: Attributes = { 'service.name': workloadName(pod.podName, pod.labels) };
  if (pod.namespace) attrs['k8s.namespace.name'] = pod.namespace;
  if (pod.podName) attrs['k8s.pod.name'] = pod.podName;
  if (pod.nodeName) attrs['k8s.node.name'] = pod.nodeName;
  return attrs;
}

/** The SDK's defaults (telemetry.sdk.*) with the pod's attributes over them. */
export function podResource(pod: PodIdentity): Resource {
  return defaultResource().merge(resourceFromAttributes(resourceAttributes(pod)));
}
