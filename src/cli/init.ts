import type { Command } from './command.ts';
import { NotAvailableError } from '../errors/errors.ts';

const command: Command = {
  summary: "install the iptables rules that send the pod's traffic to the sidecar",
  help: `Usage: tsmesh init [--dry-run] [--uninstall]\n\nNot available yet in this release.\n`,
  async run() {
    throw new NotAvailableError('not available yet in this release of tsmesh');
  },
};
export default command;
