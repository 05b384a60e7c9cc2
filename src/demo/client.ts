// pod-b's app: a plain HTTP client that uses its sidecar as HTTP proxy (as HTTP_PROXY
// clients do), sending from pod-b's own address.
import { request } from 'node:http';

export interface DemoReply {
  status: number;
  body: string;
  headers: Record<string, string | string[] | undefined>;
  ms: number;
}

export function get(proxyURL: string, url: string, fromIP: string): Promise<DemoReply> {
  const proxy = new URL(proxyURL);
  const start = performance.now();
  return new Promise((resolve, reject) => {
    const req = request({ host: proxy.hostname, port: proxy.port, path: url, localAddress: fromIP, headers: { host: new URL(url).host }, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers, ms: performance.now() - start }));
    });
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error(`no answer from ${url} within 10 s`)));
    req.end();
  });
}
