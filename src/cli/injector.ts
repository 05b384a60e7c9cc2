import type { Command } from './command.ts';
import { NotAvailableError } from '../errors/errors.ts';

const command: Command = {
  summary: "run the control plane",
  help: `Usage: tsmesh injector\n\nNot available yet in this release.\n`,
  async run() {
    throw new NotAvailableError('not available yet in this release of tsmesh');
  },
};
export default command;
