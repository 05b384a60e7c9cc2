// Readiness (GET /healthz/ready): ready when not draining, the registry is loaded and, with an identity,
// its first certificate exists; otherwise the reasons why not.
export interface ReadinessInputs {
  readonly draining: boolean;
  readonly registryLoaded: boolean;
  /** The sidecar has a workload identity whose first certificate has not come yet. */
  readonly awaitingCertificate: boolean;
}

export function readiness(s: ReadinessInputs): { ok: boolean; reasons: string[] } {
  const reasons: string[] = [];
  if (s.draining) reasons.push('draining');
  if (!s.registryLoaded) reasons.push('registry not loaded');
  if (s.awaitingCertificate) reasons.push('no workload certificate yet');
  return { ok: reasons.length === 0, reasons };
}
