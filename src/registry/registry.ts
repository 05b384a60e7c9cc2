// The registry the pipelines read: the current view, replaced whole by its source. Sources
// call `replace`; readers call `view` on every request (a field read, no copying).
//
// A source may load services on demand (discovery: every sidecar holds a compact index of the
// cluster, and endpoints and policy only for the services it calls). Then a lookup in `view`
// can miss a service that exists: `ensureAuthority` / `ensureAddress` are the await-on-a-miss
// calls, bounded by `ENSURE_TIMEOUT_MS`; with a source that holds everything (the file) they
// answer from the view at once.
import { EventEmitter } from 'node:events';
import { isIP } from 'node:net';
import { RegistryView, serviceNameOf, splitAuthority, type AddressMatch, type ServiceTarget, type ViewHooks } from './view.ts';
import type { RegistryData, Service } from './model.ts';

/** How long the first request to a service not loaded yet waits for it (then it goes on without). */
export const ENSURE_TIMEOUT_MS = 1000;

/** A source that knows more services than it has loaded (discovery). */
export interface OnDemandSource {
  /** The services ("namespace/name") an original destination belongs to: a ClusterIP:port, or a pod IP. */
  servicesAt(ip: string, port: number): readonly string[];
  /** Whether the service namespace/name exists (loaded or not). */
  has(namespace: string, name: string): boolean;
  /** Loads these services; resolves once the view has them, or after `timeoutMs` (never rejects). */
  load(keys: readonly string[], timeoutMs: number): Promise<void>;
  /** A view lookup returned this service (its subscription stays while it is used). */
  used(service: Service): void;
}

export class Registry extends EventEmitter<{ change: [RegistryView] }> {
  #view = RegistryView.empty();
  #loaded = false;
  #onDemand: OnDemandSource | undefined;
  #ensuring = false; // ensure* looks up itself: its misses load in the foreground
  readonly #hooks: ViewHooks = {
    used: (service) => this.#onDemand?.used(service),
    // A miss with no one awaiting (a pipeline that does not call ensure*): load in the
    // background, so the next lookup finds it.
    missedAuthority: (authority, ns) => {
      if (this.#onDemand && !this.#ensuring) void this.#loadForAuthority(authority, ns, ENSURE_TIMEOUT_MS);
    },
    missedAddress: (ip, port) => {
      if (this.#ensuring) return;
      const keys = this.#onDemand?.servicesAt(ip, port);
      if (keys?.length) void this.#onDemand!.load(keys, ENSURE_TIMEOUT_MS);
    },
  };

  get view(): RegistryView {
    return this.#view;
  }

  /** True once a source has delivered a first valid view (readiness). */
  get loaded(): boolean {
    return this.#loaded;
  }

  replace(data: RegistryData): RegistryView {
    this.#view = new RegistryView(data, this.#view.version + 1, this.#onDemand ? this.#hooks : undefined);
    this.#loaded = true;
    this.emit('change', this.#view);
    return this.#view;
  }

  /** Called by a source that loads services on demand, before its first `replace`. */
  setOnDemandSource(source: OnDemandSource | undefined): void {
    this.#onDemand = source;
  }

  /**
   * `view.byAuthority`, waiting (at most `timeoutMs`) on a miss for a service the source knows
   * but has not loaded yet. Resolves undefined at once for names no source knows.
   */
  async ensureAuthority(authority: string, callerNamespace: string, timeoutMs = ENSURE_TIMEOUT_MS): Promise<ServiceTarget | undefined> {
    const hit = this.#quietly(() => this.#view.byAuthority(authority, callerNamespace));
    if (hit || !this.#onDemand) return hit;
    await this.#loadForAuthority(authority, callerNamespace, timeoutMs);
    return this.#quietly(() => this.#view.byAuthority(authority, callerNamespace));
  }

  /** `view.byAddress`, waiting (at most `timeoutMs`) on a miss for an address the source's index knows. */
  async ensureAddress(ip: string, port: number, timeoutMs = ENSURE_TIMEOUT_MS): Promise<AddressMatch | undefined> {
    const hit = this.#quietly(() => this.#view.byAddress(ip, port));
    if (hit || !this.#onDemand) return hit;
    const keys = this.#onDemand.servicesAt(ip, port);
    if (keys.length === 0) return undefined;
    await this.#onDemand.load(keys, timeoutMs);
    return this.#quietly(() => this.#view.byAddress(ip, port));
  }

  #quietly<T>(lookup: () => T): T {
    this.#ensuring = true;
    try {
      return lookup();
    } finally {
      this.#ensuring = false;
    }
  }

  #loadForAuthority(authority: string, callerNamespace: string, timeoutMs: number): Promise<void> {
    const source = this.#onDemand!;
    const { host, port } = splitAuthority(authority);
    if (!host) return Promise.resolve();
    let keys: readonly string[] = [];
    if (isIP(host)) keys = source.servicesAt(host, port ?? 80);
    else {
      const named = serviceNameOf(host, callerNamespace);
      if (named && source.has(named.namespace, named.name)) keys = [`${named.namespace}/${named.name}`];
    }
    return keys.length ? source.load(keys, timeoutMs) : Promise.resolve();
  }
}
