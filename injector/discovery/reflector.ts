// A list+watch of one resource kind with @kubernetes/client-node (its typed list calls and its
// Watch, which speaks the API server's watch wire format), keeping a projection of each object
// instead of the object: the control plane's memory follows what discovery uses (a few fields
// per Pod), not the size of the Pod specs. This is client-go's reflector, reduced:
//   - start: list in pages (limit 500), then watch from the list's resourceVersion;
//   - the watch asks for bookmarks, so a reconnect resumes from a recent version;
//   - a stream that ends (server timeout, API server restart) is watched again from the last
//     version seen; a connection failure backs off (exponential, jittered) first;
//   - 410 Gone / Expired (or any ERROR event) lists again and turns the difference between the
//     cache and the new list into upserts and deletes, so nothing is missed;
//   - a restart of the control plane rebuilds everything from the lists.
// client-node's own ListWatch caches whole objects, stops on errors and does not ask for
// bookmarks, hence this.
import { Watch, type KubeConfig } from '@kubernetes/client-node';
import { Counter, type Registry } from 'prom-client';
import type { Logger } from '../../src/log/log.ts';

export interface KubeListPage {
  readonly items: readonly unknown[];
  readonly metadata?: { readonly resourceVersion?: string; readonly _continue?: string };
}

export interface ReflectorOptions<T> {
  /** The resource, for logs and metrics: services, endpointslices, pods. */
  readonly resource: string;
  /** The watch path, e.g. /api/v1/services. */
  readonly path: string;
  readonly kubeConfig: KubeConfig;
  /** One page of the list (all namespaces). */
  readonly list: (page: { limit: number; _continue?: string }) => Promise<KubeListPage>;
  /** The part of an object that is kept; undefined: the object is not of interest (as if absent). */
  readonly project: (obj: RawObject) => T | undefined;
  readonly onUpsert: (key: string, value: T, previous: T | undefined) => void;
  readonly onDelete: (key: string, previous: T) => void;
  readonly log: Logger;
  readonly metrics: ReflectorMetrics;
  readonly backoffInitialMs?: number;
  readonly backoffMaxMs?: number;
  readonly pageSize?: number;
  /** Watch requests end server-side after a random 5-10 min (as client-go), then resume. */
  readonly watchTimeoutSeconds?: () => number;
}

/** What a projection reads: the API's JSON (watch events) or client-node's typed objects (lists). */
export interface RawObject {
  metadata?: { name?: string; namespace?: string; resourceVersion?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [key: string]: unknown;
}

export interface ReflectorMetrics {
  readonly events: Counter<'resource' | 'type'>;
  readonly lists: Counter<'resource' | 'reason'>;
  readonly errors: Counter<'resource'>;
}

export function reflectorMetrics(registry: Registry | undefined): ReflectorMetrics {
  const registers = registry ? [registry] : [];
  return {
    events: new Counter({ name: 'tsmesh_discovery_watch_events_total', help: 'Watch events received by discovery, by resource and type (ADDED, MODIFIED, DELETED, BOOKMARK, ERROR)', labelNames: ['resource', 'type'] as const, registers }),
    lists: new Counter({ name: 'tsmesh_discovery_lists_total', help: 'Full lists made by discovery, by resource and reason (start, expired, error)', labelNames: ['resource', 'reason'] as const, registers }),
    errors: new Counter({ name: 'tsmesh_discovery_watch_errors_total', help: 'Failed lists and watch connections of discovery, by resource (retried with backoff)', labelNames: ['resource'] as const, registers }),
  };
}

const keyOf = (o: RawObject): string => `${o.metadata?.namespace ?? ''}/${o.metadata?.name ?? ''}`;

export class Reflector<T> {
  readonly #o: ReflectorOptions<T>;
  readonly #items = new Map<string, T>();
  readonly #watch: Watch;
  #resourceVersion = '';
  #stopped = false;
  #abort: AbortController | undefined;
  #timer: NodeJS.Timeout | undefined;
  #failures = 0;
  #synced = false;
  #listReason = 'start';
  readonly #syncedOnce: Promise<void>;
  #resolveSynced!: () => void;

