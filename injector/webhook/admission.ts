// AdmissionReview v1 in, AdmissionReview v1 out. Decoding and the answer's shape live here;
// what to inject is injectPod's business (../inject/inject.ts).
import { z } from 'zod';
import { HttpError } from '../server/http.ts';
import { INJECT_KEY, SYSTEM_NAMESPACES, injectPod, type NamespaceInfo, type PodLike } from '../inject/inject.ts';
import { diffPatch, type Operation } from '../inject/patch.ts';
import type { Skip } from '../inject/skip.ts';
import type { InjectorSettings } from '../inject/settings.ts';

export const ADMISSION_API_VERSION = 'admission.k8s.io/v1';

const gvk = z.object({ group: z.string(), version: z.string(), kind: z.string() });
const reviewSchema = z.object({
  apiVersion: z.literal(ADMISSION_API_VERSION, { error: `apiVersion must be "${ADMISSION_API_VERSION}"` }),
  kind: z.literal('AdmissionReview', { error: 'kind must be "AdmissionReview"' }),
  request: z.looseObject({
    uid: z.string().min(1, 'request.uid must not be empty'),
    kind: gvk,
    resource: z.looseObject({ group: z.string(), version: z.string(), resource: z.string() }).optional(),
    subResource: z.string().optional(),
    operation: z.string(),
    namespace: z.string().optional(),
    name: z.string().optional(),
    object: z.unknown().optional(),
    dryRun: z.boolean().optional(),
  }, { error: 'request is missing' }),
});

export type AdmissionRequest = z.infer<typeof reviewSchema>['request'];

export interface AdmissionResponse {
  uid: string;
  allowed: true;
  patchType?: 'JSONPatch';
  patch?: string; // base64 of the JSON patch
  warnings?: string[];
}

export interface AdmissionReviewOut {
  apiVersion: typeof ADMISSION_API_VERSION;
  kind: 'AdmissionReview';
  response: AdmissionResponse;
}

/** Parses a decoded body as an AdmissionReview v1 request; 400 naming what is wrong. */
export function decodeReview(body: unknown): AdmissionRequest {
  const r = reviewSchema.safeParse(body);
  if (!r.success) {
    const issues = r.error.issues.map((i) => (i.path.length ? `${i.path.join('.')}: ${i.message}` : i.message));
    throw new HttpError(400, 'NOT_ADMISSION_REVIEW', `not an AdmissionReview ${ADMISSION_API_VERSION} request: ${issues.join('; ')}`);
  }
  return r.data.request;
}

export function isPodCreate(req: AdmissionRequest): boolean {
  return req.kind.group === '' && req.kind.version === 'v1' && req.kind.kind === 'Pod' && req.operation === 'CREATE' && !req.subResource;
}

/** Looks up a namespace's labels (cached in production; a map in tests). */
export type NamespaceLookup = (name: string) => Promise<NamespaceInfo>;

export type ReviewOutcome =
  | { readonly kind: 'ignored'; readonly review: AdmissionReviewOut } // not a Pod CREATE
  | { readonly kind: 'skipped'; readonly skip: Skip; readonly review: AdmissionReviewOut; readonly warnings: string[] }
  | { readonly kind: 'injected'; readonly namespace: string; readonly patch: Operation[]; readonly review: AdmissionReviewOut; readonly warnings: string[] };

export async function review(req: AdmissionRequest, settings: InjectorSettings, namespaces: NamespaceLookup): Promise<ReviewOutcome> {
  const answer = (extra: Partial<AdmissionResponse> = {}): AdmissionReviewOut => ({
    apiVersion: ADMISSION_API_VERSION,
    kind: 'AdmissionReview',
    response: { uid: req.uid, allowed: true, ...extra },
  });
  if (!isPodCreate(req)) return { kind: 'ignored', review: answer() };
  if (typeof req.object !== 'object' || req.object === null || Array.isArray(req.object)) {
    throw new HttpError(400, 'NOT_ADMISSION_REVIEW', 'request.object must be the Pod (an object) for a Pod CREATE');
  }
  const pod = req.object as PodLike;
  const name = req.namespace || pod.metadata?.namespace || 'default';
  const namespace = needsNamespaceLabels(pod, name, settings) ? await namespaces(name) : { name };

  const result = injectPod(pod, namespace, settings);
  const warnings = result.warnings.length ? { warnings: result.warnings } : {};
  if (!result.injected) return { kind: 'skipped', skip: result.skip, warnings: result.warnings, review: answer(warnings) };
  const patch = diffPatch(pod, result.pod);
  return {
    kind: 'injected',
    namespace: name,
    patch,
    warnings: result.warnings,
    review: answer({ patchType: 'JSONPatch', patch: Buffer.from(JSON.stringify(patch)).toString('base64'), ...warnings }),
  };
}

/** The namespace's labels only matter when the pod does not decide for itself. */
function needsNamespaceLabels(pod: PodLike, namespace: string, settings: InjectorSettings): boolean {
  if (SYSTEM_NAMESPACES.includes(namespace) || namespace === settings.controlPlaneNamespace) return false;
  const choice = pod.metadata?.annotations?.[INJECT_KEY];
  return choice !== 'enabled' && choice !== 'disabled';
}
