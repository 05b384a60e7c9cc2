// `tsmesh check`: the conditions a working mesh needs, each asked of the cluster's API server
// and reported as one line with a hint when it does not hold. Before installing (`--pre`): the
// API server answers, its version, and the installer's permissions. After: the control
// plane's permissions, the webhook configuration and its caBundle, the control plane's
// readiness, the root certificate's expiry, the trust anchors in meshed namespaces and the
// meshed pods' sidecars, and whether the Gateway API routes are served (mesh routes). A check that cannot ask (no answer, no permission) fails naming
// what it tried, the API server and the cause.
import { X509Certificate } from 'node:crypto';
import {
  AdmissionregistrationV1Api,
  AppsV1Api,
  AuthorizationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  VersionApi,
  setHeaderOptions,
  type KubeConfig,
  type V1ConfigMap,
  type V1Container,
  type V1ContainerStatus,
  type V1Pod,
} from '@kubernetes/client-node';
import { DEFAULT_IMAGE } from '../inject/settings.ts';
import { PROXY_NAME, STATUS_KEY } from '../inject/inject.ts';
import { TRUST_ANCHOR_CONFIGMAP, TRUST_ANCHOR_KEY } from '../ca/store.ts';
import { apiServerOf } from '../kube/config.ts';
import { kubeApiError, statusOf } from '../kube/errors.ts';
import { CONTROL_PLANE_PERMISSIONS, INSTALL_PERMISSIONS, describePermission, type Permission } from './rbac.ts';
import { ROUTE_RESOURCES } from '../discovery/routes.ts';
import { GATEWAY_GROUP } from '../../src/route/model.ts';

/** Names deploy/ gives the control plane's objects. */
const CONTROL_PLANE = 'tsmesh-injector'; // Deployment, ServiceAccount, Service, MutatingWebhookConfiguration
const INJECT_LABEL = 'tsmesh.io/inject=enabled';
/** Native sidecars (the default) need Kubernetes 1.29. */
const NATIVE_SIDECAR_MINOR = 29;
const ROOT_EXPIRY_WARNING_DAYS = 30;
const DAY_MS = 86_400_000;

export type Outcome = 'ok' | 'warn' | 'fail' | 'skip';

export interface CheckResult {
  readonly name: string;
  readonly outcome: Outcome;
  readonly detail: string;
  readonly hint?: string;
}

export interface CheckOptions {
  readonly kubeConfig: KubeConfig;
  /** the control plane's namespace */
  readonly namespace: string;
  /** only what applies before installing */
  readonly pre: boolean;
  readonly now?: () => number;
  /** the longest wait for one answer of the API server */
  readonly timeoutMs?: number;
}

type Verdict = Omit<CheckResult, 'name'>;

interface Context {
  readonly server: string;
  readonly namespace: string;
  readonly core: CoreV1Api;
  readonly apps: AppsV1Api;
  readonly admission: AdmissionregistrationV1Api;
  readonly authz: AuthorizationV1Api;
  readonly custom: CustomObjectsApi;
  readonly version: VersionApi;
  readonly now: number;
  /** a call to the API server: its answer, or a KubeApiError naming what, where and why */
  call<T>(what: string, request: () => Promise<T>): Promise<T>;
  /** the trust anchor ConfigMap of the control plane's namespace, read once */
  anchors(): Promise<V1ConfigMap | undefined>;
}

interface Check {
  readonly name: string;
  readonly pre: boolean;
  readonly full: boolean;
  run(ctx: Context): Promise<Verdict>;
}

const ok = (detail: string): Verdict => ({ outcome: 'ok', detail });
const warn = (detail: string, hint: string): Verdict => ({ outcome: 'warn', detail, hint });
const fail = (detail: string, hint: string): Verdict => ({ outcome: 'fail', detail, hint });

/** At most `n` names, then how many more. */
function listed(items: readonly string[], n = 5): string {
  return items.length <= n ? items.join(', ') : `${items.slice(0, n).join(', ')} and ${items.length - n} more`;
}

