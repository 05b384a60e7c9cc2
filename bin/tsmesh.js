#!/usr/bin/env node
// The `tsmesh` executable. tsmesh is TypeScript run directly by Node.js 24 (type stripping,
// no build step). On an older system Node this re-runs itself with the project's own Node 24
// (the `node` devDependency), so `./bin/tsmesh.js` works on any machine after `npm install`.
//
// Two settings for every tsmesh process on Node 24 (measured in bench/NOTES.md):
// - Node's compile cache (module.enableCompileCache): the stripped TypeScript and V8's code
//   cache are kept on disk, so a start after the first one neither compiles the sources nor
//   loads the type stripper (~12 MB less memory, faster starts). The folder is
//   NODE_COMPILE_CACHE when set (the image sets it to a cache made at build time), else Node's
//   default in the temp folder; where it cannot be written, Node goes on without it.
// - `tsmesh proxy` only: V8 heap limits for a small, steady sidecar (PROXY_NODE_FLAGS). The
//   process replaces itself (process.execve, same PID) with the same command and these flags
//   unless it already runs with them; a flag given in NODE_OPTIONS or on the command line wins.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import module from 'node:module';

/**
 * V8 flags of the proxy. A 2 MiB semi-space (V8 picks 16 MiB on a large machine) keeps the
 * young generation small; the old-generation cap makes V8 collect at a few times the live heap
 * (~20-35 MiB under load) instead of letting garbage grow to hundreds of MiB first.
 */
const PROXY_NODE_FLAGS = ['--max-semi-space-size=2', '--max-old-space-size=128'];

/** The flags of PROXY_NODE_FLAGS that neither the command line nor NODE_OPTIONS set. */
function missingProxyFlags(execArgv, nodeOptions) {
  const given = [...execArgv, ...(nodeOptions ?? '').split(/\s+/)].map((a) => a.split('=')[0].replace(/_/g, '-'));
  return PROXY_NODE_FLAGS.filter((f) => !given.includes(f.split('=')[0]));
}

const major = Number(process.versions.node.split('.')[0]);
if (major >= 24) {
  if (process.argv[2] === 'proxy' && typeof process.execve === 'function') {
    const missing = missingProxyFlags(process.execArgv, process.env.NODE_OPTIONS);
    if (missing.length > 0) {
      try {
        process.execve(process.execPath, [process.execPath, ...missing, ...process.execArgv, ...process.argv.slice(1)], process.env);
      } catch {
        // could not replace the process (no such binary, a sandbox): run without the flags
      }
    }
  }
  module.enableCompileCache?.();
  await import('../src/cli/main.ts');
} else {
  const node24 = fileURLToPath(new URL('../node_modules/node/bin/node', import.meta.url));
  if (!existsSync(node24)) {
    console.error(`tsmesh needs Node.js 24 or newer (this is ${process.version}). Run 'npm install' in the project to get it, or install Node.js 24.`);
    process.exit(1);
  }
  const child = spawn(node24, [fileURLToPath(import.meta.url), ...process.argv.slice(2)], { stdio: 'inherit' });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => child.kill(sig));
  child.on('exit', (code, signal) => (signal ? process.kill(process.pid, signal) : process.exit(code ?? 1)));
}
