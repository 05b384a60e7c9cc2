// `tsmesh check [--pre]`: is the cluster in the kubeconfig ready for tsmesh, or is tsmesh
// working there? One line per condition, a hint under each that does not hold (injector/check).
import { parseArgs } from 'node:util';
import type { Command } from './command.ts';
import { UsageError } from '../errors/errors.ts';
import { runChecks, type Outcome } from '../../injector/check/checks.ts';
import { DEFAULT_CONTROL_PLANE_NAMESPACE } from '../../injector/inject/settings.ts';
import { apiServerOf, loadKubeConfig } from '../../injector/kube/config.ts';

const help = `Usage: tsmesh check [--pre] [-n NAMESPACE]

Checks the cluster of the current kubeconfig context (KUBECONFIG, ~/.kube/config, or the pod's
service account), one line per condition, with a hint under each that does not hold:
  the API server answers (its URL and the error otherwise), its Kubernetes version;
  with --pre (before installing): your permissions to install deploy/;
  without: the control plane's permissions (SelfSubjectAccessReview as its service account),
  the control plane ready, the root certificate's expiry, the webhook configuration and its
  caBundle (the mesh root), the trust anchor in every meshed namespace, meshed pods whose
  sidecar is not ready or is another version than the control plane injects, and whether the
  Gateway API routes are served (mesh routes).
Exit code 0 when every check passes (warnings included), 1 otherwise.

Options:
  --pre                 only what applies before installing
  -n, --namespace NS    the control plane's namespace (default: ${DEFAULT_CONTROL_PLANE_NAMESPACE})
`;

const MARK: Record<Outcome, string> = { ok: 'ok  ', warn: 'warn', fail: 'FAIL', skip: 'skip' };

const command: Command = {
  summary: 'check that the cluster is ready for tsmesh, or that tsmesh works there',
  help,
  async run(argv) {
    let args;
    try {
      args = parseArgs({ args: argv, options: { pre: { type: 'boolean' }, namespace: { type: 'string', short: 'n' } }, allowPositionals: false });
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
    const kubeConfig = loadKubeConfig();
    const pre = args.values.pre ?? false;
    process.stdout.write(`tsmesh check${pre ? ' --pre' : ''}: ${apiServerOf(kubeConfig)} (context ${kubeConfig.getCurrentContext()})\n`);
    const results = await runChecks({ kubeConfig, namespace: args.values.namespace ?? DEFAULT_CONTROL_PLANE_NAMESPACE, pre });
    for (const r of results) {
      process.stdout.write(`${MARK[r.outcome]}  ${r.name}: ${r.detail}\n`);
      if (r.hint && r.outcome !== 'ok') process.stdout.write(`      hint: ${r.hint}\n`);
    }
    const failed = results.filter((r) => r.outcome === 'fail' || r.outcome === 'skip').length;
    const warned = results.filter((r) => r.outcome === 'warn').length;
    process.stdout.write(failed ? `${failed} of ${results.length} checks did not pass\n` : `all ${results.length} checks passed${warned ? ` (${warned} with a warning)` : ''}\n`);
    return failed ? 1 : 0;
  },
};
export default command;
