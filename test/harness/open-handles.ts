// Loaded into every test process (`--import` in the test:unit script): a test file whose
// process is still alive a while after its tests and hooks are done (a server, socket, timer or
// child process left open) fails, naming the file and what it left open, instead of keeping
// the whole run waiting for it. Every test file closes what it opens.
import { after } from 'node:test';

/** Long enough for closes under way to finish (keep-alive sockets end within 5 s), short enough to fail soon. */
const GRACE_MS = 30_000;
const STDIO = new Set(['PipeWrap', 'TTYWrap']); // the runner's stdout and stderr

if (process.env.NODE_TEST_CONTEXT) {
  // The first root after() hook: the file's own hooks run after it, within the grace.
  after(() => {
    setTimeout(() => {
      let stdio = 2;
      const left = process.getActiveResourcesInfo().filter((r) => !(STDIO.has(r) && stdio-- > 0));
      process.stderr.write(`${process.argv[1]}: still running ${GRACE_MS / 1000} s after its tests; open: ${left.join(', ') || 'unknown'}. Close it in the test or an after() hook.\n`);
      process.exit(1);
    }, GRACE_MS).unref();
  });
}