/** Asks whether the caller (or, with `as`, that user, by impersonation) may do each permission; returns the denied ones. */
async function denied(ctx: Context, permissions: readonly Permission[], as?: string): Promise<Permission[]> {
  const out: Permission[] = [];
  for (const p of permissions) {
    const body = {
      apiVersion: 'authorization.k8s.io/v1',
      kind: 'SelfSubjectAccessReview',
      spec: { resourceAttributes: { verb: p.verb, group: p.group, resource: p.resource, ...(p.subresource ? { subresource: p.subresource } : {}), ...(p.name ? { name: p.name } : {}), ...(p.inControlPlaneNamespace ? { namespace: ctx.namespace } : {}) } },
    };
    const review = await ctx.call(`create a SelfSubjectAccessReview${as ? ` as ${as}` : ''}`, () =>
      as ? ctx.authz.createSelfSubjectAccessReview({ body }, setHeaderOptions('Impersonate-User', as)) : ctx.authz.createSelfSubjectAccessReview({ body }),
    );
    if (!review.status?.allowed) out.push(p);
  }
  return out;
}

function trustAnchorPem(cm: V1ConfigMap | undefined): string | undefined {
  const pem = cm?.data?.[TRUST_ANCHOR_KEY];
  return pem && pem.includes('-----BEGIN CERTIFICATE-----') ? pem : undefined;
}

function proxyContainer(pod: V1Pod): { spec: V1Container; status: V1ContainerStatus | undefined } | undefined {
  for (const [specs, statuses] of [
    [pod.spec?.initContainers, pod.status?.initContainerStatuses],
    [pod.spec?.containers, pod.status?.containerStatuses],
  ] as const) {
    const spec = specs?.find((c) => c.name === PROXY_NAME);
    if (spec) return { spec, status: statuses?.find((s) => s.name === PROXY_NAME) };
  }
  return undefined;
}

