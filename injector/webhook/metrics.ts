// The webhook's Prometheus counters, registered in the control plane's registry.
import { Counter, type Registry } from 'prom-client';
import { SKIP_CODES } from '../inject/skip.ts';

export interface WebhookMetrics {
  readonly injections: Counter<never>;
  readonly skips: Counter<'reason'>;
  readonly warnings: Counter<never>;
  readonly errors: Counter<'code'>;
}

export function webhookMetrics(registry: Registry): WebhookMetrics {
  const m: WebhookMetrics = {
    injections: new Counter({ name: 'tsmesh_injector_injections_total', help: 'Pods the sidecar was injected into', registers: [registry] }),
    skips: new Counter({ name: 'tsmesh_injector_skips_total', help: 'Admission reviews answered without injection, by reason', labelNames: ['reason'], registers: [registry] }),
    warnings: new Counter({ name: 'tsmesh_injector_warnings_total', help: 'Warnings returned to the API server (bad annotation values, probes left alone)', registers: [registry] }),
    errors: new Counter({ name: 'tsmesh_injector_errors_total', help: 'Webhook requests refused or failed, by error code', labelNames: ['code'], registers: [registry] }),
  };
  for (const reason of [...SKIP_CODES, 'not-pod-create']) m.skips.inc({ reason }, 0);
  return m;
}