  constructor(options: ReflectorOptions<T>) {
    this.#o = options;
    this.#watch = new Watch(options.kubeConfig);
    // Quiet resources get a bookmark about every minute from the API server; a stream silent
    // for two is dead.
    // (client-node's default inactivity limit is 30 s; the field is private in its types.)
    (this.#watch as unknown as { requestTimeoutMs: number }).requestTimeoutMs = 120_000;
    this.#syncedOnce = new Promise((resolve) => (this.#resolveSynced = resolve));
  }

  /** The projected objects by "namespace/name". */
  get items(): ReadonlyMap<string, T> {
    return this.#items;
  }

  /** Resolves after the first complete list. */
  get synced(): Promise<void> {
    return this.#syncedOnce;
  }

  get isSynced(): boolean {
    return this.#synced;
  }

  get resourceVersion(): string {
    return this.#resourceVersion;
  }

  start(): void {
    void this.#run();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#abort?.abort();
  }

  async #run(): Promise<void> {
    if (this.#stopped) return;
    if (!this.#resourceVersion) {
      try {
        await this.#list();
      } catch (err) {
        this.#retry(err, 'list');
        return;
      }
    }
    if (this.#stopped) return;
    let expired = false;
    let gotEvent = false;
    const openedAt = Date.now();
    const { resource } = this.#o;
    const timeout = this.#o.watchTimeoutSeconds?.() ?? 300 + Math.floor(Math.random() * 300);
    try {
      const controller = await this.#watch.watch(
        this.#o.path,
        { resourceVersion: this.#resourceVersion, allowWatchBookmarks: true, timeoutSeconds: timeout },
        (type: string, obj: RawObject & { code?: number; reason?: string; message?: string }) => {
          this.#o.metrics.events.inc({ resource, type });
          gotEvent = true;
          switch (type) {
            case 'ADDED':
            case 'MODIFIED':
              this.#upsert(obj);
              break;
            case 'DELETED':
              this.#delete(keyOf(obj));
              break;
            case 'BOOKMARK':
              break;
            case 'ERROR':
              // 410 Expired (history compacted) and any other error: list again.
              expired = true;
              this.#listReason = obj.code === 410 ? 'expired' : 'error';
              this.#o.log.info({ resource, code: obj.code, reason: obj.reason, message: obj.message }, 'watch ended with an error event; listing again');
              return;
          }
          if (obj.metadata?.resourceVersion) this.#resourceVersion = obj.metadata.resourceVersion;
          this.#failures = 0;
        },
        (err: unknown) => {
          this.#abort = undefined;
          if (this.#stopped) return;
          if (expired) {
            this.#resourceVersion = '';
            void this.#run();
          } else if (err && (err as Error).name !== 'TimeoutError' && (err as Error).name !== 'AbortError') {
            if ((err as { statusCode?: number }).statusCode === 410) {
              this.#resourceVersion = '';
              this.#listReason = 'expired';
            }
            this.#retry(err, 'watch');
          } else {
            // The server ended the stream (timeoutSeconds, restart) or it went silent: resume,
            // at once unless streams keep ending as soon as they open.
            if (!gotEvent && Date.now() - openedAt < 1000) this.#failures++;
            else this.#failures = 0;
            this.#later(() => void this.#run(), this.#failures ? this.#backoff() : 0);
          }
        },
      );
      this.#abort = controller;
      if (this.#stopped) controller.abort();
    } catch (err) {
      this.#retry(err, 'watch');
    }
  }

  async #list(): Promise<void> {
    const { resource } = this.#o;
    this.#o.metrics.lists.inc({ resource, reason: this.#listReason });
    const fresh = new Map<string, RawObject>();
    let rv = '';
    let token: string | undefined;
    do {
      const page = await this.#o.list({ limit: this.#o.pageSize ?? 500, ...(token ? { _continue: token } : {}) });
      for (const item of page.items) fresh.set(keyOf(item as RawObject), item as RawObject);
      rv = page.metadata?.resourceVersion ?? rv;
      token = page.metadata?._continue || undefined;
    } while (token && !this.#stopped);
    if (this.#stopped) return;
    for (const key of [...this.#items.keys()]) if (!fresh.has(key)) this.#delete(key);
    for (const obj of fresh.values()) this.#upsert(obj);
    this.#resourceVersion = rv;
    this.#failures = 0;
    this.#o.log.debug({ resource, items: this.#items.size, resourceVersion: rv, reason: this.#listReason }, 'listed');
    this.#listReason = 'error';
    if (!this.#synced) {
      this.#synced = true;
      this.#resolveSynced();
    }
  }

  #upsert(obj: RawObject): void {
    const key = keyOf(obj);
    const value = this.#o.project(obj);
    if (value === undefined) {
      this.#delete(key);
      return;
    }
    const previous = this.#items.get(key);
    this.#items.set(key, value);
    this.#o.onUpsert(key, value, previous);
  }

  #delete(key: string): void {
    const previous = this.#items.get(key);
    if (previous === undefined) return;
    this.#items.delete(key);
    this.#o.onDelete(key, previous);
  }

  #retry(err: unknown, what: 'list' | 'watch'): void {
    if (this.#stopped) return;
    this.#failures++;
    this.#o.metrics.errors.inc({ resource: this.#o.resource });
    const wait = this.#backoff();
    this.#o.log.warn({ resource: this.#o.resource, err: (err as Error)?.message ?? String(err), status: (err as { code?: number; statusCode?: number })?.code ?? (err as { statusCode?: number })?.statusCode, retryInMs: wait }, `discovery ${what} failed; retrying`);
    this.#later(() => void this.#run(), wait);
  }

  #backoff(): number {
    const ceiling = Math.min(this.#o.backoffMaxMs ?? 30_000, (this.#o.backoffInitialMs ?? 500) * 2 ** Math.min(this.#failures - 1, 16));
    return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
  }

  #later(fn: () => void, ms: number): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(fn, ms);
  }
}
