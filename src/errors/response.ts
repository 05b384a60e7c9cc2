import type { ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
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

/**
 * The same answer on a raw connection (an Upgrade request, which node:http hands over as a
 * socket): status line, `x-tsmesh-error`, then the connection closes once the answer is
 * written (as node:http does for `connection: close`), whether or not the client closes its side.
 */
export function endWithProxyError(socket: Duplex, err: ProxyError): void {
  const body = `${err.reason}: ${err.message}\n`;
  socket.once('finish', () => socket.destroy());
  socket.end(`HTTP/1.1 ${err.status} ${err.reason}\r\ncontent-type: text/plain; charset=utf-8\r\n${ERROR_HEADER}: ${err.reason}\r\nconnection: close\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
}