/** Mesh routes (docs/routing.md): which Gateway API route kinds the API server serves, as the control plane probes them. */
const MESH_ROUTES: Check = {
  name: 'mesh routes (Gateway API)',
  pre: false,
  full: true,
  async run(ctx) {
    const served: string[] = [];
    const missing: string[] = [];
    for (const r of ROUTE_RESOURCES) {
      let version: string | undefined;
      for (const v of r.versions) {
        try {
          await ctx.call(`list ${r.plural}.${GATEWAY_GROUP} ${v}`, () => ctx.custom.listClusterCustomObject({ group: GATEWAY_GROUP, version: v, plural: r.plural, limit: 1 }));
          version = v;
          break;
        } catch (err) {
          if (statusOf(err) !== 404) throw err;
        }
      }
      if (version) served.push(`${r.kind} (${version})`);
      else missing.push(r.kind);
    }
    if (missing.length) {
      return warn(
        `routes unavailable: the API server does not serve ${missing.join(', ')}${served.length ? ` (it serves ${served.join(', ')})` : ''}; the mesh works without them`,
        'to route with HTTPRoute/GRPCRoute, install the Gateway API CRDs (standard channel, v1.1 or newer); the control plane picks them up within a minute',
      );
    }
    return ok(`${served.join(', ')} served: HTTPRoutes and GRPCRoutes whose parent is a Service are applied`);
  },
};
const CHECKS: readonly Check[] = [
  {
    name: 'Kubernetes version',
    pre: true,
    full: true,
    async run(ctx) {
      const v = await ctx.call('read the version', () => ctx.version.getCode());
      const minor = Number.parseInt(v.minor, 10);
      if (Number(v.major) === 1 && minor < NATIVE_SIDECAR_MINOR) {
        return warn(`${v.gitVersion}: native sidecars need 1.${NATIVE_SIDECAR_MINOR} or newer`, 'annotate workloads with tsmesh.io/native-sidecar: "false" (the sidecar then runs as a regular container), or upgrade the cluster');
      }
      return ok(`${v.gitVersion}`);
    },
  },
  {
    name: 'permissions to install',
    pre: true,
    full: false,
    async run(ctx) {
      const no = await denied(ctx, [...INSTALL_PERMISSIONS, ...CONTROL_PLANE_PERMISSIONS]);
      if (no.length === 0) return ok(`you may create what deploy/ holds and grant the control plane's permissions (${INSTALL_PERMISSIONS.length + CONTROL_PLANE_PERMISSIONS.length} asked)`);
      return fail(`you may not ${listed(no.map((p) => describePermission(p, ctx.namespace)))}`, 'install as a cluster administrator: Kubernetes lets you grant only the permissions you hold');
    },
  },
  {
    name: "the control plane's permissions",
    pre: false,
    full: true,
    async run(ctx) {
      const sa = `system:serviceaccount:${ctx.namespace}:${CONTROL_PLANE}`;
      let no: Permission[];
      try {
        no = await denied(ctx, CONTROL_PLANE_PERMISSIONS, sa);
      } catch (err) {
        if (statusOf(err) === 403) return warn(`cannot ask as ${sa}: you may not impersonate it`, 'run tsmesh check as a cluster administrator to check these');
        throw err;
      }
      if (no.length === 0) return ok(`${ctx.namespace}/${CONTROL_PLANE} may do all it needs (${CONTROL_PLANE_PERMISSIONS.length} asked)`);
      return fail(`${ctx.namespace}/${CONTROL_PLANE} may not ${listed(no.map((p) => describePermission(p, ctx.namespace)))}`, 'apply deploy/injector/rbac.yaml (kubectl apply -k deploy/)');
    },
  },
  {
    name: 'control plane ready',
    pre: false,
    full: true,
    async run(ctx) {
      let d;
      try {
        d = await ctx.call(`read Deployment ${ctx.namespace}/${CONTROL_PLANE}`, () => ctx.apps.readNamespacedDeployment({ name: CONTROL_PLANE, namespace: ctx.namespace }));
      } catch (err) {
        if (statusOf(err) === 404) return fail(`no Deployment ${ctx.namespace}/${CONTROL_PLANE}`, 'install the control plane: kubectl apply -k deploy/');
        throw err;
      }
      const want = d.spec?.replicas ?? 1;
      const ready = d.status?.readyReplicas ?? 0;
      const where = `Deployment ${ctx.namespace}/${CONTROL_PLANE}`;
      if (ready === 0) return fail(`${where}: 0 of ${want} replicas ready`, `kubectl -n ${ctx.namespace} describe deployment ${CONTROL_PLANE}; kubectl -n ${ctx.namespace} logs deployment/${CONTROL_PLANE}`);
      if (ready < want) return warn(`${where}: ${ready} of ${want} replicas ready`, `kubectl -n ${ctx.namespace} get pods -l app.kubernetes.io/name=${CONTROL_PLANE}`);
      return ok(`${where}: ${ready} of ${want} replicas ready`);
    },
  },
  {
    name: 'root certificate',
    pre: false,
    full: true,
    async run(ctx) {
      const pem = trustAnchorPem(await ctx.anchors());
      if (!pem) return fail(`no trust anchor in ConfigMap ${ctx.namespace}/${TRUST_ANCHOR_CONFIGMAP}`, 'the control plane publishes it when it starts: is it running? (kubectl -n tsmesh-system logs deployment/tsmesh-injector)');
      let certs: X509Certificate[];
      try {
        certs = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)!.map((c) => new X509Certificate(c));
      } catch (err) {
        return fail(`the trust anchor in ConfigMap ${ctx.namespace}/${TRUST_ANCHOR_CONFIGMAP} is not a certificate: ${(err as Error).message}`, 'restart the control plane; it publishes its root again');
      }
      const soonest = certs.reduce((a, b) => (Date.parse(a.validTo) <= Date.parse(b.validTo) ? a : b));
      const until = Date.parse(soonest.validTo);
      const days = Math.floor((until - ctx.now) / DAY_MS);
      const when = new Date(until).toISOString().slice(0, 10);
      if (until <= ctx.now) return fail(`the root certificate expired on ${when}`, 'rotate the root (docs/injector.md): delete Secret tsmesh-ca and restart the control plane, then restart meshed pods');
      if (days < ROOT_EXPIRY_WARNING_DAYS) return warn(`the root certificate expires in ${days} days (${when})`, 'plan a root rotation (docs/injector.md) before it expires');
      return ok(`valid until ${when} (${days} days)`);
    },
  },
  {
    name: 'webhook configuration',
    pre: false,
    full: true,
    async run(ctx) {
      let config;
      try {
        config = await ctx.call(`read MutatingWebhookConfiguration ${CONTROL_PLANE}`, () => ctx.admission.readMutatingWebhookConfiguration({ name: CONTROL_PLANE }));
      } catch (err) {
        if (statusOf(err) === 404) return fail(`no MutatingWebhookConfiguration ${CONTROL_PLANE}: pods are not injected`, 'kubectl apply -k deploy/');
        throw err;
      }
      const ours = (config.webhooks ?? []).filter((w) => w.clientConfig.service?.name === CONTROL_PLANE && w.clientConfig.service.namespace === ctx.namespace);
      if (ours.length === 0) return fail(`MutatingWebhookConfiguration ${CONTROL_PLANE} has no webhook calling Service ${ctx.namespace}/${CONTROL_PLANE}`, 'kubectl apply -k deploy/');
      const pem = trustAnchorPem(await ctx.anchors());
      const missing = ours.filter((w) => !w.clientConfig.caBundle).map((w) => w.name);
      if (missing.length) return fail(`no caBundle in webhook ${listed(missing)}: the API server cannot call the injector`, 'the control plane sets it once it runs: is it ready?');
      if (!pem) return warn(`${ours.length} webhook(s) with a caBundle; the mesh root to compare it with is not published`, `the control plane publishes ConfigMap ${ctx.namespace}/${TRUST_ANCHOR_CONFIGMAP} when it starts`);
      const stale = ours.filter((w) => Buffer.from(w.clientConfig.caBundle!, 'base64').toString('utf8') !== pem).map((w) => w.name);
      if (stale.length) return fail(`the caBundle of webhook ${listed(stale)} is not the mesh root: the API server will refuse the injector's certificate`, 'restart the control plane; it sets the caBundle to its root (kubectl -n tsmesh-system rollout restart deployment tsmesh-injector)');
      return ok(`${ours.length} webhook(s), caBundle = the mesh root`);
    },
  },
  {
    name: 'trust anchors in meshed namespaces',
    pre: false,
    full: true,
    async run(ctx) {
      const pem = trustAnchorPem(await ctx.anchors());
      if (!pem) return fail(`the mesh root is not published in ConfigMap ${ctx.namespace}/${TRUST_ANCHOR_CONFIGMAP}`, 'the control plane publishes it when it starts: is it running?');
      const labelled = await ctx.call(`list namespaces labelled ${INJECT_LABEL}`, () => ctx.core.listNamespace({ labelSelector: INJECT_LABEL }));
      const pods = await ctx.call('list pods', () => ctx.core.listPodForAllNamespaces());
      const meshed = new Set([...labelled.items.map((n) => n.metadata!.name!), ...pods.items.filter((p) => p.metadata?.annotations?.[STATUS_KEY] !== undefined).map((p) => p.metadata!.namespace!)]);
      if (meshed.size === 0) return ok(`no meshed namespace yet (label one with ${INJECT_LABEL})`);
      const missing: string[] = [];
      const stale: string[] = [];
      for (const namespace of [...meshed].sort()) {
        let cm: V1ConfigMap | undefined;
        try {
          cm = await ctx.call(`read ConfigMap ${namespace}/${TRUST_ANCHOR_CONFIGMAP}`, () => ctx.core.readNamespacedConfigMap({ name: TRUST_ANCHOR_CONFIGMAP, namespace }));
        } catch (err) {
          if (statusOf(err) !== 404) throw err;
        }
        if (!cm) missing.push(namespace);
        else if (cm.data?.[TRUST_ANCHOR_KEY] !== pem) stale.push(namespace);
      }
      if (missing.length || stale.length) {
        const parts = [missing.length ? `missing in ${listed(missing)}` : '', stale.length ? `not the mesh root in ${listed(stale)}` : ''].filter(Boolean);
        return fail(`${TRUST_ANCHOR_CONFIGMAP} ${parts.join('; ')}: sidecars there cannot verify their peers`, "the control plane writes it into every meshed namespace: check its log for errors (kubectl -n tsmesh-system logs deployment/tsmesh-injector)");
      }
      return ok(`present and current in ${meshed.size} namespace(s)`);
    },
  },
  {
    name: 'meshed pods',
    pre: false,
    full: true,
    async run(ctx) {
      // The image the control plane injects now: its TSMESH_PROXY_IMAGE, else the default.
      let expected = DEFAULT_IMAGE;
      try {
        const d = await ctx.call(`read Deployment ${ctx.namespace}/${CONTROL_PLANE}`, () => ctx.apps.readNamespacedDeployment({ name: CONTROL_PLANE, namespace: ctx.namespace }));
        expected = d.spec?.template.spec?.containers[0]?.env?.find((e) => e.name === 'TSMESH_PROXY_IMAGE')?.value ?? DEFAULT_IMAGE;
      } catch (err) {
        if (statusOf(err) !== 404) throw err;
      }
      const pods = await ctx.call('list pods', () => ctx.core.listPodForAllNamespaces());
      const meshed = pods.items.filter((p) => p.metadata?.annotations?.[STATUS_KEY] !== undefined && !['Succeeded', 'Failed'].includes(p.status?.phase ?? ''));
      const notReady: string[] = [];
      const other: string[] = [];
      for (const pod of meshed) {
        const name = `${pod.metadata!.namespace}/${pod.metadata!.name}`;
        const proxy = proxyContainer(pod);
        if (!proxy?.status?.ready) notReady.push(name);
        if (proxy && proxy.spec.image !== expected) other.push(`${name} (${proxy.spec.image})`);
      }
      if (notReady.length) return fail(`sidecar not ready in ${notReady.length} of ${meshed.length} meshed pods: ${listed(notReady)}`, `kubectl -n NAMESPACE logs POD -c ${PROXY_NAME}; kubectl -n NAMESPACE describe pod POD`);
      if (other.length) return warn(`${other.length} of ${meshed.length} meshed pods run another sidecar than ${expected}: ${listed(other)}`, 'restart them to get the current sidecar (kubectl rollout restart deployment NAME)');
      return ok(`${meshed.length} meshed pod(s), every sidecar ready and at ${expected}`);
    },
  },
  MESH_ROUTES,
];

