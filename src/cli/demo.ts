import type { Command } from './command.ts';
import { NotAvailableError } from '../errors/errors.ts';

const command: Command = {
  summary: 'demo',
  help: 'Usage: tsmesh demo\n',
  async run() {
    throw new NotAvailableError('not available yet');
  },
};
export default command;
