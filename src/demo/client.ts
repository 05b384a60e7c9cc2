// pod-b's app in loopback mode: a plain HTTP client that uses its sidecar as HTTP proxy (as
// HTTP_PROXY clients do), sending from pod-b's own address.
import { request } from 'node:http';
import type { DemoReply } from './mesh.ts';

export function get(proxyURL: string, url: string, fromIP: string, headers: Record<string, string> = {}): Promise<DemoReply> {
  const proxy = new URL(proxyURL);
  const client = `node http, proxy ${proxy.host}`;
  const start = performance.now();
  return new Promise((resolve) => {
    const req = request({ host: proxy.hostname, port: proxy.port, path: url, localAddress: fromIP, headers: { ...headers, host: new URL(url).host }, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, ms: performance.now() - start, client }));
    });
    req.on('error', (err) => resolve({ status: 0, body: '', ms: performance.now() - start, client, error: err.message }));
    req.setTimeout(10_000, () => req.destroy(new Error(`no answer from ${url} within 10 s`)));
    req.end();
  });
}
