// POST /v1/certificate: JSON { csr: PEM } + `Authorization: Bearer <projected SA token>`
// -> 200 JSON { certChain: [leaf, ...intermediates], trustAnchors: [root], expiresAt, spiffeId }.
// Every refusal is JSON { error: { code, message } } with a stable code (./errors.ts); floods get
// 429 from token buckets (global and per client) before they cost a TokenReview or a signature.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Counter, Registry } from 'prom-client';
import type { Logger } from '../../src/log/log.ts';
import type { CA } from './ca.ts';
import { CAError } from './errors.ts';
import { readBody as readLimitedBody, type HttpError } from '../server/http.ts';
import { KeyedBuckets, TokenBucket, type BucketSpec } from './rate-limit.ts';
import type { TokenVerifier } from './token.ts';

export const CERTIFICATE_PATH = '/v1/certificate';

export const HANDLER_DEFAULTS = {
  maxBodyBytes: 16 * 1024, // a P-256 CSR is ~0.5 KiB
  perClient: { ratePerSec: 1, burst: 10 } satisfies BucketSpec,
  global: { ratePerSec: 50, burst: 200 } satisfies BucketSpec,
} as const;

export interface CertificateHandlerOptions {
  readonly ca: CA;
  readonly verifier: TokenVerifier;
  /** prom-client registry for tsmesh_ca_* metrics; default: a new one (see `handler.registry`). */
  readonly registry?: Registry;
  readonly log?: Logger;
  readonly maxBodyBytes?: number;
  readonly rateLimit?: { readonly perClient?: BucketSpec; readonly global?: BucketSpec };
  /** What identifies a client for its rate limit; default: the remote address. */
  readonly clientKey?: (req: IncomingMessage) => string;
  readonly now?: () => number;
}

export interface CertificateHandler {
  (req: IncomingMessage, res: ServerResponse): void;
  readonly registry: Registry;
}

