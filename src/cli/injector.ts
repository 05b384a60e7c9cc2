// `tsmesh injector`: run the control plane (injector/main.ts) until SIGTERM or SIGINT.
import type { Command } from './command.ts';
import { runInjector, INJECTOR_SERVER_ENV, type RouteFactory } from '../../injector/main.ts';
import { INJECTOR_ENV } from '../../injector/inject/settings.ts';
import { discoveryComponent } from '../../injector/discovery/index.ts';

// Other control-plane components mount their routes here: each is a RouteFactory,
// (context) => Map<path, handler> or a Component (routes, upgrades, close). The webhook and the
// CA are built in. Discovery: the sidecars' WebSocket at /v1/discovery and GET /debug/sidecars.
const components: RouteFactory[] = [discoveryComponent()];

const command: Command = {
  summary: 'run the control plane (webhook, CA, discovery)',
  help: `Usage: tsmesh injector

Runs the tsmesh control plane: HTTPS on port 8443 with the mutating admission webhook
(POST /inject), the mesh CA (POST /v1/certificate), discovery (the sidecars' stream of
services, endpoints and policy at /v1/discovery, fed by watches on Services, EndpointSlices
and Pods; GET /debug/sidecars), GET /healthz and GET /metrics.
One root serves all: the CA's root (Secret tsmesh-ca, made on first start) issues the
workload certificates and the server's own certificate (Secret tsmesh-injector-tls, shared
by the replicas, renewed and reloaded), is set as the caBundle of the
MutatingWebhookConfiguration, and is published as ConfigMap tsmesh-trust-anchor (ca.crt) in
every namespace labelled tsmesh.io/inject=enabled or injected into. With
TSMESH_INJECTOR_TLS_DIR (tls.crt, tls.key) the server certificate comes from files instead;
it must chain to the mesh trust anchors for sidecars to reach the CA (docs/injector.md).

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
