// Watches a small file (a registry, the downward-API annotations, certificates) and calls
// `onChange` with its new content whenever the content changes. Kubernetes updates mounted
// files by swapping a symlink, which inotify on the file misses, so this watches the folder
// for promptness and also polls, which catches every kind of update. The poll costs one stat:
// the file is read again only when its inode, size or change times differ.
import { watch, type FSWatcher } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
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
  let lastStat: string | undefined;
  let running: Promise<void> | undefined;
  let closed = false;

  /** Whether the file may have changed since the last read, by one stat (follows symlinks). */
  const moved = async (): Promise<boolean> => {
    let now: string;
    try {
      const st = await stat(path, { bigint: true });
      now = `${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
    } catch (err) {
      now = `error:${(err as NodeJS.ErrnoException).code}`;
    }
    if (now === lastStat) return false;
    lastStat = now;
    return true;
  };

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
  const poll = async (): Promise<void> => {
    if (!(await moved())) return;
    // a read in flight (started by inotify) may have read the file before the change this stat
    // shows: read again after it, or the change is missed until the file changes again
    if (running) await running;
    await check();
  };

  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(dirname(path), { persistent: false }, () => void check());
    watcher.on('error', () => watcher?.close());
  } catch {
    watcher = undefined; // polling alone still works
  }
  const timer = setInterval(() => void poll(), options.intervalMs ?? 1000);
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
