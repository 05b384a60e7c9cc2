// A small stand-in for the Kubernetes API server, for tests: a real HTTP server on loopback
// that speaks the real JSON API for the few resources the control plane touches (namespaces,
// secrets, configmaps, mutatingwebhookconfigurations, ...): GET, POST (create, 409
// AlreadyExists), PUT (replace, 409 Conflict on a stale resourceVersion), PATCH
// (application/json-patch+json and application/merge-patch+json), DELETE, and Status
// objects for errors. @kubernetes/client-node talks to it as to a cluster.
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import fjp from 'fast-json-patch';
import { KubeConfig } from '@kubernetes/client-node';

type Obj = Record<string, unknown> & { metadata?: { name?: string; namespace?: string; resourceVersion?: string; [k: string]: unknown } };

export interface RecordedRequest {
  readonly method: string;
  readonly path: string;
  readonly contentType: string | undefined;
  readonly authorization: string | undefined;
  readonly body: unknown;
}

export interface FakeApiServer {
  readonly url: string;
  readonly requests: RecordedRequest[];
  /** Puts an object at its API path, e.g. /api/v1/namespaces/demo. */
  put(path: string, obj: Obj): void;
  get(path: string): Obj | undefined;
  /** The next `count` requests matching `match` get `status` with a Status body. */
  failNext(match: (method: string, path: string) => boolean, status: number, count?: number): void;
  kubeConfig(): KubeConfig;
  close(): Promise<void>;
}

const REASONS: Record<number, string> = { 400: 'BadRequest', 404: 'NotFound', 409: 'Conflict', 415: 'UnsupportedMediaType', 422: 'Invalid', 500: 'InternalError', 503: 'ServiceUnavailable' };

function status(code: number, message: string, reason = REASONS[code] ?? 'Unknown'): Obj {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
}

async function readJsonBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  return text ? (JSON.parse(text) as unknown) : undefined;
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

export async function startFakeApiServer(): Promise<FakeApiServer> {
  const store = new Map<string, Obj>();
  const requests: RecordedRequest[] = [];
  const failures: { match: (m: string, p: string) => boolean; status: number; count: number }[] = [];
  let version = 1000;
  const stamp = (obj: Obj): Obj => {
    const o = structuredClone(obj);
    o.metadata = { ...o.metadata, resourceVersion: String(++version) };
    return o;
  };

  const server: Server = createServer((req, res) => {
    const send = (code: number, body: unknown): void => {
      const text = JSON.stringify(body);
      res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    };
    void (async () => {
      const url = new URL(req.url ?? '/', 'http://x');
      const path = url.pathname.replace(/\/$/, '');
      const method = req.method ?? 'GET';
      let body: unknown;
      try {
        body = await readJsonBody(req);
      } catch {
        send(400, status(400, 'request body is not JSON'));
        return;
      }
      requests.push({ method, path, contentType: req.headers['content-type'], authorization: req.headers.authorization, body });
      const failure = failures.find((f) => f.count > 0 && f.match(method, path));
      if (failure) {
        failure.count--;
        send(failure.status, status(failure.status, `injected failure ${failure.status}`));
        return;
      }
      const existing = store.get(path);
      switch (method) {
        case 'GET':
          if (existing) send(200, existing);
          else send(404, status(404, `${path} not found`));
          return;
        case 'POST': {
          const obj = body as Obj;
          const name = obj?.metadata?.name;
          if (!name) return send(422, status(422, 'metadata.name: Required value'));
          const key = `${path}/${name}`;
          if (store.has(key)) return send(409, status(409, `${key} already exists`, 'AlreadyExists'));
          const created = stamp({ ...obj, metadata: { ...obj.metadata, uid: `uid-${version}`, creationTimestamp: new Date().toISOString() } });
          store.set(key, created);
          return send(201, created);
        }
        case 'PUT': {
          if (!existing) return send(404, status(404, `${path} not found`));
          const obj = body as Obj;
          const rv = obj?.metadata?.resourceVersion;
          if (rv !== undefined && rv !== existing.metadata?.resourceVersion) {
            return send(409, status(409, `Operation cannot be fulfilled on ${path}: the object has been modified; please apply your changes to the latest version and try again`));
          }
          const replaced = stamp(obj);
          store.set(path, replaced);
          return send(200, replaced);
        }
        case 'PATCH': {
          if (!existing) return send(404, status(404, `${path} not found`));
          const type = req.headers['content-type']?.split(';')[0];
          let patched: Obj;
          try {
            if (type === 'application/json-patch+json') patched = fjp.applyPatch(structuredClone(existing), body as fjp.Operation[], true, false).newDocument;
            else if (type === 'application/merge-patch+json') patched = mergePatch(existing, body) as Obj;
            else return send(415, status(415, `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json (got ${type})`));
          } catch (err) {
            return send(422, status(422, `the patch could not be applied: ${(err as Error).message}`));
          }
          const saved = stamp(patched);
          store.set(path, saved);
          return send(200, saved);
        }
        case 'DELETE':
          if (!existing) return send(404, status(404, `${path} not found`));
          store.delete(path);
          return send(200, existing);
        default:
          return send(405, status(405, `method ${method} not allowed`, 'MethodNotAllowed'));
      }
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    requests,
    put(path, obj) {
      store.set(path, stamp(obj));
    },
    get(path) {
      return store.get(path);
    },
    failNext(match, code, count = 1) {
      failures.push({ match, status: code, count });
    },
    kubeConfig() {
      const kc = new KubeConfig();
      kc.loadFromOptions({
        clusters: [{ name: 'fake', server: url, skipTLSVerify: true }],
        users: [{ name: 'injector', token: 'test-token' }],
        contexts: [{ name: 'fake', cluster: 'fake', user: 'injector' }],
        currentContext: 'fake',
      });
      return kc;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
