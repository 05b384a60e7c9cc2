// The sidecar, composed: the one place that constructs things and wires them together.
import { createServer as createNetServer, type Server as NetServer, type AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { Registry as Metrics, collectDefaultMetrics } from 'prom-client';
import type { Settings } from './config/settings.ts';
import { LiveConfig } from './config/live.ts';
import { Registry } from './registry/registry.ts';
import { fileRegistrySource } from './registry/file-source.ts';
import { watchFile, type FileWatch } from './watch/watch.ts';
import { roundRobin } from './balance/round-robin.ts';
import { plainDialer } from './upstream/dial.ts';
import { ConnectionPools } from './upstream/pool.ts';
import { createForwarder } from './http/forward.ts';
import { createOutbound } from './outbound/outbound.ts';
import { createInbound } from './inbound/inbound.ts';
import { createAdmin } from './admin/admin.ts';
import { Tracker } from './lifecycle/tracker.ts';
import type { Logger } from './log/log.ts';

export interface Sidecar {
  readonly outbound: AddressInfo;
  readonly inbound: AddressInfo;
  readonly admin: AddressInfo;
  readonly config: LiveConfig;
  readonly registry: Registry;
  /** Stops accepting, lets in-flight work finish up to the drain deadline, then closes everything. */
  drain(): Promise<void>;
  /** Closes everything now. */
  close(): Promise<void>;
}

export async function startSidecar(settings: Settings, log: Logger, options: { onQuit?: () => void } = {}): Promise<Sidecar> {
  const config = new LiveConfig(log.child({ component: 'config' }));
  const registry = new Registry();
  const tracker = new Tracker();
  const metrics = new Metrics();
  collectDefaultMetrics({ register: metrics });
  const watches: FileWatch[] = [];

  // Configuration: the pod's annotations file, live.
  const annotations = watchFile(
    settings.annotationsFile,
    (text, err) => {
      if (text !== null) config.applyAnnotationsFile(text);
      else if (err?.code !== 'ENOENT') log.warn({ path: settings.annotationsFile, err: err?.message }, 'cannot read the annotations file; keeping the current settings');
    },
    { intervalMs: settings.watchIntervalMs },
  );
  watches.push(annotations);
  await annotations.check();
  // The log-level annotation, live; without it the level the logger was made with.
  const initialLevel = log.level;
  const applyLevel = () => {
    const level = config.annotations['tsmesh.io/log-level'] !== undefined ? config.pod['log-level'] : initialLevel;
    if (log.level !== level) log.level = level;
  };
  config.on('change', applyLevel);
  applyLevel();

  // Registry: the YAML file in local mode.
  if (settings.registryFile) {
    const source = fileRegistrySource(settings.registryFile, registry, log.child({ component: 'registry' }), { intervalMs: settings.watchIntervalMs });
    watches.push(source);
    await source.check();
  } else {
    log.warn({ code: 'TSMESH_NO_REGISTRY' }, 'no registry: set TSMESH_REGISTRY to a registry file (discovery from the control plane is not available yet); only explicit destinations known to no registry will fail');
    registry.replace({ services: [], pods: [] });
  }

  const pools = new ConnectionPools(plainDialer({ inboundPort: settings.inboundPort, localAddress: isUnspecified(settings.bindAddress) ? undefined : settings.bindAddress }));
  registry.on('change', (view) => pools.retain(({ ip }) => ip === settings.podIP || view.podByIP(ip) !== undefined));
  const forwarder = createForwarder();
  const accessLog = log.child({ component: 'access' });

  const outbound = createOutbound({ namespace: settings.podNamespace, registry, balancer: roundRobin(), pools, forwarder, tracker, log: accessLog });
  const inbound = createInbound({ podIP: settings.podIP, config, pools, forwarder, tracker, log: accessLog, preambleTimeoutMs: 5_000 });

  let draining = false;
  let drained: Promise<void> | undefined;
  const admin = createAdmin({
    ready: () => {
      const reasons: string[] = [];
      if (draining) reasons.push('draining');
      if (!registry.loaded) reasons.push('registry not loaded');
      return { ok: reasons.length === 0, reasons };
    },
    config: () => ({
      pod: { name: settings.podName, namespace: settings.podNamespace, ip: settings.podIP, serviceAccount: settings.serviceAccount },
      settings,
      annotations: config.pod,
      policy: config.policy,
      problems: config.problems,
      registry: { version: registry.view.version, services: registry.view.services.length, pods: registry.view.pods.length },
      inFlight: tracker.active,
    }),
    metrics,
    quit: () => {
      void drain().then(() => options.onQuit?.());
    },
  });

  const outboundListener = createNetServer({ noDelay: true }, (s) => outbound.handleConnection(s));
  const inboundListener = createNetServer({ noDelay: true }, (s) => inbound.handleConnection(s));
  let outboundAddr: AddressInfo, inboundAddr: AddressInfo, adminAddr: AddressInfo;
  try {
    [outboundAddr, inboundAddr, adminAddr] = await Promise.all([
      listen(outboundListener, settings.bindAddress, settings.outboundPort, 'outbound'),
      listen(inboundListener, settings.bindAddress, settings.inboundPort, 'inbound'),
      listen(admin, settings.bindAddress, settings.adminPort, 'admin'),
    ]);
  } catch (err) {
    for (const w of watches) w.close();
    for (const s of [outboundListener, inboundListener, admin]) if (s.listening) s.close();
    pools.close();
    forwarder.close();
    throw err;
  }
  log.info({ outbound: outboundAddr, inbound: inboundAddr, admin: adminAddr, pod: settings.podName }, 'sidecar listening');

  const httpServers: Server[] = [outbound.server, inbound.server];
  const closeAll = async () => {
    for (const w of watches) w.close();
    for (const s of httpServers) s.closeAllConnections();
    admin.closeAllConnections();
    await Promise.all([close(outboundListener), close(inboundListener), close(admin)]);
    pools.close();
    forwarder.close();
  };

  const drain = (): Promise<void> => {
    drained ??= (async () => {
      draining = true;
      log.info({ inFlight: tracker.active, deadlineMs: settings.drainTimeoutMs }, 'draining: no new connections; waiting for in-flight requests');
      outboundListener.close();
      inboundListener.close();
      const idle = setInterval(() => httpServers.forEach((s) => s.closeIdleConnections()), 100);
      httpServers.forEach((s) => s.closeIdleConnections());
      const finished = await tracker.drain(settings.drainTimeoutMs);
      clearInterval(idle);
      log.info({ finished, inFlight: tracker.active }, finished ? 'drained' : 'drain deadline reached; closing what is left');
      await closeAll();
    })();
    return drained;
  };

  return {
    outbound: outboundAddr,
    inbound: inboundAddr,
    admin: adminAddr,
    config,
    registry,
    drain,
    close: closeAll,
  };
}

function listen(server: NetServer | Server, host: string, port: number, name: string): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      const hint = err.code === 'EADDRINUSE' ? ' (another process uses it: stop it or set the port variable)' : err.code === 'EADDRNOTAVAIL' ? ' (no interface has this address: check TSMESH_BIND_ADDRESS)' : '';
      reject(Object.assign(new Error(`cannot listen for ${name} on ${host}:${port}: ${err.code}${hint}`), { code: err.code }));
    });
    server.listen({ host, port }, () => {
      server.removeAllListeners('error');
      resolve(server.address() as AddressInfo);
    });
  });
}

function close(server: NetServer | Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

const isUnspecified = (address: string) => address === '0.0.0.0' || address === '::';
