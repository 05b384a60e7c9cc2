// The netns cluster for end-to-end tests with the real interception: the cluster builder of
// src/localcluster/netns.ts (one namespace per pod on a bridge, hosts-file DNS, a kube-proxy
// stand-in for Service VIPs, `tsmesh init`, sidecars as UID 1337, cleanup hooks), run with the
// project's own Node 24, plus the paths tests use.
//
//   const cluster = await netnsCluster({
//     pods: [{ name: 'pod-a', labels: { app: 'web-app' }, sidecar: true }, { name: 'pod-b' }],
//     services: [{ name: 'pod-service', ports: [{ port: 80, targetPort: 8080 }], selector: { app: 'web-app' } }],
//   });
//   after(() => cluster.close());
//   cluster.spawn('pod-a', [NODE, 'app.js'], { uid: APP_UID });
//   const res = await cluster.curl('pod-b', 'http://pod-service/');
//
// Needs root, iproute2 (ip, ss), iptables, util-linux (setpriv) and curl.
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { netnsCluster as buildCluster, TSMESH_BIN, type ClusterOptions, type NetnsCluster } from '../../src/localcluster/netns.ts';
import { jsonLines } from '../../src/demo/mesh.ts';

export {
  NetnsCluster,
  removeStaleNamespaces,
  PROXY_UID,
  APP_UID,
  type PodOptions,
  type ServiceOptions,
  type ClusterOptions,
  type Pod,
  type Service,
  type ExecResult,
  type RunOptions,
  type PodProcess,
} from '../../src/localcluster/netns.ts';

export const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
/** Node 24 of the project (the system node may be older). */
export const NODE = join(ROOT, 'node_modules/.bin/node');
export const TSMESH = TSMESH_BIN;

/** Builds the cluster (see src/localcluster/netns.ts), running tsmesh with the project's Node 24. */
export function netnsCluster(options: ClusterOptions): Promise<NetnsCluster> {
  return buildCluster({ node: NODE, tsmesh: TSMESH, ...options });
}

/** The JSON log lines a pod's sidecar has written so far (its access log among them). */
export function sidecarLines(cluster: NetnsCluster, pod: string): Record<string, unknown>[] {
  return jsonLines(cluster.pod(pod).sidecar?.output() ?? '');
}
