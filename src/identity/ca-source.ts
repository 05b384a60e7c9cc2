// Identity from the control plane's CA: a fresh P-256 key in memory, a CSR for the pod's SPIFFE
// ID, POST /v1/certificate with the projected service-account token; rotation at 2/3 of the
// lifetime; while the CA is down, retries with exponential backoff and jitter, serving with the
// current certificate until it expires. Nothing is written to disk.
import { readFile } from 'node:fs/promises';
import { request } from 'node:https';
import type { Registry } from 'prom-client';
import type { Logger } from '../log/log.ts';
import { systemClock, type Clock, type Timer } from './clock.ts';
import { IdentityState, makeIdentity, IdentityInvalidError, type IdentityProvider } from './provider.ts';
import { spiffeIdOf } from './spiffe.ts';

export const CA_SOURCE_DEFAULTS = {
  tokenFile: '/var/run/secrets/tsmesh/token',
  caFile: '/etc/tsmesh/trust/ca.crt',
  /** Renew when this share of the certificate's lifetime has passed (DESIGN.md: 2/3). */
  rotateAt: 2 / 3,
  backoffInitialMs: 1000,
  backoffMaxMs: 60_000,
  requestTimeoutMs: 10_000,
  /** Never renew sooner than this after a success (guards against a CA handing out stale certificates). */
  minRefreshMs: 1000,
} as const;

/** What POST /v1/certificate answers. */
export interface CertificateResponse {
  readonly certChain: readonly string[];
  readonly trustAnchors: readonly string[];
  readonly expiresAt?: string;
}

/** Sends a CSR to a CA and returns its answer; throws on any failure. */
export type CertificateFetch = (csrPem: string) => Promise<CertificateResponse>;

export class CertificateFetchError extends Error {
  override readonly name = 'CertificateFetchError';
  readonly code = 'TSMESH_IDENTITY_CA_REQUEST_FAILED';
  /** HTTP status, or undefined for a transport failure. */
  readonly status: number | undefined;
  /** The CA's error code (TSMESH_CA_*), when it sent one. */
  readonly caCode: string | undefined;
  constructor(message: string, options: { status?: number; caCode?: string; cause?: unknown } = {}) {
    super(message, options.cause ? { cause: options.cause } : undefined);
    this.status = options.status;
    this.caCode = options.caCode;
  }
}

/**
 * The real transport: HTTPS POST <controlPlane>/v1/certificate, trusting only `caFile` (the
 * mounted trust anchor), with the token read from `tokenFile` at each request (projected tokens
 * are refreshed by the kubelet).
 */
