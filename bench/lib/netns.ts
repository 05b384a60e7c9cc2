// The real topology for the bench: pods as network namespaces on a bridge (src/localcluster/netns.ts),
// the Service's ClusterIP DNATed by a kube-proxy stand-in, and for tsmesh the sidecars as UID
// 1337 behind `tsmesh init`'s iptables rules, exporting spans to a stand-in collector in a pod
// of its own. The load generator runs in pod-b and calls http://pod-service/, as an app would.
// One cluster per measured case (built before it, removed after), so no case inherits another's
// rules, connections or caches.
//
// - direct: pod-b -> ClusterIP -> pod-a's app (no proxy): the baseline of this topology.
// - nginx: pod-b's nginx (127.0.0.1:15001, called explicitly: nginx cannot take iptables'
//   original destination) -> mTLS -> pod-a's nginx (its pod IP, 15006) -> the app.
// - tsmesh: pod-b's sidecar (outbound, via iptables) -> mTLS -> pod-a's sidecar (inbound, via
//   iptables) -> the app.
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { netnsCluster, netnsUnsupportedReasons, PROXY_UID, type NetnsCluster } from '../../src/localcluster/netns.ts';
import { LocalClusterError } from '../../src/localcluster/errors.ts';
import { appConf, proxyConf, NGINX } from './nginx.ts';
import { PAYLOAD } from './load.ts';
import type { PodCert } from './certs.ts';
import { startCollector, stopCollector } from './collector.ts';
import { startProcess, stopTree, runToEnd, type Proc } from './procs.ts';
import { BenchError } from './errors.ts';
import { topology } from './topology.ts';

export type NetnsKind = 'direct' | 'nginx' | 'tsmesh';

export interface NetnsSetup {
  /** pod-b's network namespace, where the load generator runs */
  readonly netns: string;
  /** what the load generator calls */
  readonly url: string;
  /** the proxies' PIDs (CPU, memory); none for direct */
  readonly pids: number[];
  /** Stops everything and removes the namespaces; resolves to the collector's report, if one ran. */
  close(): Promise<string | undefined>;
}

/** Thrown when this machine cannot build the topology (not root, no iptables...). */
export class NetnsUnavailable extends Error {
  override readonly name = 'NetnsUnavailable';
}

const APP_PORT = topology.service.targetPort;

/** A folder every UID can write: the sidecars' (UID 1337) compile cache, warmed once by `warmNetnsCompileCache`. */
export async function netnsCompileCache(work: string): Promise<string> {
  const dir = join(work, 'compile-cache-1337');
  await mkdir(dir, { recursive: true });
  await chmod(work, 0o755);
  await chmod(dir, 0o777);
  return dir;
}

/** Loads the proxy's modules once as UID 1337, so its compile cache holds them (as the image's does). */
export async function warmNetnsCompileCache(repoRoot: string, node: string, cacheDir: string, logFile: string): Promise<void> {
  await runToEnd('tsmesh proxy --help as UID 1337 (compile cache)', 'setpriv', [`--reuid=${PROXY_UID}`, `--regid=${PROXY_UID}`, '--clear-groups', '--', 'env', `NODE_COMPILE_CACHE=${cacheDir}`, node, join(repoRoot, 'bin/tsmesh.js'), 'proxy', '--help'], { timeoutMs: 60_000, logFile });
}

async function startNginxIn(cluster: NetnsCluster, pod: string, dir: string, conf: string, port: number): Promise<Proc> {
  await mkdir(dir, { recursive: true });
  const file = join(dir, 'nginx.conf');
  await writeFile(file, conf);
  const proc = startProcess(`nginx in ${pod}`, 'ip', ['netns', 'exec', cluster.pod(pod).netns, NGINX, '-p', `${dir}/`, '-c', file, '-g', 'daemon off;'], { logFile: join(dir, 'stderr.log') });
  await cluster.waitForPort(pod, port);
  return proc;
}

