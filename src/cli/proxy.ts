import type { Command } from './command.ts';
import { NotAvailableError } from '../errors/errors.ts';

const command: Command = {
  summary: 'proxy',
  help: 'Usage: tsmesh proxy\n',
  async run() {
    throw new NotAvailableError('not available yet');
  },
};
export default command;
