// The registry from a YAML file (local mode and tests), re-read when it changes. An invalid
// file is reported with the fields that are wrong and the last good view stays in force.
import { parse as parseYaml } from 'yaml';
import { watchFile, type FileWatch } from '../watch/watch.ts';
import { validateRegistry } from './model.ts';
import { ConfigError } from '../errors/errors.ts';
import type { Registry } from './registry.ts';
import type { Logger } from '../log/log.ts';

export function parseRegistryYaml(text: string, source: string) {
  // An empty file is far more often one caught mid-write than a wish for an empty mesh.
  if (text.trim() === '') throw new ConfigError(source, ['the file is empty (write "services: []" for a registry without services)']);
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    throw new ConfigError(source, [`not valid YAML: ${(err as Error).message.split('\n')[0]}`]);
  }
  return validateRegistry(raw, source);
}

export function fileRegistrySource(path: string, registry: Registry, log: Logger, options: { intervalMs?: number } = {}): FileWatch {
  return watchFile(
    path,
    (text, error) => {
      if (text === null) {
        log.error({ code: 'TSMESH_REGISTRY_UNREADABLE', path, err: error?.message }, 'cannot read the registry file; keeping the last good view');
        return;
      }
      try {
        const view = registry.replace(parseRegistryYaml(text, path));
        log.info({ path, version: view.version, services: view.services.length, pods: view.pods.length }, 'registry loaded');
      } catch (err) {
        const e = err as ConfigError;
        log.error({ code: e.code, path, issues: e.issues }, `invalid registry file, keeping the last good view (version ${registry.view.version}): ${e.message}`);
      }
    },
    options,
  );
}
