#!/usr/bin/env node
// The `tsmesh` executable. tsmesh is TypeScript run directly by Node.js 24 (type stripping,
// no build step). On an older system Node this re-runs itself with the project's own Node 24
// (the `node` devDependency), so `./bin/tsmesh.js` works on any machine after `npm install`.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const major = Number(process.versions.node.split('.')[0]);
if (major >= 24) {
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
