// Watches a small file (a registry, the downward-API annotations, certificates) and calls
// `onChange` with its new content whenever the content changes. Kubernetes updates mounted
// files by swapping a symlink, which inotify on the file misses, so this watches the folder
// for promptness and also polls the content, which catches every kind of update.
import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname } from 'node:path';

export interface FileWatch {
  close(): void;
  /** Reads now (e.g. at start-up); resolves after onChange ran if the content changed. */
  check(): Promise<void>;
}

export function watchFile(
  path: string,
  onChange: (content: string | null, error?: NodeJS.ErrnoException) => void,
  options: { intervalMs?: number } = {},
): FileWatch {
  let last: string | null | undefined;
  let running: Promise<void> | undefined;
  let closed = false;

  const read = async (): Promise<void> => {
    let content: string | null;
    let error: NodeJS.ErrnoException | undefined;
    try {
      content = await readFile(path, 'utf8');
    } catch (err) {
      content = null;
      error = err as NodeJS.ErrnoException;
    }
    if (closed || content === last) return;
    last = content;
    onChange(content, error);
  };
  const check = (): Promise<void> => {
    running ??= read().finally(() => (running = undefined));
    return running;
  };

  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(dirname(path), { persistent: false }, () => void check());
    watcher.on('error', () => watcher?.close());
  } catch {
    watcher = undefined; // polling alone still works
  }
  const timer = setInterval(() => void check(), options.intervalMs ?? 1000);
  timer.unref();
  return {
    close() {
      closed = true;
      clearInterval(timer);
      watcher?.close();
    },
    check,
  };
}
