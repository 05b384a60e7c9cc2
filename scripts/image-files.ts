// The files an image holds, per target, and only those: run by the Dockerfile's `files` stage
// (after `npm ci --omit=dev`) and by anyone who wants to see or measure a target without an
// engine. Copies TARGET's runtime files from the project folder into OUT:
//
//   node scripts/image-files.ts sidecar OUT         # tsmesh proxy and tsmesh init
//   node scripts/image-files.ts control-plane OUT   # tsmesh injector, inject, check (and the rest)
//
// What makes a file a runtime file:
// - the project: bin/, package.json and the TypeScript of the target's folders; never tests
//   (*.test.ts), test data or test helpers;
// - node_modules: the packages the target's dependencies need, found in package-lock.json the
//   way Node resolves them (the sidecar leaves out the control plane's: the Kubernetes client
//   and JSON Patch); in them, no type declarations, source maps, TypeScript sources (Node does
//   not strip types under node_modules), Markdown or test folders. Licences stay.
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';

interface Target {
  /** project folders and files copied (then filtered) */
  readonly project: readonly string[];
  /** project paths left out (folders or files, relative to the project) */
  readonly excludeProject: readonly string[];
  /** package.json dependencies left out, with whatever only they need */
  readonly excludeDependencies: readonly string[];
}

const TEST_HELPERS = ['injector/testing', 'injector/testdata'];

export const TARGETS: Record<string, Target> = {
  // proxy and init: the data plane, none of the control plane's code or its Kubernetes client
  sidecar: {
    project: ['package.json', 'bin', 'src'],
    excludeProject: ['src/demo', 'src/localcluster', 'src/cli/demo.ts', 'src/cli/inject.ts', 'src/cli/injector.ts', 'src/cli/check.ts', ...TEST_HELPERS],
    excludeDependencies: ['@kubernetes/client-node', 'fast-json-patch'],
  },
  // injector, inject, check: everything but tests
  'control-plane': {
    project: ['package.json', 'bin', 'src', 'injector'],
    excludeProject: TEST_HELPERS,
    excludeDependencies: [],
  },
};

/** Files under node_modules never loaded at run time. */
const DEV_FILE = /(\.d\.[cm]?ts|\.[cm]?ts|\.tsx|\.map|\.md|\.markdown|\.tsbuildinfo)$/i;
const DEV_FOLDER = new Set(['test', 'tests', '__tests__', '.github', 'example', 'examples', 'docs', 'doc', 'benchmark', 'benchmarks']);
const TEST_FILE = /\.test\.ts$/;

interface LockPackage {
  readonly dev?: boolean;
  readonly dependencies?: Record<string, string>;
  readonly optionalDependencies?: Record<string, string>;
  readonly peerDependencies?: Record<string, string>;
  readonly peerDependenciesMeta?: Record<string, { optional?: boolean }>;
}

/** The node_modules paths ("node_modules/a/node_modules/b") the target needs, from the lockfile. */
export function neededPackages(root: string, target: Target): Set<string> {
  const lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockPackage> };
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> };
  const needed = new Set<string>();
  // Node's lookup: FROM/node_modules/NAME, then each folder above it.
  const resolve = (from: string, name: string): string | undefined => {
    for (let dir = from; ; dir = dir.includes('/node_modules/') ? dir.slice(0, dir.lastIndexOf('/node_modules/')) : '') {
      const candidate = dir ? `${dir}/node_modules/${name}` : `node_modules/${name}`;
      if (lock.packages[candidate]) return candidate;
      if (!dir) return undefined;
    }
  };
  const visit = (from: string, names: readonly string[], optional: (n: string) => boolean): void => {
    for (const name of names) {
      const at = resolve(from, name);
      if (!at) {
        if (optional(name)) continue;
        throw new Error(`package-lock.json has no ${name} for ${from || 'the project'}: run npm install`);
      }
      const p = lock.packages[at]!;
      if (needed.has(at) || p.dev) continue; // a dev package only meets an optional peer: not installed with --omit=dev
      needed.add(at);
      const peers = Object.keys(p.peerDependencies ?? {});
      visit(at, [...Object.keys(p.dependencies ?? {}), ...Object.keys(p.optionalDependencies ?? {}), ...peers], (n) => n in (p.optionalDependencies ?? {}) || Boolean(p.peerDependenciesMeta?.[n]?.optional) || peers.includes(n));
    }
  };
  const top = Object.keys(pkg.dependencies ?? {}).filter((d) => !target.excludeDependencies.includes(d));
  visit('', top, () => false);
  return needed;
}

function copyFiltered(from: string, to: string, keep: (path: string, isDir: boolean) => boolean): void {
  cpSync(from, to, {
    recursive: true,
    dereference: false,
    filter: (src) => {
      const isDir = statSync(src).isDirectory();
      return keep(src, isDir);
    },
  });
}

/** Copies the target's runtime files from `root` into `out`; returns how many packages it took. */
export function assemble(root: string, targetName: string, out: string): { packages: number } {
  const target = TARGETS[targetName];
  if (!target) throw new Error(`unknown target "${targetName}" (targets: ${Object.keys(TARGETS).join(', ')})`);
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  const excluded = target.excludeProject.map((p) => join(root, p));
  for (const entry of target.project) {
    copyFiltered(join(root, entry), join(out, entry), (src, isDir) => !excluded.some((e) => src === e || src.startsWith(e + sep)) && (isDir || !TEST_FILE.test(src)));
  }
  const packages = neededPackages(root, target);
  for (const at of packages) {
    const src = join(root, at);
    if (!existsSync(src)) continue; // an optional package for another platform
    copyFiltered(src, join(out, at), (path, isDir) => {
      const rel = relative(src, path);
      if (rel === '') return true;
      if (rel.split(sep)[0] === 'node_modules') return false; // nested packages are copied on their own
      const name = path.slice(dirname(path).length + 1);
      // a package's own top-level docs and tests; a folder deeper down may be code (yaml/dist/doc)
      return isDir ? !(rel === name && DEV_FOLDER.has(name)) : !DEV_FILE.test(name);
    });
  }
  return { packages: packages.size };
}

if (import.meta.main) {
  const [targetName, out] = process.argv.slice(2);
  if (!targetName || !out) {
    process.stderr.write(`usage: node scripts/image-files.ts <${Object.keys(TARGETS).join('|')}> OUT\n`);
    process.exit(2);
  }
  const root = join(import.meta.dirname, '..');
  const { packages } = assemble(root, targetName, out);
  const size = (dir: string): number => readdirSync(dir, { withFileTypes: true }).reduce((n, e) => n + (e.isDirectory() ? size(join(dir, e.name)) : e.isFile() ? statSync(join(dir, e.name)).size : 0), 0);
  process.stdout.write(`${targetName}: ${packages} packages, ${(size(out) / 1e6).toFixed(1)} MB in ${out}\n`);
}
