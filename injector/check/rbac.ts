// The permissions `tsmesh check` asks the API server about (SelfSubjectAccessReview): what the
// control plane's service account needs (deploy/injector/rbac.yaml, one line per verb; a test
// keeps the two the same) and what installing deploy/ needs on top (RBAC lets a user grant
// only what they hold, so the installer needs the control plane's permissions too).

export interface Permission {
  readonly verb: string;
  readonly group: string;
  readonly resource: string;
  /** e.g. "status": RBAC's "resource/subresource" */
  readonly subresource?: string;
  readonly name?: string;
  /** set for a namespaced Role's rule: the control plane's namespace */
  readonly inControlPlaneNamespace?: boolean;
}

const each = (verbs: string[], group: string, resource: string, extra: Partial<Permission> = {}): Permission[] => verbs.map((verb) => ({ verb, group, resource, ...extra }));

/** deploy/injector/rbac.yaml: the ClusterRole's rules, then the Role's (in the control plane's namespace). */
export const CONTROL_PLANE_PERMISSIONS: readonly Permission[] = [
  ...each(['get', 'list', 'watch'], '', 'namespaces'),
  ...each(['get', 'update', 'list', 'watch'], '', 'configmaps', { name: 'tsmesh-trust-anchor' }),
  ...each(['create'], '', 'configmaps'),
  ...each(['get', 'patch'], 'admissionregistration.k8s.io', 'mutatingwebhookconfigurations', { name: 'tsmesh-injector' }),
  ...each(['create'], 'authentication.k8s.io', 'tokenreviews'),
  ...each(['list', 'watch'], '', 'services'),
  ...each(['list', 'watch'], '', 'pods'),
  ...each(['list', 'watch'], 'discovery.k8s.io', 'endpointslices'),
  ...['httproutes', 'grpcroutes'].flatMap((r) => each(['get', 'list', 'watch'], 'gateway.networking.k8s.io', r)),
  ...['httproutes', 'grpcroutes'].flatMap((r) => each(['update'], 'gateway.networking.k8s.io', r, { subresource: 'status' })),
  ...each(['create'], '', 'secrets', { inControlPlaneNamespace: true }),
  ...each(['get'], '', 'secrets', { name: 'tsmesh-ca', inControlPlaneNamespace: true }),
  ...each(['get', 'update'], '', 'secrets', { name: 'tsmesh-injector-tls', inControlPlaneNamespace: true }),
];

/** What `kubectl apply -k deploy/` creates (cluster-wide or in the control plane's namespace). */
export const INSTALL_PERMISSIONS: readonly Permission[] = [
  ...each(['create'], '', 'namespaces'),
  ...each(['create'], 'rbac.authorization.k8s.io', 'clusterroles'),
  ...each(['create'], 'rbac.authorization.k8s.io', 'clusterrolebindings'),
  ...each(['create'], 'admissionregistration.k8s.io', 'mutatingwebhookconfigurations'),
  ...['serviceaccounts', 'services'].flatMap((r) => each(['create'], '', r, { inControlPlaneNamespace: true })),
  ...each(['create'], 'apps', 'deployments', { inControlPlaneNamespace: true }),
  ...each(['create'], 'policy', 'poddisruptionbudgets', { inControlPlaneNamespace: true }),
  ...each(['create'], 'rbac.authorization.k8s.io', 'roles', { inControlPlaneNamespace: true }),
  ...each(['create'], 'rbac.authorization.k8s.io', 'rolebindings', { inControlPlaneNamespace: true }),
];

/** "get secrets/tsmesh-ca in tsmesh-system", "create mutatingwebhookconfigurations.admissionregistration.k8s.io". */
export function describePermission(p: Permission, namespace: string): string {
  const resource = `${p.resource}${p.subresource ? `/${p.subresource}` : ''}${p.group ? `.${p.group}` : ''}`;
  return `${p.verb} ${resource}${p.name ? `/${p.name}` : ''}${p.inControlPlaneNamespace ? ` in ${namespace}` : ''}`;
}
