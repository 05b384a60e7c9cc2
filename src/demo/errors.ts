// The errors of `tsmesh demo`, each with a stable code.
export const DEMO_ERROR_CODES = {
  TSMESH_DEMO_NETNS_UNAVAILABLE: '--mode netns was asked for, but this machine cannot build network-namespace pods',
} as const;

export type DemoErrorCode = keyof typeof DEMO_ERROR_CODES;

export class DemoError extends Error {
  override readonly name = 'DemoError';
  readonly code: DemoErrorCode;
  constructor(code: DemoErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}
