// `tsmesh demo` (and `npm start`): DESIGN.md's example mesh on this machine, in network
// namespaces with the real interception where it can (root on Linux), on loopback addresses
// otherwise, and the scenes of src/demo/scenes/ on it.
import { parseArgs } from 'node:util';
import type { Command } from './command.ts';
import { UsageError } from '../errors/errors.ts';
import { DEMO_MODES, startDemoMesh, type RequestedMode } from '../demo/start.ts';
import { scenes } from '../demo/scenes/index.ts';

const help = `Usage: tsmesh demo [--mode auto|loopback|netns] [--requests N] [--keep]

Runs a small mesh on this machine and shows what it does: pod-a (a web app on 8080) behind
Service pod-service (port 80 -> 8080), pod-b (a client), each with its tsmesh sidecar, and a
registry file in place of the Kubernetes API. pod-b calls http://pod-service/ a few times;
the demo shows which pod answered, through which hops, and how long each took.

  --mode M       netns: pods are network namespaces, \`tsmesh init\` installs the iptables
                 rules and the client knows nothing of the mesh (needs root on Linux, ip,
                 iptables, setpriv); loopback: pods are 127.0.x addresses and the client
                 uses its sidecar as HTTP proxy; auto: netns where possible, else loopback,
                 saying why [auto]
  --requests N   how many requests pod-b sends [3]
  --keep         leave the mesh running (Ctrl-C to stop) so you can call it yourself
`;

function parse(argv: string[]): { mode: RequestedMode; requests: number; keep: boolean } {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: { mode: { type: 'string', default: 'auto' }, requests: { type: 'string', default: '3' }, keep: { type: 'boolean', default: false } },
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const mode = DEMO_MODES.find((m) => m === values.mode);
  if (!mode) throw new UsageError(`--mode must be one of ${DEMO_MODES.join(', ')} (got "${values.mode}")`);
  const requests = Number(values.requests);
  if (!Number.isInteger(requests) || requests < 1 || requests > 100) throw new UsageError('--requests must be a whole number from 1 to 100');
  return { mode, requests, keep: values.keep };
}

const untilStopped = () =>
  new Promise<string>((resolve) => {
    process.once('SIGINT', () => resolve('SIGINT'));
    process.once('SIGTERM', () => resolve('SIGTERM'));
  });

const command: Command = {
  summary: 'run a small local mesh and show what it does',
  help,
  async run(argv) {
    const options = parse(argv);
    // A reader that stops early (`tsmesh demo | head`) must not stop the demo before it cleans up.
    process.stdout.on('error', () => {});
    const print = (line: string) => console.log(line);
    const mesh = await startDemoMesh({ mode: options.mode, logLevel: 'info' });
    let ok = true;
    try {
      for (const line of mesh.description) print(line);
      print('pod-b calls pod-service, which selects pod-a, through both sidecars.');
      for (const scene of scenes) ok = (await scene.run({ mesh, print, requests: options.requests })) && ok;
      if (options.keep) {
        print(`\nThe mesh keeps running. Try:\n${mesh.tryIt().map((l) => `  ${l}`).join('\n')}\nCtrl-C stops it${mesh.mode === 'netns' ? ' and removes the namespaces' : ''}.`);
        await untilStopped();
      }
    } finally {
      await mesh.close();
    }
    return ok ? 0 : 1;
  },
};
export default command;
