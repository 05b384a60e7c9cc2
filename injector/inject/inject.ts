// Injection as a pure function: (pod, namespace, settings) -> mutated pod, or the reason to
// leave the pod alone. No I/O, no clock: the webhook and `tsmesh inject` both call it, and the
// webhook's JSONPatch is the diff of its result against the original (./patch.ts).
// What it adds is DESIGN.md's "What injection adds to a pod".
import type { V1Container, V1EnvVar, V1ObjectMeta, V1PodSpec, V1Volume, V1VolumeMount } from '@kubernetes/client-node';
import { PREFIX, formatProblem, podAnnotations, policyAnnotations, readAnnotations, type PodSettings } from '../../src/config/annotations.ts';
import { rewriteProbes, type AppProbes } from './probes.ts';
import { skip, type Skip } from './skip.ts';
import { DEFAULT_TRUST_DOMAIN, type InjectorSettings } from './settings.ts';

/** A Pod or a workload's pod template: the parts injection reads and writes. */
export interface PodLike {
  metadata?: V1ObjectMeta;
  spec?: V1PodSpec;
  [key: string]: unknown;
}

export interface NamespaceInfo {
  readonly name: string;
  readonly labels?: Readonly<Record<string, string>>;
}

export type InjectionResult =
  | { readonly injected: true; readonly pod: PodLike; readonly warnings: string[] }
  | { readonly injected: false; readonly skip: Skip; readonly pod: PodLike; readonly warnings: string[] };

// The contract's names (DESIGN.md).
export const INJECT_KEY = `${PREFIX}inject`;
export const STATUS_KEY = `${PREFIX}status`;
export const INIT_NAME = 'tsmesh-init';
export const PROXY_NAME = 'tsmesh-proxy';
export const PROXY_UID = 1337;
export const PORTS = { outbound: 15001, inbound: 15006, admin: 15020 } as const;
export const SYSTEM_NAMESPACES: readonly string[] = ['kube-system', 'kube-public'];
export const TRUST_ANCHOR_CONFIGMAP = 'tsmesh-trust-anchor';
export const TOKEN_AUDIENCE = 'tsmesh';

export const VOLUMES = {
  podinfo: { name: 'tsmesh-podinfo', mountPath: '/etc/tsmesh/podinfo' },
  token: { name: 'tsmesh-token', mountPath: '/var/run/secrets/tsmesh' },
  trust: { name: 'tsmesh-trust', mountPath: '/etc/tsmesh/trust' },
} as const;

const KNOWN_KEYS = new Set([
  INJECT_KEY,
  STATUS_KEY,
  ...Object.keys(podAnnotations).map((k) => PREFIX + k),
  ...Object.keys(policyAnnotations).map((k) => PREFIX + k),
]);

/** Decides whether to inject, and injects. Never modifies its arguments. */
export function injectPod(original: PodLike, namespace: NamespaceInfo, settings: InjectorSettings): InjectionResult {
  const warnings: string[] = [];
  const annotations = original.metadata?.annotations ?? {};
  const skipped = (s: Skip): InjectionResult => ({ injected: false, skip: s, pod: original, warnings });

  const inject = annotations[INJECT_KEY];
  let podChoice: 'enabled' | 'disabled' | undefined;
  if (inject === 'enabled' || inject === 'disabled') podChoice = inject;
  else if (inject !== undefined) warnings.push(`annotation ${INJECT_KEY}="${inject}" ignored: "${inject}" is not one of enabled, disabled`);

  if (SYSTEM_NAMESPACES.includes(namespace.name)) return skipped(skip('system-namespace', namespace.name));
  if (namespace.name === settings.controlPlaneNamespace) return skipped(skip('control-plane-namespace', namespace.name));
  if (isInjected(original)) return skipped(skip('already-injected'));
  if (original.spec?.hostNetwork === true) return skipped(skip('host-network'));
  if (podChoice === 'disabled') return skipped(skip('pod-disabled'));
  if (podChoice === undefined && namespace.labels?.[INJECT_KEY] !== 'enabled') {
    return skipped(skip('namespace-not-enabled', namespace.name));
  }

  const pod = readAnnotations(podAnnotations, annotations);
  const policy = readAnnotations(policyAnnotations, annotations);
  warnings.push(...[...pod.problems, ...policy.problems].map(formatProblem));
  for (const key of Object.keys(annotations)) {
    if (key.startsWith(PREFIX) && !KNOWN_KEYS.has(key)) warnings.push(`annotation ${key} ignored: tsmesh has no such annotation`);
  }

  const mutated = structuredClone(original) as PodLike;
  const spec: V1PodSpec = (mutated.spec ??= { containers: [] });
  spec.containers ??= [];
  const probes: AppProbes = {};
  for (const c of spec.containers) {
    const r = rewriteProbes(c, PORTS.admin);
    Object.assign(probes, r.probes);
    warnings.push(...r.warnings);
  }

  const init = initContainer(pod.values, settings);
  const proxy = proxyContainer(pod.values, settings, probes);
  if (pod.values['native-sidecar']) {
    spec.initContainers = [init, { ...proxy, restartPolicy: 'Always', startupProbe: proxyStartupProbe() }, ...(spec.initContainers ?? [])];
  } else {
    spec.initContainers = [init, ...(spec.initContainers ?? [])];
    spec.containers = [proxy, ...spec.containers];
  }
  const volumes = meshVolumes();
  spec.volumes = [...(spec.volumes ?? []), ...volumes];

  const metadata: V1ObjectMeta = (mutated.metadata ??= {});
  metadata.annotations = {
    ...metadata.annotations,
    [STATUS_KEY]: JSON.stringify({ version: settings.version, containers: [INIT_NAME, PROXY_NAME], volumes: volumes.map((v) => v.name) }),
  };
  return { injected: true, pod: mutated, warnings };
}

