// The errors of the local netns cluster (src/localcluster/netns.ts), each with a stable code.
import { CodedError } from '../errors/errors.ts';

export const LOCALCLUSTER_ERROR_CODES = {
  TSMESH_LOCALCLUSTER_UNSUPPORTED: 'this machine cannot build network-namespace pods (not root, not Linux, a command missing, files unreadable by the pod users)',
  TSMESH_LOCALCLUSTER_BAD_INPUT: 'the cluster was described wrongly (duplicate or unknown pod, empty command)',
  TSMESH_LOCALCLUSTER_SETUP_FAILED: 'a command that builds the cluster failed (ip, iptables-restore, tsmesh init)',
  TSMESH_LOCALCLUSTER_TIMEOUT: 'a process in a pod did not become ready in time',
  TSMESH_LOCALCLUSTER_PROCESS_EXITED: 'a process in a pod exited before it was ready',
  TSMESH_LOCALCLUSTER_CLOSED: 'the cluster was closed while something still waited on it',
} as const;

export type LocalClusterErrorCode = keyof typeof LOCALCLUSTER_ERROR_CODES;

export class LocalClusterError extends CodedError<LocalClusterErrorCode> {
  override readonly name = 'LocalClusterError';
  constructor(code: LocalClusterErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, `netns cluster: ${message}`, options);
  }
}
