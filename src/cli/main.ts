// `tsmesh <command>`: dispatch to the subcommands of the contract (DESIGN.md, Commands).
// Each command is loaded only when used, so `tsmesh init` does not load the proxy.
import { NotAvailableError, UsageError, ConfigError } from '../errors/errors.ts';
import type { Command } from './command.ts';
import { describeError } from '../errors/describe.ts';

const commands: Record<string, { summary: string; load: () => Promise<Command> }> = {
  proxy: { summary: 'run the sidecar', load: async () => (await import('./proxy.ts')).default },
  init: { summary: "install the iptables rules that send the pod's traffic to the sidecar", load: async () => (await import('./init.ts')).default },
  injector: { summary: 'run the control plane (webhook, CA, discovery)', load: async () => (await import('./injector.ts')).default },
  inject: { summary: 'print manifests with the sidecar injected, as the webhook would', load: async () => (await import('./inject.ts')).default },
  check: { summary: 'check that the cluster is ready for tsmesh, or that tsmesh works there', load: async () => (await import('./check.ts')).default },
  demo: { summary: 'run a small local mesh and show what it does', load: async () => (await import('./demo.ts')).default },
};

export function usage(): string {
  const width = Math.max(...Object.keys(commands).map((c) => c.length));
  const lines = Object.entries(commands).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`);
  return `Usage: tsmesh <command> [options]\n\nCommands:\n${lines.join('\n')}\n\nRun 'tsmesh <command> --help' for a command's options.\n`;
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage());
    return name === undefined ? 2 : 0;
  }
  if (name === '--version' || name === '-v') {
    const { version } = (await import('../../package.json', { with: { type: 'json' } })).default;
    process.stdout.write(`tsmesh ${version}\n`);
    return 0;
  }
  const entry = Object.hasOwn(commands, name) ? commands[name] : undefined;
  if (!entry) {
    process.stderr.write(`tsmesh: unknown command "${name}"\n\n${usage()}`);
    return 2;
  }
  let command: Command;
  try {
    command = await entry.load();
  } catch (err) {
    // The sidecar image holds proxy and init only: say so instead of a module-not-found trace.
    if ((err as { code?: string }).code !== 'ERR_MODULE_NOT_FOUND') throw err;
    process.stderr.write(`tsmesh ${name}: not in this image (${describeError(err)}); the sidecar image runs proxy and init, the control-plane image the other commands\n`);
    return 3;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(command.help);
    return 0;
  }
  try {
    return await command.run(rest);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`tsmesh ${name}: ${err.message}\n\n${command.help}`);
      return 2;
    }
    if (err instanceof NotAvailableError) {
      process.stderr.write(`tsmesh ${name}: ${err.message}\n`);
      return 3;
    }
    if (err instanceof ConfigError) {
      process.stderr.write(`tsmesh ${name}: invalid configuration: ${err.message}\n`);
      return 1;
    }
    // Anything else: say what failed; the stack only when asked for (TSMESH_DEBUG=1).
    const e = err as Error & { code?: string };
    process.stderr.write(`tsmesh ${name}: ${describeError(e)}${e.code ? ` [${e.code}]` : ''}\n`);
    if (process.env.TSMESH_DEBUG) process.stderr.write(`${e.stack}\n`);
    return 1;
  }
}

// http-proxy (a dependency chosen for WebSocket and HTTP/1.1 forwarding) still calls the
// deprecated util._extend; that one warning says nothing a user can act on, the others do.
process.removeAllListeners('warning');
process.on('warning', (w: Error & { code?: string }) => {
  if (w.code !== 'DEP0060') process.stderr.write(`${w.name}: ${w.message}\n`);
});

process.exitCode = await main(process.argv.slice(2));
