// A stand-in Kubernetes API server for tests: a real HTTP server on 127.0.0.1 that speaks the
// Kubernetes JSON API for the calls tsmesh makes, so @kubernetes/client-node is tested as it is
// used (no mocks of the client). Generic: objects are kept in memory by
// apiVersion/kind/namespace/name with a resourceVersion; errors are real Status objects
// (404 NotFound, 409 AlreadyExists / Conflict, 400, 405, 415).
//
//   const kube = await KubeStandin.start();
//   const core = kube.kubeConfig().makeApiClient(CoreV1Api);
//   kube.tokens.set('tok-a', { username: 'system:serviceaccount:default:pod-a', audiences: ['tsmesh'] });
//   kube.use((req) => req.method === 'GET' ? { status: 500, body: kube.status(500, 'InternalError', 'boom') } : undefined);
//   kube.get('v1', 'Secret', 'tsmesh-system', 'tsmesh-ca');
//
// Supported: GET (item, list), POST (create), PUT (replace, resourceVersion checked), PATCH
// (application/merge-patch+json, application/json-patch+json), DELETE on
// /api/v1/... and /apis/GROUP/VERSION/..., namespaced and cluster-scoped; labelSelector and
// fieldSelector on lists and watches; POST /apis/authentication.k8s.io/v1/tokenreviews and
// /apis/authorization.k8s.io/v1/selfsubjectaccessreviews (Impersonate-User honoured) answered by
// pluggable responders; GET /version.
//
// Status subresource, as for CRDs that declare it (the Gateway API routes; `enableStatusSubresource`
// adds kinds): PUT/PATCH .../NAME/status change only `status` (resourceVersion checked), writes
// to the object itself leave its `status` alone, and `metadata.generation` counts spec changes.
// Served groups: `unserve('gateway.networking.k8s.io/v1')` makes every path of that group
// version answer 404 NotFound, as an API server without the CRDs does.
//
// Watch, as the API server does it (what informers need): GET COLLECTION?watch=true answers 200
// with a chunked stream of JSON lines {"type":"ADDED"|"MODIFIED"|"DELETED"|"BOOKMARK"|"ERROR",
// "object":...}. Every write bumps one global resourceVersion and is kept in a bounded history:
// `resourceVersion=N` replays what happened after N, then streams live; no resourceVersion (or
// "0") starts with a synthetic ADDED per existing object. A version older than the history
// (`compact()` forgets it all) gets an ERROR event carrying a 410 Expired Status, then the stream
// ends, so the client lists again. With selectors, an object that stops matching arrives as
// DELETED and one that starts matching as ADDED. `allowWatchBookmarks=true` streams get
// `bookmark()`s; `timeoutSeconds` ends a stream; `closeWatches()` ends them all (an API server
// restart).
//
//   kube.put({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', labels: { a: 'b' } } });
//   await kube.waitForWatch((w) => w.path === '/api/v1/namespaces');
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { KubeConfig } from '@kubernetes/client-node';
import fastJsonPatch from 'fast-json-patch';

export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: {
    name?: string;
    generateName?: string;
    namespace?: string;
    resourceVersion?: string;
    uid?: string;
    creationTimestamp?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    [key: string]: unknown;
  };
  [key: string]: unknown;
}

export interface StandinRequest {
  readonly method: string;
  readonly path: string;
  readonly query: URLSearchParams;
  readonly headers: IncomingMessage['headers'];
  readonly body: unknown;
}

export interface StandinResponse {
  readonly status: number;
  readonly body: unknown;
}

/** Runs before the built-in handling; return a response to answer instead, or undefined to go on. */
export type Middleware = (req: StandinRequest) => StandinResponse | undefined | Promise<StandinResponse | undefined>;

export interface TokenReviewSpec {
  readonly token: string;
  readonly audiences?: string[];
}
export interface TokenReviewStatus {
  authenticated: boolean;
  user?: { username: string; uid?: string; groups?: string[]; extra?: Record<string, string[]> };
  audiences?: string[];
  error?: string;
}
export type TokenReviewer = (spec: TokenReviewSpec) => TokenReviewStatus | Promise<TokenReviewStatus>;

/** A SelfSubjectAccessReview's spec.resourceAttributes. */
export interface ResourceAttributes {
  readonly group?: string;
  readonly resource?: string;
  readonly verb?: string;
  readonly namespace?: string;
  readonly name?: string;
}
export type AccessReviewer = (attributes: ResourceAttributes, user: string) => boolean;