/** The idempotency marker: the status annotation, or our containers already in the spec. */
export function isInjected(pod: PodLike): boolean {
  if (pod.metadata?.annotations?.[STATUS_KEY] !== undefined) return true;
  const names = [...(pod.spec?.containers ?? []), ...(pod.spec?.initContainers ?? [])].map((c) => c.name);
  return names.includes(PROXY_NAME) || names.includes(INIT_NAME);
}

function resources(values: PodSettings) {
  return { requests: { cpu: values['proxy-cpu'], memory: values['proxy-memory'] } };
}

const podinfoMount = (): V1VolumeMount => ({ name: VOLUMES.podinfo.name, mountPath: VOLUMES.podinfo.mountPath, readOnly: true });

function initContainer(values: PodSettings, settings: InjectorSettings): V1Container {
  return {
    name: INIT_NAME,
    image: settings.image,
    imagePullPolicy: settings.imagePullPolicy,
    // `tsmesh init` reads the exclusions (exclude-*-ports, exclude-outbound-cidrs) from the
    // pod's annotations file, the same file and parser the sidecar uses.
    args: ['init'],
    env: [{ name: 'TSMESH_ANNOTATIONS', value: `${VOLUMES.podinfo.mountPath}/annotations` }],
    resources: resources(values),
    securityContext: {
      // iptables needs root with NET_ADMIN and NET_RAW, nothing more. The root filesystem stays
      // writable: iptables takes its lock under /run.
      runAsUser: 0,
      runAsGroup: 0,
      runAsNonRoot: false,
      privileged: false,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: false,
      capabilities: { add: ['NET_ADMIN', 'NET_RAW'], drop: ['ALL'] },
    },
    volumeMounts: [podinfoMount()],
  };
}

function proxyContainer(values: PodSettings, settings: InjectorSettings, probes: AppProbes): V1Container {
  const fieldEnv = (name: string, fieldPath: string): V1EnvVar => ({ name, valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath } } });
  const env: V1EnvVar[] = [
    fieldEnv('POD_NAME', 'metadata.name'),
    fieldEnv('POD_NAMESPACE', 'metadata.namespace'),
    fieldEnv('POD_IP', 'status.podIP'),
    fieldEnv('SERVICE_ACCOUNT', 'spec.serviceAccountName'),
    { name: 'TSMESH_CONTROL_PLANE', value: settings.controlPlane },
  ];
  // The sidecar's own default is the default trust domain; another one must reach it.
  if (settings.trustDomain !== DEFAULT_TRUST_DOMAIN) env.push({ name: 'TSMESH_TRUST_DOMAIN', value: settings.trustDomain });
  if (settings.otlpEndpoint) env.push({ name: 'OTEL_EXPORTER_OTLP_ENDPOINT', value: settings.otlpEndpoint });
  if (Object.keys(probes).length) env.push({ name: 'TSMESH_APP_PROBES', value: JSON.stringify(probes) });
  return {
    name: PROXY_NAME,
    image: settings.image,
    imagePullPolicy: settings.imagePullPolicy,
    args: ['proxy'],
    ports: [
      { name: 'tsmesh-outbound', containerPort: PORTS.outbound, protocol: 'TCP' },
      { name: 'tsmesh-inbound', containerPort: PORTS.inbound, protocol: 'TCP' },
      { name: 'tsmesh-admin', containerPort: PORTS.admin, protocol: 'TCP' },
    ],
    env,
    resources: resources(values),
    readinessProbe: {
      httpGet: { path: '/healthz/ready', port: PORTS.admin, scheme: 'HTTP' },
      periodSeconds: 5,
      timeoutSeconds: 3,
      failureThreshold: 3,
    },
    securityContext: {
      runAsUser: PROXY_UID,
      runAsGroup: PROXY_UID,
      runAsNonRoot: true,
      privileged: false,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    },
    volumeMounts: [
      podinfoMount(),
      { name: VOLUMES.token.name, mountPath: VOLUMES.token.mountPath, readOnly: true },
      { name: VOLUMES.trust.name, mountPath: VOLUMES.trust.mountPath, readOnly: true },
    ],
  };
}

/**
 * A native sidecar with a startup probe holds the app's containers until the proxy is ready,
 * so the app's first connections find it listening (up to 2 minutes).
 */
function proxyStartupProbe() {
  return { httpGet: { path: '/healthz/ready', port: PORTS.admin, scheme: 'HTTP' }, periodSeconds: 1, timeoutSeconds: 3, failureThreshold: 120 };
}

function meshVolumes(): V1Volume[] {
  return [
    {
      name: VOLUMES.podinfo.name,
      downwardAPI: {
        items: [
          { path: 'labels', fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.labels' } },
          { path: 'annotations', fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.annotations' } },
        ],
      },
    },
    {
      name: VOLUMES.token.name,
      projected: { sources: [{ serviceAccountToken: { audience: TOKEN_AUDIENCE, expirationSeconds: 3600, path: 'token' } }] },
    },
    // optional: the pod starts before the trust anchor reaches its namespace, and the kubelet
    // fills the volume in when the ConfigMap appears; the sidecar re-reads it.
    { name: VOLUMES.trust.name, configMap: { name: TRUST_ANCHOR_CONFIGMAP, optional: true } },
  ];
}
