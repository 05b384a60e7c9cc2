// Failures of calls to the Kubernetes API server, said the same way everywhere in the control
// plane and `tsmesh check`: what was tried, the API server it was tried at, and the cause
// (the server's own Status message, or the socket error under client-node's "fetch failed").
import { ApiException } from '@kubernetes/client-node';
import { CodedError } from '../../src/errors/errors.ts';
import { describeError } from '../../src/errors/describe.ts';

export const KUBE_ERROR_CODES = {
  TSMESH_KUBE_API: 'a call to the Kubernetes API server failed',
  TSMESH_KUBE_NO_CONFIG: 'no Kubernetes cluster is configured (no kubeconfig, not in a pod)',
  TSMESH_KUBE_CONFIG_INVALID: 'the kubeconfig cannot be used',
} as const;

export class KubeApiError extends CodedError<keyof typeof KUBE_ERROR_CODES> {
  override readonly name = 'KubeApiError';
  /** The HTTP status the API server answered with; undefined when no answer came. */
  readonly status: number | undefined;
  constructor(message: string, status: number | undefined, options?: { cause?: unknown; code?: keyof typeof KUBE_ERROR_CODES }) {
    super(options?.code ?? 'TSMESH_KUBE_API', message, options);
    this.status = status;
  }
}

/** The HTTP status of a client-node failure, when the API server answered. */
export function statusOf(err: unknown): number | undefined {
  if (err instanceof KubeApiError) return err.status;
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'number' ? code : undefined;
}

/** The API server's answer in a few words: "HTTP 403: secrets is forbidden: ...". */
function answer(err: ApiException<unknown>): string {
  const body = err.body as { message?: string } | string | undefined;
  let detail = typeof body === 'string' ? body : body?.message;
  if (typeof body === 'string') {
    try {
      detail = (JSON.parse(body) as { message?: string }).message ?? body;
    } catch {
      /* not JSON: keep the text */
    }
  }
  // Codes a method does not declare (401 on most) come without a body: the message has the reason.
  detail ??= /^Message: (.+)$/m.exec(err.message)?.[1];
  return `HTTP ${err.code}${detail ? `: ${detail.slice(0, 300)}` : ''}`;
}

/** What a failed call says: "HTTP 404: ..." or "fetch failed: connect ECONNREFUSED 10.0.0.1:6443". */
export function kubeCause(err: unknown): string {
  return err instanceof ApiException ? answer(err) : describeError(err);
}

/**
 * The error for a failed call: "cannot WHAT at https://server: CAUSE". `server` is the API
 * server's URL (apiServerOf in ./config.ts); left out when the caller does not know it.
 */
export function kubeApiError(what: string, err: unknown, server?: string): KubeApiError {
  const where = server ? ` at ${server}` : '';
  return new KubeApiError(`cannot ${what}${where}: ${kubeCause(err)}`, statusOf(err), { cause: err });
}