/** Runs the checks that apply; the API server's reachability first, the others only if it answers. */
export async function runChecks(options: CheckOptions): Promise<CheckResult[]> {
  const kc = options.kubeConfig;
  const server = apiServerOf(kc);
  const timeoutMs = options.timeoutMs ?? 15_000;
  const call = async <T>(what: string, request: () => Promise<T>): Promise<T> => {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs / 1000} s`)), timeoutMs);
    });
    try {
      return await Promise.race([request(), timeout]);
    } catch (err) {
      throw kubeApiError(what, err, server);
    } finally {
      clearTimeout(timer);
    }
  };
  let anchors: Promise<V1ConfigMap | undefined> | undefined;
  const ctx: Context = {
    server,
    namespace: options.namespace,
    core: kc.makeApiClient(CoreV1Api),
    apps: kc.makeApiClient(AppsV1Api),
    admission: kc.makeApiClient(AdmissionregistrationV1Api),
    authz: kc.makeApiClient(AuthorizationV1Api),
    custom: kc.makeApiClient(CustomObjectsApi),
    version: kc.makeApiClient(VersionApi),
    now: (options.now ?? Date.now)(),
    call,
    anchors: () =>
      (anchors ??= call(`read ConfigMap ${options.namespace}/${TRUST_ANCHOR_CONFIGMAP}`, () => ctx.core.readNamespacedConfigMap({ name: TRUST_ANCHOR_CONFIGMAP, namespace: options.namespace })).catch((err: unknown) => {
        if (statusOf(err) === 404) return undefined;
        throw err;
      })),
  };

  const results: CheckResult[] = [];
  const [first, ...rest] = CHECKS.filter((c) => (options.pre ? c.pre : c.full));
  // The first check (the version) is the reachability check: no answer, nothing else to ask.
  try {
    results.push({ name: 'API server', ...ok(`${server} answers`) }, { name: first!.name, ...(await first!.run(ctx)) });
  } catch (err) {
    results.length = 0;
    const hint = statusOf(err) === 401 ? "the API server does not accept the kubeconfig's credentials: log in again (kubectl get ns shows the same)" : 'check the current context (kubectl config current-context), that the cluster runs and that this machine reaches it';
    results.push({ name: 'API server', outcome: 'fail', detail: (err as Error).message, hint });
    for (const c of rest) results.push({ name: c.name, outcome: 'skip', detail: 'not checked: the API server check failed' });
    return results;
  }
  for (const c of rest) {
    try {
      results.push({ name: c.name, ...(await c.run(ctx)) });
    } catch (err) {
      const hint = statusOf(err) === 403 ? 'your account may not read this: run tsmesh check as a cluster administrator' : 'see the cause; the API server may be overloaded';
      results.push({ name: c.name, outcome: 'fail', detail: (err as Error).message, hint });
    }
  }
  return results;
}
