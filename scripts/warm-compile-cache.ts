// Fills Node's compile cache (NODE_COMPILE_CACHE) for an image at build time: imports every
// TypeScript module of the project copied into APP (their types stripped and V8's code cached)
// and each runtime dependency's entry point. Node keeps one cache folder per UID
// (v24…-x64-…-<uid>), so the Dockerfile runs this once as each UID its manifests use; a
// folder made as root is not read by the sidecar's 1337.
//
//   NODE_COMPILE_CACHE=/app/.compile-cache node scripts/warm-compile-cache.ts /app
import { execFileSync } from 'node:child_process';
import module from 'node:module';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const app = process.argv[2] ?? '/app';
/** Modules that run a program when imported. */
const ENTRY_POINTS = new Set([join(app, 'src/cli/main.ts')]);

function typescript(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts'))
    .map((e) => join(e.parentPath, e.name))
    .filter((f) => !ENTRY_POINTS.has(f))
    .sort();
}

const cache = module.enableCompileCache(); // NODE_COMPILE_CACHE has usually enabled it already
const { ENABLED, ALREADY_ENABLED } = module.constants.compileCacheStatus;
if (cache.status !== ENABLED && cache.status !== ALREADY_ENABLED) {
  process.stderr.write(`compile cache not enabled (status ${cache.status}${cache.message ? `: ${cache.message}` : ''}); set NODE_COMPILE_CACHE to a writable folder\n`);
  process.exit(1);
}
const own = [...typescript(join(app, 'src')), ...typescript(join(app, 'injector'))];
for (const file of own) await import(pathToFileURL(file).href);
const { dependencies = {} } = JSON.parse(readFileSync(join(app, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> };
const present = Object.keys(dependencies).filter((d) => existsSync(join(app, 'node_modules', d)));
const require = module.createRequire(join(app, 'package.json'));
for (const dep of present) {
  try {
    await import(pathToFileURL(require.resolve(dep)).href);
  } catch {
    await import(dep).catch(() => {}); // ESM-only or types-only packages: what Node can load is enough
  }
}
module.flushCompileCache();
// The entry points, by running them: `tsmesh --version` compiles bin/tsmesh.js and src/cli/main.ts.
execFileSync(process.execPath, [join(app, 'bin', 'tsmesh.js'), '--version'], { stdio: 'ignore' });
process.stdout.write(`compile cache for UID ${process.getuid?.()}: ${own.length} project modules and ${present.length} dependencies in ${module.getCompileCacheDir()}\n`);
process.exit(0);
