// pod-a's app in every mode of the demo: a small web server on 8080, run as its own process
// (`node --input-type=module -e WEB_APP`), that can be made to fail on purpose:
//   /flaky...  answers 503 to a first attempt and 200 to a retry (x-tsmesh-attempt)
//   /fail...   always answers 500
//   anything else: "Hello from pod-a" (with VERSION from the environment: "Hello from pod-a v2"),
//                  with the caller identity its sidecar passed on
// It prints one JSON line per request ({type: "app", path, status, ms, attempt}) and a line
// "pod-a app listening on 8080" when it is ready. HOST (env) is the address it listens on.
export const WEB_APP = `
import http from 'node:http';
http.createServer((req, res) => {
  const start = performance.now();
  const attempt = Number(req.headers['x-tsmesh-attempt'] ?? 1);
  res.on('finish', () => console.log(JSON.stringify({ type: 'app', path: req.url, status: res.statusCode, attempt, ms: performance.now() - start })));
  const reply = (status, body) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body) + '\\n');
  };
  if (req.url.startsWith('/flaky')) return attempt === 1 ? reply(503, { message: 'pod-a is flaky: failing the first attempt' }) : reply(200, { message: 'pod-a recovered on attempt ' + attempt });
  if (req.url.startsWith('/fail')) return reply(500, { message: 'pod-a fails on purpose' });
  reply(200, { message: 'Hello from pod-a' + (process.env.VERSION ? ' ' + process.env.VERSION : ''), path: req.url, sawClientCert: req.headers['x-forwarded-client-cert'] ?? null, sawForwardedFor: req.headers['x-forwarded-for'] ?? null });
}).listen(8080, process.env.HOST || undefined, () => console.log('pod-a app listening on 8080'));
`;

/**
 * The canary scene's pods and Services: pod-a-v2 runs the same app as version v2 (labels
 * app: web-app-v2, so pod-service keeps selecting pod-a alone); pod-service-v1 and
 * pod-service-v2 select one version each, the backends of the scene's HTTPRoute.
 */
export const CANARY = {
  pod: { name: 'pod-a-v2', labels: { app: 'web-app-v2' } },
  services: [
    { name: 'pod-service-v1', ports: [{ name: 'http', port: 80, targetPort: 8080 }], selector: { app: 'web-app' } },
    { name: 'pod-service-v2', ports: [{ name: 'http', port: 80, targetPort: 8080 }], selector: { app: 'web-app-v2' } },
  ],
  /** The scene's route on pod-service: x-canary: 1 to v2, everyone else 90/10. */
  route: {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'HTTPRoute',
    metadata: { name: 'pod-service-canary', namespace: 'default' },
    spec: {
      parentRefs: [{ group: '', kind: 'Service', name: 'pod-service', port: 80 }],
      rules: [
        { matches: [{ headers: [{ name: 'x-canary', value: '1' }] }], backendRefs: [{ name: 'pod-service-v2', port: 80 }] },
        { backendRefs: [{ name: 'pod-service-v1', port: 80, weight: 90 }, { name: 'pod-service-v2', port: 80, weight: 10 }] },
      ],
    },
  },
} as const;

/** The second Service of the demo, on the same pod: a policy that shows a breaker opening. */
export const FLAKY_SERVICE = {
  name: 'flaky-service',
  annotations: {
    'tsmesh.io/retry-attempts': '0',
    'tsmesh.io/breaker-volume-threshold': '5',
    'tsmesh.io/breaker-error-threshold': '50',
    'tsmesh.io/breaker-reset-timeout': '30s',
  },
} as const;
