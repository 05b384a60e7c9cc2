import type { ServerResponse } from 'node:http';
import type { ProxyError } from './errors.ts';

export const ERROR_HEADER = 'x-tsmesh-error';

/**
 * The one place where a proxy error becomes an HTTP response: status from the code
 * registry, `x-tsmesh-error: <reason>` so callers can tell the proxy made it.
 * If the response has already started, the only honest signal left is to cut it.
 */
export function sendProxyError(res: ServerResponse, err: ProxyError): void {
  if (res.headersSent) {
    res.destroy(err);
    return;
  }
  const body = `${err.reason}: ${err.message}\n`;
  res.writeHead(err.status, {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    [ERROR_HEADER]: err.reason,
  });
  res.end(body);
}
