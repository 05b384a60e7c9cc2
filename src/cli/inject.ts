// `tsmesh inject -f FILE`: print manifests with the sidecar injected, as the webhook would.
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import type { Command } from './command.ts';
import { ConfigError, UsageError } from '../errors/errors.ts';
import { injectManifests } from '../../injector/manifests/manifests.ts';
import { injectorSettingsFromEnv, INJECTOR_ENV } from '../../injector/inject/settings.ts';

const help = `Usage: tsmesh inject -f FILE [-f FILE...] [-n NAMESPACE] [--quiet]

Prints the manifests in FILE (multi-document YAML; "-" reads standard input) with the
tsmesh sidecar injected into every Pod and into the pod template of every Deployment,
StatefulSet, DaemonSet, ReplicaSet, Job and CronJob, as the admission webhook would.
Other kinds pass through untouched; the documents keep their order.

  kubectl apply -f <(tsmesh inject -f app.yaml)
  helm template . | tsmesh inject -f - | kubectl apply -f -

The namespace counts as enabled (you asked for injection); a pod annotated
tsmesh.io/inject: "disabled", pods in kube-system, kube-public and the control plane's
namespace, hostNetwork pods and pods already injected are printed unchanged. What was
skipped, and every bad annotation value, is reported on standard error.

Options:
  -f, --filename FILE   manifests to read ("-" for standard input); may be repeated
  -n, --namespace NS    namespace of objects that name none (default: default)
  -q, --quiet           do not report skips and warnings on standard error

Environment (the injector's settings): ${INJECTOR_ENV.join(', ')}
`;

const command: Command = {
  summary: 'print manifests with the sidecar injected, as the webhook would',
  help,
  async run(argv) {
    let args;
    try {
      args = parseArgs({
        args: argv,
        options: {
          filename: { type: 'string', short: 'f', multiple: true },
          namespace: { type: 'string', short: 'n' },
          quiet: { type: 'boolean', short: 'q' },
        },
        allowPositionals: false,
      });
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
    const files = args.values.filename ?? [];
    if (files.length === 0) throw new UsageError('no input: give -f FILE (or -f - for standard input)');
    const settings = injectorSettingsFromEnv();
    const outputs: string[] = [];
    for (const file of files) {
      let text: string;
      try {
        text = file === '-' ? await readStdin() : await readFile(file, 'utf8');
      } catch (err) {
        throw new ConfigError(file, [`cannot read: ${(err as Error).message}`]);
      }
      const source = file === '-' ? 'stdin' : file;
      const { output, reports } = injectManifests(text, settings, { namespace: args.values.namespace, source });
      if (output.trim()) outputs.push(output);
      if (!args.values.quiet) {
        for (const r of reports) {
          const what = `${source}: document ${r.document}: ${r.kind} ${r.name}`;
          if (r.result === 'skipped' && r.skip) process.stderr.write(`${what}: not injected (${r.skip.code}): ${r.skip.message}\n`);
          for (const w of r.warnings) process.stderr.write(`${what}: warning: ${w}\n`);
        }
      }
    }
    process.stdout.write(outputs.join('---\n'));
    return 0;
  },
};
export default command;

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