export function createCertificateHandler(options: CertificateHandlerOptions): CertificateHandler {
  const { ca, verifier, log } = options;
  const now = options.now ?? Date.now;
  const maxBodyBytes = options.maxBodyBytes ?? HANDLER_DEFAULTS.maxBodyBytes;
  const clientKey = options.clientKey ?? ((req: IncomingMessage) => req.socket.remoteAddress ?? 'unknown');
  const perClient = new KeyedBuckets(options.rateLimit?.perClient ?? HANDLER_DEFAULTS.perClient);
  const global = new TokenBucket(options.rateLimit?.global ?? HANDLER_DEFAULTS.global, now());
  const registry = options.registry ?? new Registry();
  const issued = new Counter({
    name: 'tsmesh_ca_certificates_issued_total',
    help: 'Workload certificates issued by the tsmesh CA',
    registers: [registry],
  });
  const requests = new Counter({
    name: 'tsmesh_ca_requests_total',
    help: 'Certificate requests to the tsmesh CA, by result (issued or the error code)',
    labelNames: ['result'] as const,
    registers: [registry],
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const client = clientKey(req);
    const t = now();
    const waitGlobal = global.take(t);
    if (waitGlobal > 0) throw rateLimited(waitGlobal, 'the CA is busy');
    const bucket = perClient.get(client, t);
    const waitClient = bucket.take(t);
    if (waitClient > 0) {
      global.giveBack();
      throw rateLimited(waitClient, `too many requests from ${client}`);
    }

    const path = (req.url ?? '').split('?')[0];
    if (path !== CERTIFICATE_PATH) throw new CAError('TSMESH_CA_NOT_FOUND', `no such endpoint ${path}; the CA serves POST ${CERTIFICATE_PATH}`);
    if (req.method !== 'POST') {
      res.setHeader('allow', 'POST');
      throw new CAError('TSMESH_CA_METHOD_NOT_ALLOWED', `${req.method} is not allowed; use POST`);
    }
    const type = req.headers['content-type'];
    if (type !== undefined && !/^application\/json\s*(;|$)/i.test(type)) {
      throw new CAError('TSMESH_CA_UNSUPPORTED_MEDIA_TYPE', `content-type must be application/json, got "${type}"`);
    }
    const auth = req.headers.authorization ?? '';
    const m = /^Bearer\s+(\S+)\s*$/i.exec(auth);
    if (!m) {
      throw new CAError('TSMESH_CA_UNAUTHENTICATED', auth ? 'the Authorization header must be "Bearer <token>"' : 'no service-account token: send the projected token (audience "tsmesh") as "Authorization: Bearer <token>"');
    }
    const body = await readBody(req, maxBodyBytes);
    const csr = parseRequest(body);
    const caller = await verifier.verify(m[1]!);
    const cert = await ca.issue(csr, caller);
    issued.inc();
    requests.inc({ result: 'issued' });
    log?.info({ client, spiffeId: cert.spiffeId, pod: caller.podName, expiresAt: cert.expiresAt, ignored: cert.ignored.length ? cert.ignored : undefined }, 'certificate issued');
    sendJson(res, 200, {
      certChain: cert.certChain,
      trustAnchors: cert.trustAnchors,
      expiresAt: cert.expiresAt,
      spiffeId: cert.spiffeId,
      ...(cert.ignored.length ? { warnings: cert.ignored.map((i) => `ignored the CSR's ${i}: the certificate names only ${cert.spiffeId}`) } : {}),
    });
  }

  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    handle(req, res).catch((err: unknown) => {
      const e = err instanceof CAError ? err : new CAError('TSMESH_CA_INTERNAL', 'internal error while issuing the certificate', { cause: err });
      requests.inc({ result: e.result });
      const fields = { client: clientKey(req), code: e.code, err: e.code === 'TSMESH_CA_INTERNAL' ? err : undefined };
      if (e.status >= 500) log?.error(fields, e.message);
      else if (e.code !== 'TSMESH_CA_RATE_LIMITED') log?.warn(fields, e.message);
      if (e.code === 'TSMESH_CA_RATE_LIMITED') res.setHeader('retry-after', String((e as RateLimited).retryAfterSec));
      if (res.headersSent) {
        res.destroy();
        return;
      }
      // Unread body (too large, or refused before reading): close rather than drain it.
      if (!req.complete) res.setHeader('connection', 'close');
      sendJson(res, e.status, { error: { code: e.code, message: e.message } });
      if (!req.complete) res.on('finish', () => req.destroy());
    });
  };
  return Object.assign(handler, { registry });
}

class RateLimited extends CAError {
  readonly retryAfterSec: number;
  constructor(waitMs: number, message: string) {
    const sec = Math.max(1, Math.ceil(waitMs / 1000));
    super('TSMESH_CA_RATE_LIMITED', `${message}; retry in ${sec} s`);
    this.retryAfterSec = sec;
  }
}
const rateLimited = (waitMs: number, message: string): RateLimited => new RateLimited(waitMs, message);

function parseRequest(body: Buffer): string {
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw new CAError('TSMESH_CA_BAD_REQUEST', `the body is not JSON: ${(err as Error).message}`);
  }
  const csr = (json as { csr?: unknown } | null)?.csr;
  if (typeof json !== 'object' || json === null || Array.isArray(json) || typeof csr !== 'string' || csr.trim() === '') {
    throw new CAError('TSMESH_CA_BAD_REQUEST', 'the body must be a JSON object { "csr": "<PEM certificate request>" }');
  }
  return csr;
}

/** The control plane's body reader, with its errors as the CA's coded errors (metrics, JSON). */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return readLimitedBody(req, limit).catch((err: unknown) => {
    const e = err as HttpError;
    throw new CAError(e.status === 413 ? 'TSMESH_CA_BODY_TOO_LARGE' : 'TSMESH_CA_BAD_REQUEST', e.message, { cause: err });
  });
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
  res.end(body);
}
