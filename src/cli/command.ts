// The shape of a `tsmesh` subcommand: its help text and an entry that returns the exit code.
export interface Command {
  readonly summary: string;
  readonly help: string;
  run(argv: string[]): Promise<number>;
}