export async function startNetnsCase(
  kind: NetnsKind,
  opts: { dir: string; node: string; certs: Map<string, PodCert>; compileCache: string; annotations?: Record<string, string> },
): Promise<NetnsSetup> {
  const meshed = kind === 'tsmesh';
  const unsupported = await netnsUnsupportedReasons({ node: opts.node });
  const curl = await runToEnd('curl --version', 'curl', ['--version'], { timeoutMs: 5000, logFile: join(opts.dir, '..', 'curl-version.log') }).catch(() => ({ code: 1 }));
  if (curl.code !== 0) unsupported.push('not on PATH: curl (apt-get install curl)');
  if (unsupported.length > 0) throw new NetnsUnavailable(unsupported.join('; '));
  let cluster: NetnsCluster;
  try {
    cluster = await netnsCluster({
      pods: [
        { name: topology.podA.name, labels: { ...topology.podA.labels }, sidecar: meshed, annotations: opts.annotations ?? {} },
        { name: topology.podB.name, labels: { ...topology.podB.labels }, sidecar: meshed, annotations: opts.annotations ?? {} },
        // the collector's pod: not meshed; the sidecars (UID 1337) reach it past the interception
        { name: 'otel-collector' },
      ],
      services: [{ name: topology.service.name, ports: [{ port: topology.service.port, targetPort: APP_PORT }], selector: { ...topology.podA.labels } }],
      mtls: meshed,
      node: opts.node,
      sidecarEnv: () => ({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://otel-collector:4318', NODE_COMPILE_CACHE: opts.compileCache }),
    });
  } catch (err) {
    if (err instanceof LocalClusterError && err.code === 'TSMESH_LOCALCLUSTER_UNSUPPORTED') throw new NetnsUnavailable(err.message);
    throw new BenchError('BENCH_NETNS', `the network-namespace topology could not be built: ${(err as Error).message}`, { cause: err });
  }
  const procs: Proc[] = [];
  let collector: Proc | undefined;
  const close = async (): Promise<string | undefined> => {
    const report = collector ? await stopCollector(collector) : undefined;
    await Promise.all(procs.map((p) => stopTree(p)));
    await cluster.close();
    return report;
  };
  try {
    const a = cluster.pod(topology.podA.name);
    const b = cluster.pod(topology.podB.name);
    procs.push(await startNginxIn(cluster, a.name, join(opts.dir, 'app'), appConf(join(opts.dir, 'app'), PAYLOAD, { host: '0.0.0.0', port: APP_PORT }), APP_PORT));
    if (meshed) {
      collector = startCollector(opts.node, '0.0.0.0', join(opts.dir, 'collector.log'), ['ip', 'netns', 'exec', cluster.pod('otel-collector').netns]);
      await cluster.waitForPort('otel-collector', 4318);
      return { netns: b.netns, url: `http://${topology.service.name}/`, pids: [a.sidecar!.pid, b.sidecar!.pid], close };
    }
    if (kind === 'nginx') {
      const certA = opts.certs.get(a.name)!;
      const certB = opts.certs.get(b.name)!;
      const inbound = { host: a.ip, port: topology.inboundPort };
      const outbound = { host: '127.0.0.1', port: topology.outboundPort };
      const server = await startNginxIn(cluster, a.name, join(opts.dir, 'pod-a'), proxyConf(join(opts.dir, 'pod-a'), inbound, { host: '127.0.0.1', port: APP_PORT }, { serverTls: certA }), inbound.port);
      procs.push(server);
      const client = await startNginxIn(cluster, b.name, join(opts.dir, 'pod-b'), proxyConf(join(opts.dir, 'pod-b'), outbound, inbound, { clientTls: { own: certB, peerName: certA.dnsName } }), outbound.port);
      procs.push(client);
      return { netns: b.netns, url: `http://127.0.0.1:${topology.outboundPort}/`, pids: [server.pid, client.pid], close };
    }
    return { netns: b.netns, url: `http://${topology.service.name}/`, pids: [], close };
  } catch (err) {
    await close();
    throw err;
  }
}
