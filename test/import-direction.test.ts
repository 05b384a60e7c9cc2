// The layers' import direction: the pipelines (src/outbound/, src/inbound/) sit on the protocol
// and upstream folders, never the other way round. Only the composition (src/sidecar.ts) and
// the pipelines themselves import from a pipeline; src/http1, src/h2, src/http, src/upstream
// and every other folder do not. Regression: the Transport types lived in
// src/outbound/exchange.ts and http1/ and h2/ imported them from there.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';

const SRC = new URL('../src/', import.meta.url).pathname;
const PIPELINES = ['outbound', 'inbound'];
const MAY_IMPORT_PIPELINES = (file: string) => file === 'sidecar.ts' || PIPELINES.some((p) => file.startsWith(`${p}/`));

/** Every relative module a file imports (static, re-exported or dynamic), as paths under src/. */
async function importsOf(file: string): Promise<string[]> {
  const code = await readFile(join(SRC, file), 'utf8');
  const out: string[] = [];
  for (const m of code.matchAll(/(?:^|\s)(?:import|export)\s[^'"`;]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g)) {
    const spec = m[1] ?? m[2]!;
    if (spec.startsWith('.')) out.push(relative(SRC, resolve(dirname(join(SRC, file)), spec)));
  }
  return out;
}

test('no module below the pipelines imports from src/outbound or src/inbound', async () => {
  const files = (await readdir(SRC, { recursive: true })).filter((f) => f.endsWith('.ts'));
  const upward: string[] = [];
  for (const file of files) {
    if (MAY_IMPORT_PIPELINES(file)) continue;
    for (const target of await importsOf(file)) if (PIPELINES.some((p) => target.startsWith(`${p}/`))) upward.push(`src/${file} imports src/${target}`);
  }
  assert.deepEqual(upward, []);
});

test('the scan sees the imports it checks (the protocol folders import src/upstream/transport.ts)', async () => {
  // a scan that found nothing would pass the test above for the wrong reason
  assert.ok((await importsOf('http1/transport.ts')).includes('upstream/transport.ts'));
  assert.ok((await importsOf('h2/transport.ts')).includes('upstream/transport.ts'));
  assert.ok((await importsOf('sidecar.ts')).includes('outbound/outbound.ts'));
});
