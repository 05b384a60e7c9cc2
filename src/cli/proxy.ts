// `tsmesh proxy`: run the sidecar with the settings from the environment (DESIGN.md).
import type { Command } from './command.ts';
import { UsageError } from '../errors/errors.ts';
import { settingsFromEnv } from '../config/settings.ts';
import { createLogger } from '../log/log.ts';
import { startSidecar } from '../sidecar.ts';

const command: Command = {
  summary: 'run the sidecar',
  help: `Usage: tsmesh proxy

Runs the sidecar proxy. Settings come from the environment (defaults in brackets):
  POD_NAME, POD_NAMESPACE, POD_IP, SERVICE_ACCOUNT   the pod (downward API)
  TSMESH_REGISTRY        registry YAML file used instead of the control plane's discovery
  TSMESH_ANNOTATIONS     the pod's annotations file [/etc/tsmesh/podinfo/annotations]
  TSMESH_LABELS          the pod's labels file [/etc/tsmesh/podinfo/labels]
  TSMESH_CONTROL_PLANE   control plane URL [https://tsmesh-injector.tsmesh-system.svc:8443]
  TSMESH_TLS_DIR         folder with tls.crt, tls.key, ca.crt instead of the control plane's CA
  TSMESH_TRUST_DOMAIN    SPIFFE trust domain [cluster.local]
  TSMESH_OUTBOUND_PORT, TSMESH_INBOUND_PORT, TSMESH_ADMIN_PORT   [15001, 15006, 15020]
  TSMESH_BIND_ADDRESS    address the listeners bind [0.0.0.0]
  TSMESH_DRAIN_TIMEOUT   how long SIGTERM waits for in-flight requests [20s]
SIGTERM (or POST /quitquitquit on the admin port) drains and exits.
`,
  async run(argv) {
    if (argv.length) throw new UsageError(`unexpected argument "${argv[0]}"`);
    const settings = settingsFromEnv();
    const log = createLogger({ name: `tsmesh-proxy/${settings.podName}` });
    const sidecar = await startSidecar(settings, log, { onQuit: () => process.exit(0) });
    await new Promise<void>((resolve) => {
      const stop = (signal: string) => {
        log.info({ signal }, 'signal received');
        void sidecar.drain().then(resolve);
      };
      process.once('SIGTERM', () => stop('SIGTERM'));
      process.once('SIGINT', () => stop('SIGINT'));
    });
    log.flush();
    return 0;
  },
};
export default command;
