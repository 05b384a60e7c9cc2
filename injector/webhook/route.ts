// POST /inject: the mutating webhook as a route of the control plane server. Transport only:
// body limit, JSON, AdmissionReview decoding, logging and counting; the decision and the patch
// come from ./admission.ts.
import type { RouteHandler } from '../server/server.ts';
import { HttpError, readJson, sendJson, DEFAULT_BODY_LIMIT } from '../server/http.ts';
import type { Logger } from '../../src/log/log.ts';
import type { InjectorSettings } from '../inject/settings.ts';
import { decodeReview, review, type NamespaceLookup } from './admission.ts';
import type { WebhookMetrics } from './metrics.ts';

export const INJECT_PATH = '/inject';

export interface WebhookOptions {
  readonly settings: InjectorSettings;
  readonly namespaces: NamespaceLookup;
  readonly logger: Logger;
  readonly metrics: WebhookMetrics;
  readonly bodyLimit?: number;
  /**
   * Called after each injection (never for a dry run: the webhook is declared
   * sideEffects: NoneOnDryRun) with the pod's namespace; the CA publishes its trust anchor there.
   */
  readonly onInjected?: (namespace: string) => void;
}

export function webhookRoute(options: WebhookOptions): RouteHandler {
  const { settings, namespaces, metrics } = options;
  const log = options.logger.child({ component: 'webhook' });
  const limit = options.bodyLimit ?? DEFAULT_BODY_LIMIT;
  return async (req, res) => {
    try {
      if (req.method !== 'POST') throw new HttpError(405, 'METHOD_NOT_ALLOWED', `use POST ${INJECT_PATH} with an AdmissionReview`);
      const request = decodeReview(await readJson(req, limit));
      let outcome;
      try {
        outcome = await review(request, settings, namespaces);
      } catch (err) {
        if (err instanceof HttpError) throw err;
        // e.g. the namespace could not be read: an HTTP error makes the API server apply the
        // webhook's failurePolicy.
        throw new HttpError(500, 'REVIEW_FAILED', `cannot review pod: ${(err as Error).message}`, { cause: err });
      }
      const pod = { uid: request.uid, namespace: request.namespace, name: request.name || podName(request.object), dryRun: request.dryRun };
      switch (outcome.kind) {
        case 'ignored':
          metrics.skips.inc({ reason: 'not-pod-create' });
          log.debug({ ...pod, kind: request.kind.kind, operation: request.operation }, 'not a Pod CREATE: allowed unchanged');
          break;
        case 'skipped':
          metrics.skips.inc({ reason: outcome.skip.code });
          log.info({ ...pod, skip: outcome.skip.code, warnings: outcome.warnings }, `not injected: ${outcome.skip.message}`);
          break;
        case 'injected':
          metrics.injections.inc();
          if (!request.dryRun) options.onInjected?.(outcome.namespace);
          log.info({ ...pod, operations: outcome.patch.length, warnings: outcome.warnings }, 'sidecar injected');
          break;
      }
      if (outcome.kind !== 'ignored' && outcome.warnings.length) metrics.warnings.inc(outcome.warnings.length);
      sendJson(res, 200, outcome.review);
    } catch (err) {
      if (err instanceof HttpError) metrics.errors.inc({ code: err.code });
      else metrics.errors.inc({ code: 'INTERNAL' });
      throw err;
    }
  };
}

function podName(object: unknown): string | undefined {
  const meta = (object as { metadata?: { name?: string; generateName?: string } } | undefined)?.metadata;
  return meta?.name || (meta?.generateName ? `${meta.generateName}*` : undefined);
}
