// The tsmesh sidecar pair: pod-b's sidecar (client side, outbound 15001) and pod-a's sidecar
// (server side, inbound 15006 -> the app on 127.0.0.10:8080), each a `tsmesh proxy` process
// configured only through the environment of the contract (DESIGN.md, Sidecar settings) and a
// registry file, as a user would run them in local mode.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { get } from 'node:http';
import { connect as tlsConnect } from 'node:tls';
import { stringify } from 'yaml';
import { formatPodInfo } from '../../src/config/podinfo.ts';
import type { PodCert } from './certs.ts';
import { startProcess, waitListening, assertPortFree, stopTree, sleep, tail, runToEnd, type Proc } from './procs.ts';
import { probe } from './load.ts';
import { topology, pairUrl } from './topology.ts';

/** The exit code of `tsmesh` for a command that is not available yet (src/cli/main.ts). */
const EXIT_NOT_AVAILABLE = 3;

/** observedMtls when the metric is absent but an mTLS handshake to pod-a's inbound succeeded. */
export const HANDSHAKE_OK = 'handshake';

export interface TsmeshPair {
  readonly procs: Proc[];
  /** What pod-a's metrics say about mTLS on inbound ("true", "false", "unknown"), or HANDSHAKE_OK. */
  readonly observedMtls: string;
}

/**
 * Loads the proxy's modules once (`tsmesh proxy --help`), so Node's compile cache (bin/tsmesh.js)
 * holds them before the first pair starts, as the image's cache made at build time does: every
 * pair then starts the way a sidecar in a pod starts, without compiling or type stripping. The
 * modules a sidecar imports only when it starts (registry file source, certificate reader) are
 * compiled by a throwaway pair in bench/run.ts.
 */
export async function warmCompileCache(repoRoot: string, logFile: string): Promise<void> {
  await runToEnd('tsmesh proxy --help (compile cache)', join(repoRoot, 'node_modules/.bin/node'), [join(repoRoot, 'bin/tsmesh.js'), 'proxy', '--help'], { timeoutMs: 60_000, logFile });
}

/** The sidecar cannot run this case yet: reported as "not available yet", not as a failure. */
export class NotAvailable extends Error {
  override readonly name = 'NotAvailable';
}

export function registryYaml(): string {
  const pod = (p: typeof topology.podA | typeof topology.podB) => ({
    name: p.name,
    namespace: topology.namespace,
    ip: p.ip,
    labels: { ...p.labels },
    serviceAccount: p.name,
    meshed: true,
  });
  return stringify({
    services: [
      {
        name: topology.service.name,
        namespace: topology.namespace,
        ports: [{ name: 'http', port: topology.service.port, targetPort: topology.service.targetPort }],
        selector: { ...topology.podA.labels },
      },
    ],
    pods: [pod(topology.podA), pod(topology.podB)],
  });
}

/** The environment of one sidecar: only the contract's variables (nothing inherited but PATH and HOME). */
function sidecarEnv(p: typeof topology.podA | typeof topology.podB, files: { registry: string; annotations: string; labels: string }, tlsDir: string | undefined): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    POD_NAME: p.name,
    POD_NAMESPACE: topology.namespace,
    POD_IP: p.ip,
    SERVICE_ACCOUNT: p.name,
    TSMESH_BIND_ADDRESS: p.ip,
    TSMESH_REGISTRY: files.registry,
    TSMESH_ANNOTATIONS: files.annotations,
    TSMESH_LABELS: files.labels,
    // Keep every byte on loopback: no control plane in this benchmark (nothing listens on port 9).
    TSMESH_CONTROL_PLANE: 'https://127.0.0.1:9',
    ...(tlsDir ? { TSMESH_TLS_DIR: tlsDir } : {}),
  };
}

/**
 * Starts pod-a's then pod-b's sidecar, waits for their listeners and for a 200 through the pair.
 * Throws NotAvailable when `tsmesh proxy` is not implemented yet, or (mtls) when the sidecar does
 * not report mTLS on inbound; any other problem is a BenchError (the case failed).
 */
