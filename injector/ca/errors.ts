// The CA's error codes: stable, sent to clients as JSON { error: { code, message } } and
// used (lower-cased, without the prefix) as the `result` label of tsmesh_ca_requests_total.
import { CodedError } from '../../src/errors/errors.ts';


export const caCodes = {
  TSMESH_CA_BAD_REQUEST: 400, // not JSON, or no "csr" string
  TSMESH_CA_CSR_INVALID: 400, // not a PEM certificate request, or unreadable
  TSMESH_CA_CSR_SIGNATURE: 400, // the CSR's signature does not verify with its own key
  TSMESH_CA_CSR_KEY_UNSUPPORTED: 400, // not an EC P-256 key
  TSMESH_CA_UNAUTHENTICATED: 401, // no bearer token, or the token was rejected
  TSMESH_CA_FORBIDDEN: 403, // an authenticated user that is not a service account
  TSMESH_CA_NOT_FOUND: 404,
  TSMESH_CA_METHOD_NOT_ALLOWED: 405,
  TSMESH_CA_BODY_TOO_LARGE: 413,
  TSMESH_CA_UNSUPPORTED_MEDIA_TYPE: 415,
  TSMESH_CA_RATE_LIMITED: 429,
  TSMESH_CA_INTERNAL: 500,
  TSMESH_CA_TOKEN_REVIEW_UNAVAILABLE: 503, // the API server could not be asked
} as const;

export type CACode = keyof typeof caCodes;

export class CAError extends CodedError<CACode> {
  override readonly name = 'CAError';
  get status(): number {
    return caCodes[this.code];
  }
  /** The metrics label: TSMESH_CA_CSR_INVALID -> csr_invalid. */
  get result(): string {
    return this.code.slice('TSMESH_CA_'.length).toLowerCase();
  }
}
