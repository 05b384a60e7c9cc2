// The log-level annotation, live: the logger follows it; without it, the level the logger was
// made with.
import type { LiveConfig } from './live.ts';
import type { Logger } from '../log/log.ts';

export function followLogLevel(config: LiveConfig, log: Logger): void {
  const initialLevel = log.level;
  const apply = () => {
    const level = config.annotations['tsmesh.io/log-level'] !== undefined ? config.pod['log-level'] : initialLevel;
    if (log.level !== level) log.level = level;
  };
  config.on('change', apply);
  apply();
}
