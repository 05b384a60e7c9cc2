// The errors of `tsmesh demo`, each with a stable code.
import { CodedError } from '../errors/errors.ts';

export const DEMO_ERROR_CODES = {
  TSMESH_DEMO_NETNS_UNAVAILABLE: '--mode netns was asked for, but this machine cannot build network-namespace pods',
} as const;

export type DemoErrorCode = keyof typeof DEMO_ERROR_CODES;

export class DemoError extends CodedError<DemoErrorCode> {
  override readonly name = 'DemoError';
}
