// Who is asking for a certificate: a TokenVerifier turns the bearer token of a request into a
// Kubernetes service account. In a cluster that is the TokenReview API (the pod's projected
// token, audience "tsmesh"); in local mode and tests a static table.
import type { AuthenticationV1Api } from '@kubernetes/client-node';
import { serviceAccountOfUsername } from '../../src/identity/spiffe.ts';
import { CAError } from './errors.ts';

export const TOKEN_AUDIENCE = 'tsmesh';

export interface VerifiedCaller {
  readonly namespace: string;
  readonly serviceAccount: string;
  /** As authenticated, e.g. system:serviceaccount:default:pod-a. */
  readonly username: string;
  /** The pod the token is bound to, when the API server says so. */
  readonly podName?: string;
}

export interface TokenVerifier {
  /** Resolves the caller, or rejects with a CAError (UNAUTHENTICATED, FORBIDDEN, TOKEN_REVIEW_UNAVAILABLE). */
  verify(token: string): Promise<VerifiedCaller>;
}

function callerOf(username: string, extra?: Record<string, string[]>): VerifiedCaller {
  const sa = serviceAccountOfUsername(username);
  if (!sa) throw new CAError('TSMESH_CA_FORBIDDEN', `"${username}" is not a service account; certificates are issued only to service accounts`);
  const podName = extra?.['authentication.kubernetes.io/pod-name']?.[0];
  return { ...sa, username, ...(podName ? { podName } : {}) };
}

/**
 * Verifies tokens with the TokenReview API (authentication.k8s.io/v1), asking for `audiences`
 * (default ["tsmesh"]) and requiring the API server to confirm one of them.
 */
export function tokenReviewVerifier(options: { api: AuthenticationV1Api; audiences?: readonly string[]; timeoutMs?: number }): TokenVerifier {
  const audiences = [...(options.audiences ?? [TOKEN_AUDIENCE])];
  const timeoutMs = options.timeoutMs ?? 10_000;
  return {
    async verify(token) {
      let timer: NodeJS.Timeout | undefined;
      let review;
      try {
        review = await Promise.race([
          options.api.createTokenReview({ body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences } } }),
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
          }),
        ]);
      } catch (err) {
        const code = (err as { code?: number }).code;
        throw new CAError('TSMESH_CA_TOKEN_REVIEW_UNAVAILABLE', `cannot verify the token: TokenReview failed${typeof code === 'number' ? ` (HTTP ${code})` : ''}: ${(err as Error).message}`, { cause: err });
      } finally {
        clearTimeout(timer);
      }
      const status = review.status ?? {};
      if (!status.authenticated) {
        throw new CAError('TSMESH_CA_UNAUTHENTICATED', `the token was rejected${status.error ? `: ${status.error}` : ''}`);
      }
      // The API server echoes the audiences the token is valid for; it must include ours.
      if (!(status.audiences ?? []).some((a) => audiences.includes(a))) {
        throw new CAError('TSMESH_CA_UNAUTHENTICATED', `the token is not for audience ${audiences.map((a) => `"${a}"`).join(' or ')} (mount a projected service-account token with that audience)`);
      }
      return callerOf(status.user?.username ?? '', status.user?.extra);
    },
  };
}

/** Local mode and tests: a fixed token -> service account table. */
export function staticTokenVerifier(tokens: Readonly<Record<string, { namespace: string; serviceAccount: string }>>): TokenVerifier {
  const table = new Map(Object.entries(tokens));
  return {
    async verify(token) {
      const sa = table.get(token);
      if (!sa) throw new CAError('TSMESH_CA_UNAUTHENTICATED', 'the token was rejected: unknown token');
      return callerOf(`system:serviceaccount:${sa.namespace}:${sa.serviceAccount}`);
    },
  };
}
