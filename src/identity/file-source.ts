// Identity from files (TSMESH_TLS_DIR): tls.crt (leaf + intermediates), tls.key, ca.crt, the
// names cert-manager's CSI driver and SPIRE helpers write. Re-read when any of them changes
// (src/watch/watch.ts). A bad or partial set (a key that does not match, an expired or
// non-SPIFFE certificate, a missing file) keeps the last good identity and logs why.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Registry } from 'prom-client';
import type { Logger } from '../log/log.ts';
import { watchFile, type FileWatch } from '../watch/watch.ts';
import { systemClock, type Clock } from './clock.ts';
import { IdentityState, makeIdentity, type IdentityProvider } from './provider.ts';

export const TLS_FILES = { cert: 'tls.crt', key: 'tls.key', ca: 'ca.crt' } as const;

export interface FileIdentityOptions {
  readonly dir: string;
  readonly clock?: Clock;
  readonly log?: Logger;
  readonly registry?: Registry;
  /** Polling interval of the watcher (it also reacts to inotify events at once). */
  readonly intervalMs?: number;
}

export interface FileIdentityProvider extends IdentityProvider {
  /** Reads the files now; resolves once any change is taken in (or refused). */
  reload(): Promise<void>;
}

export function createFileIdentityProvider(options: FileIdentityOptions): FileIdentityProvider {
  const clock = options.clock ?? systemClock;
  const log = options.log?.child({ component: 'identity', tlsDir: options.dir });
  const paths = { cert: join(options.dir, TLS_FILES.cert), key: join(options.dir, TLS_FILES.key), ca: join(options.dir, TLS_FILES.ca) };
  const watches: FileWatch[] = [];
  const state = new IdentityState({ clock, ...(log ? { log } : {}), ...(options.registry ? { registry: options.registry } : {}), onClose: () => watches.forEach((w) => w.close()) });
  let lastProblem: string | undefined;
  let loading: Promise<void> = Promise.resolve();

  async function load(): Promise<void> {
    if (state.closed) return;
    const texts: Partial<Record<keyof typeof paths, string>> = {};
    const missing: string[] = [];
    for (const [k, p] of Object.entries(paths) as [keyof typeof paths, string][]) {
      try {
        texts[k] = await readFile(p, 'utf8');
      } catch (err) {
        missing.push(`${p} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
      }
    }
    let problem: string | undefined;
    if (missing.length) problem = `cannot read ${missing.join(', ')}`;
    else {
      const cur = state.peek();
      if (cur && cur.certChainPem === texts.cert && cur.keyPem === texts.key && cur.trustAnchorsPem === texts.ca) return;
      try {
        const identity = makeIdentity({ certChainPem: texts.cert!, keyPem: texts.key!, trustAnchorsPem: texts.ca! }, clock.now(), { chain: TLS_FILES.cert, key: TLS_FILES.key, anchors: TLS_FILES.ca });
        lastProblem = undefined;
        state.install(identity);
        log?.info({ spiffeId: identity.spiffeId, notAfter: identity.notAfter.toISOString() }, cur ? 'workload certificate reloaded from files' : 'workload certificate loaded from files');
        return;
      } catch (err) {
        problem = (err as Error).message;
      }
    }
    if (problem === lastProblem) return; // said once is enough while the files stay the same
    lastProblem = problem;
    const cur = state.peek();
    if (cur) log?.warn({ reason: problem, keeping: cur.spiffeId, notAfter: cur.notAfter.toISOString() }, 'ignoring the TLS files (a partial update?); keeping the last good identity');
    else log?.error({ reason: problem }, 'the TLS files do not make a usable identity; waiting for them to change');
  }

  const reload = (): Promise<void> => {
    loading = loading.then(load, load);
    return loading;
  };
  // Any of the three changing reloads all three together, serialized.
  for (const p of Object.values(paths)) watches.push(watchFile(p, () => void reload(), options.intervalMs ? { intervalMs: options.intervalMs } : {}));
  void reload();
  return Object.assign(state, { reload });
}
