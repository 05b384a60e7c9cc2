import type { Command } from './command.ts';
import { NotAvailableError } from '../errors/errors.ts';

const command: Command = {
  summary: "print manifests with the sidecar injected",
  help: `Usage: tsmesh inject -f FILE\n\nNot available yet in this release.\n`,
  async run() {
    throw new NotAvailableError('not available yet in this release of tsmesh');
  },
};
export default command;
