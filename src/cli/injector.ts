// `tsmesh injector`: run the control plane (injector/main.ts) until SIGTERM or SIGINT.
import type { Command } from './command.ts';
import { runInjector, INJECTOR_SERVER_ENV, type RouteFactory } from '../../injector/main.ts';
import { INJECTOR_ENV } from '../../injector/inject/settings.ts';

// Other control-plane components mount their routes here (the CA's POST /v1/certificate,
// discovery's stream): each is a RouteFactory, (context) => Map<path, handler>.
const components: RouteFactory[] = [];

const command: Command = {
  summary: 'run the control plane (webhook, CA, discovery)',
  help: `Usage: tsmesh injector

Runs the tsmesh control plane: HTTPS on port 8443 with the mutating admission webhook
(POST /inject), GET /healthz and GET /metrics. Its serving certificate is made at start,
kept in a Secret shared by the replicas and trusted through the caBundle it sets on the
MutatingWebhookConfiguration; or read from TSMESH_INJECTOR_TLS_DIR (tls.crt, tls.key).

Environment:
  what is injected: ${INJECTOR_ENV.join(', ')}
  the server:       ${INJECTOR_SERVER_ENV.join(', ')}
`,
  async run() {
    const injector = await runInjector({ routes: components });
    await new Promise<void>((resolve) => {
      process.once('SIGTERM', resolve);
      process.once('SIGINT', resolve);
    });
    injector.context.logger.info('shutting down');
    await injector.close();
    return 0;
  },
};
export default command;
