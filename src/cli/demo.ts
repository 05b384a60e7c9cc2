// `tsmesh demo` (and `npm start`): DESIGN.md's example mesh on this machine, in network
// namespaces with the real interception where it can (root on Linux), on loopback addresses
// otherwise, and the scenes of src/demo/scenes/ on it.
import { constants } from 'node:os';
import { parseArgs } from 'node:util';
import type { Command } from './command.ts';
import { UsageError } from '../errors/errors.ts';
import { DEMO_MODES, startDemoMesh, type RequestedMode } from '../demo/start.ts';
import type { DemoMesh } from '../demo/mesh.ts';
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

interface DemoOptions {
  readonly mode: RequestedMode;
  readonly requests: number;
  readonly keep: boolean;
}

function parse(argv: string[]): DemoOptions {
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

const STOP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/** Ctrl-C, SIGTERM or SIGHUP: `controller` aborts with the signal's name, and the demo cleans up. */
function stopOnSignals(controller: AbortController): () => void {
  const stop = (signal: NodeJS.Signals) => controller.abort(signal);
  for (const s of STOP_SIGNALS) process.on(s, stop);
  return () => {
    for (const s of STOP_SIGNALS) process.off(s, stop);
  };
}

/** Stopped by a signal before it was done: the exit status a shell gives (130 for Ctrl-C). */
const exitStatusOf = (signal: AbortSignal) => 128 + constants.signals[signal.reason as NodeJS.Signals];

const aborted = (signal: AbortSignal) => new Promise<void>((resolve) => (signal.aborted ? resolve() : signal.addEventListener('abort', () => resolve(), { once: true })));

/** Prints what the mesh is, runs the scenes in order, and with --keep waits for Ctrl-C. */
async function show(mesh: DemoMesh, options: DemoOptions, stop: AbortSignal): Promise<boolean> {
  const print = (line: string) => console.log(line);
  for (const line of mesh.description) print(line);
  print('pod-b calls pod-service, which selects pod-a, through both sidecars.');
  let ok = true;
  for (const scene of scenes) {
    if (stop.aborted) return ok;
    ok = (await scene.run({ mesh, print, requests: options.requests, signal: stop })) && ok;
  }
  if (options.keep && !stop.aborted) {
    print(`\nThe mesh keeps running. Try:\n${mesh.tryIt().map((l) => `  ${l}`).join('\n')}\nCtrl-C stops it${mesh.mode === 'netns' ? ' and removes the namespaces' : ''}.`);
    await aborted(stop);
  }
  return ok;
}

const command: Command = {
  summary: 'run a small local mesh and show what it does',
  help,
  async run(argv) {
    const options = parse(argv);
    // A reader that stops early (`tsmesh demo | head`) must not stop the demo before it cleans up.
    process.stdout.on('error', () => {});
    const stop = new AbortController();
    const unlisten = stopOnSignals(stop);
    try {
      let mesh: DemoMesh;
      try {
        mesh = await startDemoMesh({ mode: options.mode, logLevel: 'info', signal: stop.signal });
      } catch (err) {
        if (!stop.signal.aborted) throw err;
        return exitStatusOf(stop.signal); // it failed because the exit hooks removed its namespaces
      }
      let ok: boolean;
      try {
        ok = await show(mesh, options, stop.signal);
      } finally {
        await mesh.close();
      }
      if (options.keep || !stop.signal.aborted) return ok ? 0 : 1;
      return exitStatusOf(stop.signal);
    } finally {
      unlisten();
    }
  },
};
export default command;