export function httpsCertificateFetch(options: { controlPlane: string; tokenFile?: string; caFile?: string; timeoutMs?: number }): CertificateFetch {
  const url = new URL('/v1/certificate', options.controlPlane);
  const tokenFile = options.tokenFile ?? CA_SOURCE_DEFAULTS.tokenFile;
  const caFile = options.caFile ?? CA_SOURCE_DEFAULTS.caFile;
  const timeoutMs = options.timeoutMs ?? CA_SOURCE_DEFAULTS.requestTimeoutMs;
  return async (csrPem) => {
    const read = async (path: string, what: string): Promise<string> => {
      try {
        return await readFile(path, 'utf8');
      } catch (err) {
        throw new CertificateFetchError(`cannot read the ${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
      }
    };
    const [token, ca] = await Promise.all([read(tokenFile, 'service-account token'), read(caFile, 'trust anchor')]);
    const body = JSON.stringify({ csr: csrPem });
    return new Promise<CertificateResponse>((resolve, reject) => {
      const req = request(
        url,
        {
          method: 'POST',
          ca,
          timeout: timeoutMs,
          agent: false,
          headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), authorization: `Bearer ${token.trim()}` },
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            size += c.length;
            if (size > 1024 * 1024) res.destroy(new Error('response larger than 1 MiB'));
            else chunks.push(c);
          });
          res.on('error', (err) => reject(new CertificateFetchError(`reading the CA's answer failed: ${err.message}`, { cause: err })));
          res.on('end', () => {
            let json: unknown;
            try {
              json = JSON.parse(Buffer.concat(chunks).toString('utf8'));
            } catch {
              json = undefined;
            }
            const status = res.statusCode ?? 0;
            if (status !== 200) {
              const e = (json as { error?: { code?: string; message?: string } } | undefined)?.error;
              reject(new CertificateFetchError(`the CA answered ${status}${e?.code ? ` ${e.code}` : ''}: ${e?.message ?? 'no error message'}`, { status, ...(e?.code ? { caCode: e.code } : {}) }));
              return;
            }
            const r = json as Partial<CertificateResponse> | undefined;
            if (!r || !Array.isArray(r.certChain) || !Array.isArray(r.trustAnchors) || !r.certChain.every((c) => typeof c === 'string') || !r.trustAnchors.every((c) => typeof c === 'string')) {
              reject(new CertificateFetchError('the CA answered 200 without { certChain: [PEM...], trustAnchors: [PEM...] }', { status }));
              return;
            }
            resolve(r as CertificateResponse);
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
      req.on('error', (err) => reject(new CertificateFetchError(`cannot reach the CA at ${url.origin}: ${err.message}`, { cause: err })));
      req.end(body);
    });
  };
}

export interface CAIdentityOptions {
  readonly trustDomain: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  /** How to reach the CA: `httpsCertificateFetch(...)` in a pod, or an in-process CA in local mode. */
  readonly fetchCertificate: CertificateFetch;
  readonly clock?: Clock;
  /** 0 <= random() < 1, for jitter. */
  readonly random?: () => number;
  readonly log?: Logger;
  /** Where tsmesh_certificate_expiry_seconds is registered. */
  readonly registry?: Registry;
  readonly rotateAt?: number;
  readonly backoffInitialMs?: number;
  readonly backoffMaxMs?: number;
}

/** Starts fetching at once; `ready` resolves with the first certificate. */
export function createCAIdentityProvider(options: CAIdentityOptions): IdentityProvider {
  const clock = options.clock ?? systemClock;
  const random = options.random ?? Math.random;
  const rotateAt = options.rotateAt ?? CA_SOURCE_DEFAULTS.rotateAt;
  const initial = options.backoffInitialMs ?? CA_SOURCE_DEFAULTS.backoffInitialMs;
  const max = options.backoffMaxMs ?? CA_SOURCE_DEFAULTS.backoffMaxMs;
  const expected = spiffeIdOf(options);
  const log = options.log?.child({ component: 'identity' });
  let timer: Timer | undefined;
  let failures = 0;

  const state = new IdentityState({ clock, ...(log ? { log } : {}), ...(options.registry ? { registry: options.registry } : {}), onClose: () => timer?.cancel() });

  const schedule = (ms: number, why: string): void => {
    timer?.cancel();
    if (state.closed) return;
    log?.debug({ inMs: Math.round(ms), why }, 'next certificate request scheduled');
    timer = clock.setTimer(() => void attempt(), ms);
  };

  async function attempt(): Promise<void> {
    if (state.closed) return;
    try {
      // A new key for every certificate: a key never outlives the certificate it was made for.
      // @peculiar/x509 builds the CSR; loaded here, where it is used (./certificates.ts).
      const { createCsr, generateP256, privateKeyToPem } = await import('./x509.ts');
      const keys = await generateP256(true);
      const csr = await createCsr(keys, [expected]);
      const answer = await options.fetchCertificate(csr);
      const identity = makeIdentity(
        { certChainPem: answer.certChain.join(''), keyPem: await privateKeyToPem(keys.privateKey), trustAnchorsPem: answer.trustAnchors.join('') },
        clock.now(),
        { chain: "the CA's certificate chain", key: 'our key', anchors: "the CA's trust anchors" },
      );
      if (identity.spiffeId !== expected) {
        // The CA names who the token says we are; the environment may disagree (e.g. a wrong SERVICE_ACCOUNT).
        log?.warn({ expected, got: identity.spiffeId }, 'the CA issued a different identity than this sidecar expected; using the one in the certificate');
      }
      if (state.closed) return;
      const first = !state.isReady;
      failures = 0;
      state.install(identity);
      const life = identity.notAfter.getTime() - identity.notBefore.getTime();
      const renewAt = identity.notBefore.getTime() + life * rotateAt;
      log?.info({ spiffeId: identity.spiffeId, notAfter: identity.notAfter.toISOString(), renewAt: new Date(renewAt).toISOString() }, first ? 'workload certificate obtained' : 'workload certificate rotated');
      schedule(Math.max(renewAt - clock.now(), CA_SOURCE_DEFAULTS.minRefreshMs), 'rotation');
    } catch (err) {
      if (state.closed) return;
      failures++;
      // Exponential backoff with "equal jitter": half the step fixed, half random.
      const step = Math.min(max, initial * 2 ** Math.min(failures - 1, 30));
      let wait = step / 2 + random() * (step / 2);
      const cur = state.isReady ? state.current() : undefined;
      if (cur) {
        const left = cur.notAfter.getTime() - clock.now();
        // Try at least once more before the current certificate expires.
        if (left > 0) wait = Math.min(wait, Math.max(left / 2, CA_SOURCE_DEFAULTS.minRefreshMs));
      }
      const fields = {
        err: err instanceof CertificateFetchError || err instanceof IdentityInvalidError ? undefined : err,
        reason: (err as Error).message,
        code: (err as { code?: string }).code,
        failures,
        retryInMs: Math.round(wait),
        ...(cur ? { servingWith: cur.spiffeId, notAfter: cur.notAfter.toISOString() } : {}),
      };
      if (cur && cur.notAfter.getTime() > clock.now()) log?.warn(fields, 'cannot renew the workload certificate; still serving with the current one');
      else log?.error(fields, 'cannot get a workload certificate');
      schedule(wait, 'retry');
    }
  }

  void attempt();
  return state;
}
