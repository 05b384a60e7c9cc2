// Reasons not to inject a pod, as data: a stable code (the `reason` label of
// tsmesh_injector_skips_total and the `skip` field of the log line) and a sentence.

export const skipReasons = {
  'system-namespace': 'the namespace is a Kubernetes system namespace (kube-system, kube-public)',
  'control-plane-namespace': "the namespace is the mesh control plane's own",
  'host-network': 'the pod uses the host network (hostNetwork: true); its traffic cannot be intercepted without changing the node',
  'already-injected': 'the pod already has the sidecar (tsmesh.io/status annotation or tsmesh containers present)',
  'pod-disabled': 'the pod annotation tsmesh.io/inject is "disabled"',
  'namespace-not-enabled': 'the namespace is not labelled tsmesh.io/inject=enabled and the pod does not ask for injection',
} as const;

export type SkipCode = keyof typeof skipReasons;

export interface Skip {
  readonly code: SkipCode;
  readonly message: string;
}

export function skip(code: SkipCode, detail?: string): Skip {
  return { code, message: detail ? `${skipReasons[code]}: ${detail}` : skipReasons[code] };
}

export const SKIP_CODES = Object.keys(skipReasons) as SkipCode[];
