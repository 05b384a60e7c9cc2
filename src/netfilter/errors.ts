// The errors of `tsmesh init`, each with a stable code (listed in docs/interception.md).
import { CodedError } from '../errors/errors.ts';

export const INIT_ERROR_CODES = {
  TSMESH_INIT_NO_NET_ADMIN: 'the init container needs the NET_ADMIN capability (and NET_RAW) to change the nat table',
  TSMESH_INIT_IPTABLES_MISSING: 'iptables-save / iptables-restore (or the ip6tables pair) not found on PATH',
  TSMESH_INIT_IPTABLES_FAILED: 'iptables-restore or iptables-save failed',
} as const;

export type InitErrorCode = keyof typeof INIT_ERROR_CODES;

export class InitError extends CodedError<InitErrorCode> {
  override readonly name = 'InitError';
}
