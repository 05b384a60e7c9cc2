// pod-a's app in every mode of the demo: a small web server on 8080, run as its own process
// (`node --input-type=module -e WEB_APP`), that can be made to fail on purpose:
//   /flaky...  answers 503 to a first attempt and 200 to a retry (x-tsmesh-attempt)
//   /fail...   always answers 500
//   anything else: "Hello from pod-a", with the caller identity its sidecar passed on
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
  reply(200, { message: 'Hello from pod-a', path: req.url, sawClientCert: req.headers['x-forwarded-client-cert'] ?? null, sawForwardedFor: req.headers['x-forwarded-for'] ?? null });
}).listen(8080, process.env.HOST || undefined, () => console.log('pod-a app listening on 8080'));
`;

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
