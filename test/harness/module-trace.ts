// Preloaded with --import (test/proxy-modules.test.ts, npm run bench:modules): records every
// module the process loads (its URL, one a line) in the file MODULE_TRACE_FILE, through Node's
// synchronous module hooks, which see ES modules and CommonJS alike.
import module from 'node:module';
import { appendFileSync } from 'node:fs';

const file = process.env.MODULE_TRACE_FILE;
if (file) {
  module.registerHooks({
    load(url, context, nextLoad) {
      appendFileSync(file, `${url}\n`);
      return nextLoad(url, context);
    },
  });
}