/** What the default TokenReview responder knows about a token. */
export interface KnownToken {
  readonly username: string;
  /** The audiences the token was issued for; default: the API server's own ("https://kubernetes.default.svc"). */
  readonly audiences?: readonly string[];
  readonly podName?: string;
}

const API_SERVER_AUDIENCE = 'https://kubernetes.default.svc';

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';

/** A change as kept in the history: the object before (undefined when created) and after. */
interface Change {
  readonly rv: number;
  readonly type: 'ADDED' | 'MODIFIED' | 'DELETED';
  readonly before: KubeObject | undefined;
  readonly object: KubeObject;
}

/** An open watch stream. */
export interface OpenWatch {
  readonly path: string;
  readonly query: URLSearchParams;
  readonly apiVersion: string;
  readonly kind: string;
  readonly namespace: string | undefined;
  readonly bookmarks: boolean;
  /** Events sent so far on this stream (tests may look). */
  readonly sent: { type: WatchEventType; object: KubeObject }[];
}

interface Watcher extends OpenWatch {
  matches(obj: KubeObject): boolean;
  readonly res: ServerResponse;
}

/** plural resource -> kind, for the resources tests are likely to touch; extend with `registerKind`. */
const KINDS: Record<string, string> = {
  secrets: 'Secret',
  configmaps: 'ConfigMap',
  pods: 'Pod',
  services: 'Service',
  endpoints: 'Endpoints',
  namespaces: 'Namespace',
  serviceaccounts: 'ServiceAccount',
  endpointslices: 'EndpointSlice',
  events: 'Event',
  leases: 'Lease',
  deployments: 'Deployment',
  mutatingwebhookconfigurations: 'MutatingWebhookConfiguration',
  tokenreviews: 'TokenReview',
  httproutes: 'HTTPRoute',
  grpcroutes: 'GRPCRoute',
};

/** Kinds whose CRDs declare the status subresource (Gateway API routes): see `enableStatusSubresource`. */
const STATUS_SUBRESOURCE_KINDS = ['HTTPRoute', 'GRPCRoute'];

export class KubeStandin {
  readonly url: string;
  /** Every request, in order (body parsed as JSON when it was JSON). */
  readonly requests: StandinRequest[] = [];
  /** The default TokenReview responder's table: token -> who it is. */
  readonly tokens = new Map<string, KnownToken>();
  /** Replace to answer TokenReviews another way. */
  tokenReviewer: TokenReviewer = (spec) => this.#reviewKnownToken(spec);
  /** Answers SelfSubjectAccessReviews: `user` is the Impersonate-User header, else "standin-admin". Default: everything allowed. */
  accessReviewer: AccessReviewer = () => true;
  /** What GET /version answers. */
  version = { major: '1', minor: '31', gitVersion: 'v1.31.0', platform: 'linux/amd64' };

  readonly #server: Server;
  readonly #objects = new Map<string, KubeObject>();
  readonly #middlewares: Middleware[] = [];
  readonly #kinds = new Map(Object.entries(KINDS));
  readonly #statusKinds = new Set(STATUS_SUBRESOURCE_KINDS);
  /** Group versions ("group/version") this server does not serve: 404 for all their paths. */
  readonly unserved = new Set<string>();
  #version = 1000;
  readonly #history: Change[] = [];
  /** Versions up to this one are forgotten: watching from them gets 410. */
  #compactedAt = 0;
  readonly #watchers = new Set<Watcher>();
  /** How many changes the history keeps (older resourceVersions get 410 Expired). */
  historyLimit = 1000;

  private constructor(server: Server) {
    this.#server = server;
    const { port } = server.address() as AddressInfo;
    this.url = `http://127.0.0.1:${port}`;
  }