export async function startTsmeshPair(opts: {
  repoRoot: string;
  dir: string;
  mtls: boolean;
  certs: Map<string, PodCert>;
  /** Node options before the script (e.g. --cpu-prof for bench/profile.ts). */
  nodeArgs?: readonly string[];
  /** Variables added to the contract's environment (e.g. TSMESH_WORKERS). */
  env?: NodeJS.ProcessEnv;
  /** Pod annotations added to both sidecars' annotations file (e.g. tsmesh.io/trace-sampling). */
  annotations?: Readonly<Record<string, string>>;
}): Promise<TsmeshPair> {
  await mkdir(opts.dir, { recursive: true });
  const registry = join(opts.dir, 'registry.yaml');
  await writeFile(registry, registryYaml());
  const procs: Proc[] = [];
  try {
    for (const p of [topology.podA, topology.podB]) {
      // podinfo/ holds only the downward-API files, as /etc/tsmesh/podinfo does in a pod: the
      // sidecar watches that folder, so its own log must not be written there (each write
      // would wake the watch and re-read the annotations file).
      const podDir = join(opts.dir, p.name);
      const podinfo = join(podDir, 'podinfo');
      await mkdir(podinfo, { recursive: true });
      const annotations = join(podinfo, 'annotations');
      const labels = join(podinfo, 'labels');
      // The contract's only mTLS knob (pod annotation, inbound): disabled for the plain case, strict (the default) otherwise.
      await writeFile(annotations, formatPodInfo({ 'tsmesh.io/mtls': opts.mtls ? 'strict' : 'disabled', ...opts.annotations }) + '\n');
      await writeFile(labels, formatPodInfo({ ...p.labels }) + '\n');
      const tlsDir = opts.mtls ? opts.certs.get(p.name)?.dir : undefined;
      const env = { ...sidecarEnv(p, { registry, annotations, labels }, tlsDir), ...opts.env };
      for (const port of [topology.inboundPort, topology.outboundPort, topology.adminPort]) await assertPortFree(p.ip, port);
      const proc = startProcess(`tsmesh proxy (${p.name})`, join(opts.repoRoot, 'node_modules/.bin/node'), [...(opts.nodeArgs ?? []), 'bin/tsmesh.js', 'proxy'], {
        logFile: join(podDir, 'sidecar.log'),
        env,
        cwd: opts.repoRoot,
      });
      procs.push(proc);
      const port = p === topology.podA ? topology.inboundPort : topology.outboundPort;
      try {
        await waitListening(proc, p.ip, port, 20_000);
      } catch (err) {
        if (proc.exitStatus === EXIT_NOT_AVAILABLE) throw new NotAvailable(`tsmesh proxy: ${tail(proc.logFile, 1).replace(/^tsmesh proxy: /, '')}`);
        throw err;
      }
    }
    await probeUntilOk(10_000);
    let observedMtls = await inboundMtls();
    if (opts.mtls && observedMtls !== 'true') {
      // The metric may not exist yet: then a handshake with pod-b's certificate tells whether pod-a's inbound takes mTLS.
      const handshake = observedMtls === 'unknown' ? await inboundTakesMtls(opts.certs.get(topology.podB.name)!) : 'not tried';
      if (handshake !== 'ok') {
        throw new NotAvailable(
          `the sidecar does not do mTLS between the pair yet (TSMESH_TLS_DIR set; pod-a's metrics: mtls=${observedMtls}; TLS handshake with pod-b's certificate to pod-a's inbound: ${handshake})`,
        );
      }
      observedMtls = HANDSHAKE_OK;
    }
    return { procs, observedMtls };
  } catch (err) {
    await Promise.all(procs.map((p) => stopTree(p)));
    throw err;
  }
}

async function probeUntilOk(timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await probe(pairUrl);
      return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await sleep(250);
    }
  }
}

/** Tries an mTLS handshake to pod-a's inbound listener with `client`'s certificate: "ok" or why not. */
async function inboundTakesMtls(client: PodCert): Promise<string> {
  const [cert, key, ca] = await Promise.all([readFile(client.cert), readFile(client.key), readFile(client.ca)]);
  return new Promise((resolve) => {
    const socket = tlsConnect({
      host: topology.podA.ip,
      port: topology.inboundPort,
      cert,
      key,
      ca,
      timeout: 3000,
      // The chain must verify against the bench CA; names are SPIFFE URIs, not host names.
      checkServerIdentity: () => undefined,
    });
    const done = (result: string) => {
      socket.destroy();
      resolve(result);
    };
    socket.once('secureConnect', () => done(socket.authorized ? 'ok' : `peer not verified (${String(socket.authorizationError)})`));
    socket.once('timeout', () => done('no answer within 3 s'));
    socket.once('error', (err: NodeJS.ErrnoException) => done(err.code ?? err.message));
  });
}

/** Reads pod-a's /metrics: the mtls label of its inbound request counter. */
export async function inboundMtls(): Promise<string> {
  const text = await new Promise<string>((resolve) => {
    const req = get({ host: topology.podA.ip, port: topology.adminPort, path: '/metrics', timeout: 3000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve(res.statusCode === 200 ? body : ''));
      res.on('error', () => resolve(''));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(''));
  });
  const values = new Set<string>();
  for (const line of text.split('\n')) {
    if (!line.startsWith('tsmesh_requests_total{') || !line.includes('direction="inbound"')) continue;
    const m = /mtls="(\w+)"/.exec(line);
    if (m) values.add(m[1]);
  }
  if (values.size === 1) return [...values][0];
  return values.size === 0 ? 'unknown' : [...values].join('+');
}
