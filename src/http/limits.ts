// Admission of an HTTP request (TSMESH_* settings, src/config/settings.ts): requests in flight
// (TSMESH_MAX_REQUESTS) and a declared body over TSMESH_MAX_REQUEST_BODY. One place, for both
// pipelines; the header and idle timeouts are the HTTP/1.1 core's (src/http1/server.ts).
import { ProxyError } from '../errors/errors.ts';
import type { Limits } from '../config/settings.ts';

/** The refusal for a request the sidecar will not take now, if any. */
export function admission(req: { readonly headers: { readonly 'content-length'?: string | string[] | number | undefined } }, limits: Limits, full: boolean): ProxyError | undefined {
  if (full) return new ProxyError('OVERLOADED', 'the sidecar has as many requests in flight as it takes (TSMESH_MAX_REQUESTS)');
  return declaredBodyTooLarge(req.headers['content-length'], limits.maxRequestBodyBytes);
}

/** The refusal of a request whose declared length (content-length, HTTP/1.1 or HTTP/2) is over the limit. */
export function declaredBodyTooLarge(contentLength: string | string[] | number | undefined, max: number | undefined): ProxyError | undefined {
  const declared = Number(Array.isArray(contentLength) ? contentLength[0] : contentLength);
  return max !== undefined && declared > max ? bodyTooLarge(declared, max) : undefined;
}

/** 413 body-too-large: `bytes` declared, or counted so far (an HTTP/2 body is counted as it arrives). */
export function bodyTooLarge(bytes: number, max: number): ProxyError {
  return new ProxyError('BODY_TOO_LARGE', `the request body (${bytes} bytes) is larger than the limit of ${max} bytes (TSMESH_MAX_REQUEST_BODY)`);
}
