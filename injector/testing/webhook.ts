// A real webhook server for tests: the control plane's HTTPS server on loopback with a
// certificate for "localhost" from a fresh CA, POST /inject mounted, logs captured in memory, and
// a client (undici) that trusts it.
import { Writable } from 'node:stream';
import { Agent, request } from 'undici';
import { Registry } from 'prom-client';
import { createLogger } from '../../src/log/log.ts';
import { startControlPlane, type ControlPlane } from '../server/server.ts';
import { createCA } from '../ca/ca.ts';
import { webhookRoute, INJECT_PATH } from '../webhook/route.ts';
import { webhookMetrics } from '../webhook/metrics.ts';
import type { NamespaceLookup } from '../webhook/admission.ts';
import type { InjectorSettings } from '../inject/settings.ts';

export interface TestWebhook {
  readonly controlPlane: ControlPlane;
  readonly url: string;
  readonly caCert: string;
  readonly agent: Agent;
  readonly logs: Record<string, unknown>[];
  post(body: string | Buffer | object, path?: string): Promise<{ status: number; json: unknown; text: string }>;
  close(): Promise<void>;
}

export async function startTestWebhook(options: { settings: InjectorSettings; namespaces: NamespaceLookup; bodyLimit?: number }): Promise<TestWebhook> {
  const logs: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim()) logs.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const logger = createLogger({ level: 'debug', name: 'test-injector', destination });
  const registry = new Registry();
  const material = await testServingMaterial(['localhost']);
  const route = webhookRoute({ settings: options.settings, namespaces: options.namespaces, logger, metrics: webhookMetrics(registry), bodyLimit: options.bodyLimit });
  const controlPlane = await startControlPlane({ routes: new Map([[INJECT_PATH, route]]), tls: { cert: material.cert, key: material.key }, logger, registry, port: 0, host: '127.0.0.1' });
  const agent = new Agent({ connect: { ca: material.caCert, servername: 'localhost' } });
  const url = `https://127.0.0.1:${controlPlane.port}`;
  return {
    controlPlane,
    url,
    caCert: material.caCert,
    agent,
    logs,
    async post(body, path = INJECT_PATH) {
      const payload = typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
      const res = await request(url + path, { method: 'POST', body: payload, headers: { 'content-type': 'application/json' }, dispatcher: agent });
      const text = await res.body.text();
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
      return { status: res.statusCode, json, text };
    },
    async close() {
      await agent.close();
      await controlPlane.close();
    },
  };
}

/** A fresh CA and a serving certificate it issued for `dnsNames`: { cert, key, caCert }. */
export async function testServingMaterial(dnsNames: readonly string[]): Promise<{ cert: string; key: string; caCert: string }> {
  const ca = await createCA({ trustDomain: 'cluster.local' });
  const issued = await ca.issueServing(dnsNames);
  return { cert: issued.certChain.join(''), key: issued.keyPem, caCert: ca.trustAnchors.join('') };
}

let uidCounter = 0;
/** An AdmissionReview v1 request for a Pod CREATE, as the API server sends it. */
export function podCreateReview(pod: unknown, namespace: string, extra: Record<string, unknown> = {}): object {
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: `00000000-0000-0000-0000-${String(++uidCounter).padStart(12, '0')}`,
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      requestKind: { group: '', version: 'v1', kind: 'Pod' },
      requestResource: { group: '', version: 'v1', resource: 'pods' },
      namespace,
      operation: 'CREATE',
      userInfo: { username: 'system:serviceaccount:kube-system:replicaset-controller' },
      object: pod,
      oldObject: null,
      dryRun: false,
      options: { kind: 'CreateOptions', apiVersion: 'meta.k8s.io/v1' },
      ...extra,
    },
  };
}