  static async start(): Promise<KubeStandin> {
    const holder: { standin?: KubeStandin } = {};
    const server = createServer((req, res) => void holder.standin!.#serve(req, res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    holder.standin = new KubeStandin(server);
    return holder.standin;
  }

  /** A KubeConfig for @kubernetes/client-node pointing at this server. */
  kubeConfig(token = 'standin-admin-token'): KubeConfig {
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'standin', server: this.url, skipTLSVerify: true }],
      users: [{ name: 'standin', token }],
      contexts: [{ name: 'standin', cluster: 'standin', user: 'standin' }],
      currentContext: 'standin',
    });
    return kc;
  }

  use(middleware: Middleware): () => void {
    this.#middlewares.push(middleware);
    return () => {
      const i = this.#middlewares.indexOf(middleware);
      if (i >= 0) this.#middlewares.splice(i, 1);
    };
  }

  registerKind(plural: string, kind: string): void {
    this.#kinds.set(plural, kind);
  }

  /** Gives `kind` the status subresource (its CRD's `subresources: { status: {} }`). */
  enableStatusSubresource(kind: string): void {
    this.#statusKinds.add(kind);
  }

  /** Stops serving these group versions (e.g. the Gateway API CRDs are not installed). */
  unserve(...apiVersions: string[]): void {
    for (const v of apiVersions) this.unserved.add(v);
  }

  /** Serves these group versions again (the CRDs were installed). */
  serve(...apiVersions: string[]): void {
    for (const v of apiVersions) this.unserved.delete(v);
  }

  /** The stored object, or undefined. */
  get(apiVersion: string, kind: string, namespace: string | undefined, name: string): KubeObject | undefined {
    const o = this.#objects.get(key(apiVersion, kind, namespace, name));
    return o ? structuredClone(o) : undefined;
  }

  list(apiVersion: string, kind: string, namespace?: string): KubeObject[] {
    return [...this.#objects.values()]
      .filter((o) => o.apiVersion === apiVersion && o.kind === kind && (namespace === undefined || o.metadata.namespace === namespace))
      .map((o) => structuredClone(o));
  }

  /** Creates or replaces an object directly (as another client would), bumping its resourceVersion. */
  put(obj: KubeObject): KubeObject {
    const k = key(obj.apiVersion, obj.kind, obj.metadata.namespace, obj.metadata.name!);
    const prev = this.#objects.get(k);
    const stored = structuredClone(obj);
    if (this.#statusKinds.has(obj.kind)) {
      // CRD semantics: generation counts changes of everything but metadata and status
      const specOf = (o: KubeObject | undefined) => (o ? JSON.stringify({ ...o, metadata: undefined, status: undefined }) : '');
      const gen = typeof prev?.metadata.generation === 'number' ? prev.metadata.generation : 0;
      stored.metadata.generation = !prev ? 1 : specOf(obj) === specOf(prev) ? gen : gen + 1;
    }
    stored.metadata.uid = prev?.metadata.uid ?? randomUUID();
    stored.metadata.creationTimestamp = prev?.metadata.creationTimestamp ?? new Date().toISOString();
    stored.metadata.resourceVersion = String(++this.#version);
    this.#objects.set(k, stored);
    this.#record({ rv: this.#version, type: prev ? 'MODIFIED' : 'ADDED', before: prev, object: stored });
    return structuredClone(stored);
  }

  /** Deletes an object directly (as another client would); watchers get DELETED. */
  remove(apiVersion: string, kind: string, namespace: string | undefined, name: string): boolean {
    const k = key(apiVersion, kind, namespace, name);
    const prev = this.#objects.get(k);
    if (!prev) return false;
    this.#objects.delete(k);
    // As the API server does: the deletion has its own resourceVersion, carried by the object.
    const gone = structuredClone(prev);
    gone.metadata.resourceVersion = String(++this.#version);
    this.#record({ rv: this.#version, type: 'DELETED', before: prev, object: gone });
    return true;
  }

  /** The current resourceVersion (the last write's). */
  get resourceVersion(): string {
    return String(this.#version);
  }

  /** Forgets the history: a watch from any version before now gets 410 Expired. */
  compact(): void {
    this.#history.length = 0;
    this.#compactedAt = this.#version;
  }

  /** The open watch streams. */
  get watches(): OpenWatch[] {
    return [...this.#watchers];
  }

  /** Resolves once an open watch satisfies `match` (e.g. an informer has (re)connected). */
  async waitForWatch(match: (w: OpenWatch) => boolean = () => true, timeoutMs = 10_000): Promise<OpenWatch> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = [...this.#watchers].find(match);
      if (found) return found;
      if (Date.now() > deadline) throw new Error(`no matching watch within ${timeoutMs} ms; open: ${[...this.#watchers].map((w) => w.path + '?' + w.query.toString()).join(', ') || 'none'}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  /** Sends a BOOKMARK with the current resourceVersion on every stream that allowed them. */
  bookmark(): void {
    for (const w of this.#watchers) {
      if (w.bookmarks) this.#send(w, 'BOOKMARK', { apiVersion: w.apiVersion, kind: w.kind, metadata: { resourceVersion: String(this.#version) } });
    }
  }

  /** Ends every watch stream, as an API server restart would; clients watch again. */
  closeWatches(): void {
    for (const w of this.#watchers) w.res.end();
    this.#watchers.clear();
  }

  /** A Kubernetes Status object (for middlewares that answer with an error). */
  status(code: number, reason: string, message: string, details?: { name?: string; kind?: string; group?: string }): Record<string, unknown> {
    return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, ...(details ? { details } : {}), code };
  }

  close(): Promise<void> {
    this.#watchers.clear();
    return new Promise((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
  }

  #record(change: Change): void {
    this.#history.push(change);
    while (this.#history.length > this.historyLimit) this.#compactedAt = this.#history.shift()!.rv;
    for (const w of this.#watchers) this.#deliver(w, change);
  }

  /** What a watcher sees of a change: selectors turn entering/leaving into ADDED/DELETED. */
  #deliver(w: Watcher, c: Change): void {
    const o = c.object;
    if (o.apiVersion !== w.apiVersion || o.kind !== w.kind || (w.namespace !== undefined && o.metadata.namespace !== w.namespace)) return;
    const was = c.before !== undefined && w.matches(c.before);
    const is = w.matches(o);
    if (c.type === 'DELETED') {
      if (was) this.#send(w, 'DELETED', o);
    } else if (was && is) this.#send(w, 'MODIFIED', o);
    else if (is) this.#send(w, 'ADDED', o);
    else if (was) this.#send(w, 'DELETED', o);
  }

  #send(w: Watcher, type: WatchEventType, object: KubeObject): void {
    const copy = structuredClone(object);
    w.sent.push({ type, object: copy });
    w.res.write(`${JSON.stringify({ type, object: copy })}\n`);
  }

  /** Starts a watch stream; returns an error response instead when the request is bad. */
  #watch(req: StandinRequest, res: ServerResponse): StandinResponse | undefined {
    const route = parsePath(req.path);
    if (!route || route.name) return { status: 405, body: this.status(405, 'MethodNotAllowed', 'watch goes to a collection (?watch=true on a list path)') };
    const kind = this.#kinds.get(route.plural) ?? route.plural.replace(/s$/, '').replace(/^./, (c) => c.toUpperCase());
    let matches: (o: KubeObject) => boolean;
    try {
      matches = selectorOf(req.query);
    } catch (err) {
      return { status: 400, body: this.status(400, 'BadRequest', (err as Error).message) };
    }
    const rvParam = req.query.get('resourceVersion') ?? '';
    if (rvParam !== '' && !/^\d+$/.test(rvParam)) return { status: 400, body: this.status(400, 'BadRequest', `invalid resource version: ${rvParam}`) };
    const w: Watcher = {
      path: req.path,
      query: req.query,
      apiVersion: route.apiVersion,
      kind,
      namespace: route.namespace,
      bookmarks: req.query.get('allowWatchBookmarks') === 'true',
      sent: [],
      matches,
      res,
    };
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked', 'cache-control': 'no-cache, private' });
    res.flushHeaders(); // the client sees 200 before the first event, as from the API server
    const from = Number(rvParam || '0');
    if (from === 0) {
      // "Get state and start at most recent": the current objects as ADDED, oldest first.
      const current = this.list(route.apiVersion, kind, route.namespace).filter(matches);
      current.sort((a, b) => Number(a.metadata.resourceVersion) - Number(b.metadata.resourceVersion));
      for (const o of current) this.#send(w, 'ADDED', o);
    } else if (from < this.#compactedAt) {
      this.#send(w, 'ERROR', this.status(410, 'Expired', `too old resource version: ${from} (${this.#compactedAt})`) as KubeObject);
      res.end();
      return undefined;
    } else {
      for (const c of this.#history) if (c.rv > from) this.#deliver(w, c);
    }
    this.#watchers.add(w);
    const timeout = Number(req.query.get('timeoutSeconds') ?? '0');
    const timer = timeout > 0 ? setTimeout(() => res.end(), timeout * 1000) : undefined;
    const done = (): void => {
      clearTimeout(timer);
      this.#watchers.delete(w);
    };
    res.once('close', done);
    res.once('finish', done);
    return undefined;
  }

  /** The status subresource: GET, PUT (resourceVersion checked), PATCH; only `status` changes. */
  #status(req: StandinRequest, apiVersion: string, kind: string, namespace: string | undefined, name: string, details: Record<string, string>, notFound: () => StandinResponse): StandinResponse {
    const current = this.get(apiVersion, kind, namespace, name);
    if (!current) return notFound();
    let status: unknown;
    switch (req.method) {
      case 'GET':
        return { status: 200, body: current };
      case 'PUT': {
        const obj = req.body as KubeObject | null;
        if (typeof obj !== 'object' || obj === null || typeof obj.metadata !== 'object') return { status: 400, body: this.status(400, 'BadRequest', 'the body is not a Kubernetes object') };
        const rv = obj.metadata.resourceVersion;
        if (rv !== undefined && rv !== current.metadata.resourceVersion) {
          return { status: 409, body: this.status(409, 'Conflict', `Operation cannot be fulfilled on ${details.kind} "${name}": the object has been modified; please apply your changes to the latest version and try again`, details) };
        }
        status = obj.status;
        break;
      }
      case 'PATCH': {
        const type = String(req.headers['content-type'] ?? '').split(';')[0]!.trim();
        if (type !== 'application/merge-patch+json') return { status: 415, body: this.status(415, 'UnsupportedMediaType', `the stand-in patches status with application/merge-patch+json only (got "${type}")`) };
        status = (mergePatch(current, req.body) as KubeObject).status;
        break;
      }
      default:
        return { status: 405, body: this.status(405, 'MethodNotAllowed', `${req.method} is not supported on status`) };
    }
    return { status: 200, body: this.put({ ...current, status }) };
  }

  #reviewKnownToken(spec: TokenReviewSpec): TokenReviewStatus {
    const known = this.tokens.get(spec.token);
    if (!known) return { authenticated: false, error: '[invalid bearer token, square/go-jose: error in cryptographic primitive]' };
    const tokenAudiences = [...(known.audiences ?? [API_SERVER_AUDIENCE])];
    const wanted = spec.audiences?.length ? spec.audiences : [API_SERVER_AUDIENCE];
    const both = wanted.filter((a) => tokenAudiences.includes(a));
    if (both.length === 0) {
      return { authenticated: false, error: `[invalid bearer token, token audiences ${JSON.stringify(tokenAudiences)} is invalid for the target audiences ${JSON.stringify(wanted)}]` };
    }
    const sa = /^system:serviceaccount:([^:]+):/.exec(known.username);
    return {
      authenticated: true,
      user: {
        username: known.username,
        uid: randomUUID(),
        groups: sa ? ['system:serviceaccounts', `system:serviceaccounts:${sa[1]}`, 'system:authenticated'] : ['system:authenticated'],
        ...(known.podName ? { extra: { 'authentication.kubernetes.io/pod-name': [known.podName] } } : {}),
      },
      audiences: both,
    };
  }

  async #serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let response: StandinResponse;
    try {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const raw = Buffer.concat(chunks).toString('utf8');
      let body: unknown = raw;
      if (raw) {
        try {
          body = JSON.parse(raw);
        } catch {
          body = raw;
        }
      }
      const url = new URL(req.url ?? '/', this.url);
      const request: StandinRequest = { method: req.method ?? 'GET', path: url.pathname, query: url.searchParams, headers: req.headers, body };
      this.requests.push(request);
      const answer = (await this.#runMiddlewares(request)) ?? this.#unservedAnswer(request);
      if (!answer && request.method === 'GET' && ['true', '1'].includes(request.query.get('watch') ?? '')) {
        const watchError = this.#watch(request, res);
        if (!watchError) return; // streaming
        response = watchError;
      } else {
        response = answer ?? (await this.#handle(request));
      }
    } catch (err) {
      response = { status: 500, body: this.status(500, 'InternalError', `stand-in error: ${(err as Error).message}`) };
    }
    const text = JSON.stringify(response.body);
    res.writeHead(response.status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  }

  /** 404 for a group version this server does not serve (no CRD), as the API server answers. */
  #unservedAnswer(req: StandinRequest): StandinResponse | undefined {
    const route = parsePath(req.path);
    if (!route || !this.unserved.has(route.apiVersion)) return undefined;
    return { status: 404, body: this.status(404, 'NotFound', 'the server could not find the requested resource') };
  }

  async #runMiddlewares(req: StandinRequest): Promise<StandinResponse | undefined> {
    for (const m of [...this.#middlewares]) {
      const r = await m(req);
      if (r) return r;
    }
    return undefined;
  }

  async #handle(req: StandinRequest): Promise<StandinResponse> {
    if (req.path === '/version' && req.method === 'GET') return { status: 200, body: this.version };
    const route = parsePath(req.path);
    if (!route) return { status: 404, body: this.status(404, 'NotFound', `the server could not find the requested resource (${req.path})`) };
    const kind = this.#kinds.get(route.plural) ?? route.plural.replace(/s$/, '').replace(/^./, (c) => c.toUpperCase());

    if (route.plural === 'tokenreviews' && route.apiVersion === 'authentication.k8s.io/v1') {
      if (req.method !== 'POST') return { status: 405, body: this.status(405, 'MethodNotAllowed', `${req.method} is not supported on tokenreviews`) };
      const spec = ((req.body as { spec?: TokenReviewSpec } | null)?.spec ?? { token: '' }) as TokenReviewSpec;
      const status = await this.tokenReviewer(spec);
      return { status: 201, body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', metadata: { creationTimestamp: null }, spec, status } };
    }

    if (route.plural === 'selfsubjectaccessreviews' && route.apiVersion === 'authorization.k8s.io/v1') {
      if (req.method !== 'POST') return { status: 405, body: this.status(405, 'MethodNotAllowed', `${req.method} is not supported on selfsubjectaccessreviews`) };
      const spec = ((req.body as { spec?: { resourceAttributes?: ResourceAttributes } } | null)?.spec ?? {}) as { resourceAttributes?: ResourceAttributes };
      const user = String(req.headers['impersonate-user'] ?? 'standin-admin');
      const allowed = this.accessReviewer(spec.resourceAttributes ?? {}, user);
      return { status: 201, body: { apiVersion: 'authorization.k8s.io/v1', kind: 'SelfSubjectAccessReview', metadata: {}, spec, status: { allowed, ...(allowed ? {} : { reason: 'no RBAC rule allows it' }) } } };
    }

    const { apiVersion, namespace, name } = route;
    const details = { ...(name ? { name } : {}), kind: route.plural, ...(apiVersion.includes('/') ? { group: apiVersion.split('/')[0] } : {}) };
    const notFound = (): StandinResponse => ({ status: 404, body: this.status(404, 'NotFound', `${route.plural} "${name}" not found`, details) });
    const hasStatus = this.#statusKinds.has(kind);
    if (route.subresource !== undefined) {
      if (route.subresource !== 'status' || !hasStatus || !name) return { status: 404, body: this.status(404, 'NotFound', `the server could not find the requested resource (${req.path})`) };
      return this.#status(req, apiVersion, kind, namespace, name, details, notFound);
    }

    switch (req.method) {
      case 'GET': {
        if (name) {
          const o = this.get(apiVersion, kind, namespace, name);
          return o ? { status: 200, body: o } : notFound();
        }
        let matches: (o: KubeObject) => boolean;
        try {
          matches = selectorOf(req.query);
        } catch (err) {
          return { status: 400, body: this.status(400, 'BadRequest', (err as Error).message) };
        }
        const items = this.list(apiVersion, kind, namespace).filter(matches);
        return { status: 200, body: { apiVersion, kind: `${kind}List`, metadata: { resourceVersion: String(this.#version) }, items } };
      }
      case 'POST': {
        if (name) return { status: 405, body: this.status(405, 'MethodNotAllowed', 'POST goes to the collection') };
        const obj = req.body as KubeObject;
        if (typeof obj !== 'object' || obj === null || typeof obj.metadata !== 'object') {
          return { status: 400, body: this.status(400, 'BadRequest', 'the body is not a Kubernetes object') };
        }
        obj.apiVersion ??= apiVersion;
        obj.kind ??= kind;
        if (namespace && obj.metadata.namespace && obj.metadata.namespace !== namespace) {
          return { status: 400, body: this.status(400, 'BadRequest', 'the namespace of the provided object does not match the namespace sent on the request') };
        }
        if (namespace) obj.metadata.namespace = namespace;
        if (!obj.metadata.name && obj.metadata.generateName) obj.metadata.name = obj.metadata.generateName + randomUUID().slice(0, 5);
        if (!obj.metadata.name) return { status: 400, body: this.status(400, 'BadRequest', 'metadata.name: Required value: name or generateName is required') };
        if (this.#objects.has(key(apiVersion, kind, namespace, obj.metadata.name))) {
          return { status: 409, body: this.status(409, 'AlreadyExists', `${route.plural} "${obj.metadata.name}" already exists`, { ...details, name: obj.metadata.name }) };
        }
        delete obj.metadata.resourceVersion;
        if (hasStatus) delete obj.status; // a create does not set status where it is a subresource
        return { status: 201, body: this.put(obj) };
      }
      case 'PUT': {
        if (!name) return { status: 405, body: this.status(405, 'MethodNotAllowed', 'PUT goes to an item') };
        const current = this.#objects.get(key(apiVersion, kind, namespace, name));
        if (!current) return notFound();
        const obj = req.body as KubeObject;
        if (typeof obj !== 'object' || obj === null || typeof obj.metadata !== 'object') {
          return { status: 400, body: this.status(400, 'BadRequest', 'the body is not a Kubernetes object') };
        }
        if (obj.metadata.name !== undefined && obj.metadata.name !== name) {
          return { status: 400, body: this.status(400, 'BadRequest', `the name of the object (${obj.metadata.name}) does not match the name on the URL (${name})`) };
        }
        const rv = obj.metadata.resourceVersion;
        if (rv !== undefined && rv !== current.metadata.resourceVersion) {
          return { status: 409, body: this.status(409, 'Conflict', `Operation cannot be fulfilled on ${route.plural} "${name}": the object has been modified; please apply your changes to the latest version and try again`, details) };
        }
        const status = hasStatus ? { status: current.status } : {};
        return { status: 200, body: this.put({ ...obj, apiVersion, kind, metadata: { ...obj.metadata, name, ...(namespace ? { namespace } : {}) }, ...status }) };
      }
      case 'PATCH': {
        if (!name) return { status: 405, body: this.status(405, 'MethodNotAllowed', 'PATCH goes to an item') };
        const current = this.get(apiVersion, kind, namespace, name);
        if (!current) return notFound();
        const type = String(req.headers['content-type'] ?? '').split(';')[0]!.trim();
        let next: KubeObject;
        if (type === 'application/json-patch+json') {
          try {
            next = fastJsonPatch.applyPatch(current, req.body as fastJsonPatch.Operation[], true, false).newDocument;
          } catch (err) {
            return { status: 422, body: this.status(422, 'Invalid', `the JSON patch does not apply: ${(err as Error).message}`, details) };
          }
        } else if (type === 'application/merge-patch+json' || type === 'application/strategic-merge-patch+json') {
          next = mergePatch(current, req.body) as KubeObject;
        } else {
          return { status: 415, body: this.status(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json (got "${type}")`) };
        }
        const status = hasStatus ? { status: current.status } : {};
        return { status: 200, body: this.put({ ...next, apiVersion, kind, metadata: { ...next.metadata, name, ...(namespace ? { namespace } : {}) }, ...status }) };
      }
      case 'DELETE': {
        if (!name) return { status: 405, body: this.status(405, 'MethodNotAllowed', 'DELETE of a collection is not supported by the stand-in') };
        const o = this.get(apiVersion, kind, namespace, name);
        if (!o) return notFound();
        this.remove(apiVersion, kind, namespace, name);
        return { status: 200, body: o };
      }
      default:
        return { status: 405, body: this.status(405, 'MethodNotAllowed', `${req.method} is not supported`) };
    }
  }
}

function key(apiVersion: string, kind: string, namespace: string | undefined, name: string): string {
  return `${apiVersion}/${kind}/${namespace ?? ''}/${name}`;
}

/** /api/v1/[namespaces/NS/]PLURAL[/NAME] and /apis/GROUP/VERSION/[namespaces/NS/]PLURAL[/NAME] */
function parsePath(path: string): { apiVersion: string; namespace: string | undefined; plural: string; name: string | undefined; subresource?: string } | undefined {
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  let apiVersion: string;
  let rest: string[];
  if (parts[0] === 'api' && parts[1]) {
    apiVersion = parts[1];
    rest = parts.slice(2);
  } else if (parts[0] === 'apis' && parts[1] && parts[2]) {
    apiVersion = `${parts[1]}/${parts[2]}`;
    rest = parts.slice(3);
  } else {
    return undefined;
  }
  let namespace: string | undefined;
  // "namespaces/NS/PLURAL..." is namespaced; "namespaces" or "namespaces/NS" alone are Namespace objects.
  if (rest[0] === 'namespaces' && rest.length >= 3) {
    namespace = rest[1];
    rest = rest.slice(2);
  }
  if (rest.length === 3) return { apiVersion, namespace, plural: rest[0]!, name: rest[1], subresource: rest[2] };
  if (rest.length < 1 || rest.length > 2) return undefined;
  return { apiVersion, namespace, plural: rest[0]!, name: rest[1] };
}

function mergePatch(target: unknown, patch: unknown): unknown {
  if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) return patch;
  const out: Record<string, unknown> = typeof target === 'object' && target !== null && !Array.isArray(target) ? { ...(target as Record<string, unknown>) } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/** labelSelector and fieldSelector of a list or watch, as one predicate; throws on a bad selector. */
function selectorOf(query: URLSearchParams): (o: KubeObject) => boolean {
  const tests = [...parseLabelSelector(query.get('labelSelector') ?? ''), ...parseFieldSelector(query.get('fieldSelector') ?? '')];
  return (o) => tests.every((t) => t(o));
}

/** Splits on commas outside parentheses. */
function terms(selector: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of selector) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      out.push(cur.trim());
      cur = '';
    } else cur += ch;
  }
  if (cur.trim()) out.push(cur.trim());
  return out.filter(Boolean);
}

/** k=v, k==v, k!=v, k in (a,b), k notin (a,b), k, !k */
function parseLabelSelector(selector: string): ((o: KubeObject) => boolean)[] {
  return terms(selector).map((t) => {
    const labels = (o: KubeObject): Record<string, string> => o.metadata.labels ?? {};
    let m = /^([\w./-]+)\s*(!=|==|=)\s*([\w.-]*)$/.exec(t);
    if (m) {
      const [, k, op, v] = m as unknown as [string, string, string, string];
      return op === '!=' ? (o) => labels(o)[k] !== v : (o) => labels(o)[k] === v;
    }
    m = /^([\w./-]+)\s+(in|notin)\s*\(([^)]*)\)$/.exec(t);
    if (m) {
      const [, k, op, list] = m as unknown as [string, string, string, string];
      const values = list.split(',').map((v) => v.trim());
      return op === 'in' ? (o) => values.includes(labels(o)[k] as string) : (o) => !values.includes(labels(o)[k] as string);
    }
    m = /^(!?)([\w./-]+)$/.exec(t);
    if (m) {
      const [, not, k] = m as unknown as [string, string, string];
      return not ? (o) => !(k in labels(o)) : (o) => k in labels(o);
    }
    throw new Error(`unable to parse requirement: "${t}" in labelSelector "${selector}"`);
  });
}

/** path=v, path==v, path!=v over dotted paths (metadata.name, metadata.namespace, spec.nodeName, ...) */
function parseFieldSelector(selector: string): ((o: KubeObject) => boolean)[] {
  return terms(selector).map((t) => {
    const m = /^([\w.]+)\s*(!=|==|=)\s*(.*)$/.exec(t);
    if (!m) throw new Error(`invalid field selector: "${t}"`);
    const [, path, op, v] = m as unknown as [string, string, string, string];
    const value = (o: KubeObject): string => {
      let cur: unknown = o;
      for (const part of path.split('.')) cur = (cur as Record<string, unknown> | undefined)?.[part];
      return cur === undefined || cur === null ? '' : String(cur);
    };
    return op === '!=' ? (o) => value(o) !== v : (o) => value(o) === v;
  });
}

/**
 * Writes a kubeconfig whose current context talks to `server` with a bearer token and no TLS
 * verification (the stand-in's self-made certificate), for commands run with KUBECONFIG.
 */
export async function writeKubeconfig(file: string, server: string): Promise<string> {
  await writeFile(
    file,
    `apiVersion: v1
kind: Config
clusters: [{ name: c, cluster: { server: "${server}", insecure-skip-tls-verify: true } }]
users: [{ name: u, user: { token: t } }]
contexts: [{ name: test-context, context: { cluster: c, user: u } }]
current-context: test-context
`,
  );
  return file;
}
