// The pod's annotations file (the downward API), watched: each read is applied to the live
// config; a file that cannot be read leaves the settings in force (a missing one is not reported).
import { watchFile, type FileWatch } from '../watch/watch.ts';
import type { LiveConfig } from './live.ts';
import type { Logger } from '../log/log.ts';

export function watchAnnotationsFile(path: string, config: LiveConfig, log: Logger, intervalMs: number): FileWatch {
  return watchFile(
    path,
    (text, err) => {
      if (text !== null) config.applyAnnotationsFile(text);
      else if (err?.code !== 'ENOENT') log.warn({ path, err: err?.message }, 'cannot read the annotations file; keeping the current settings');
    },
    { intervalMs },
  );
}
