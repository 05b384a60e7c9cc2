// The one place where a proxy error becomes the client's answer, in every form the sidecar
// answers in: the status from the code registry (./errors.ts), `x-tsmesh-error: <reason>` so
// callers can tell the proxy made it, and a text body saying why; a gRPC call gets its status
// as `grpc-status` and `grpc-message` (a trailers-only answer, or error trailers once its
// response has started). `proxyErrorResponse` decides the answer; the functions below it only
// write it out for a transport. No other file writes `x-tsmesh-error` (test/error-responses.test.ts).
import type { ServerResponse } from 'node:http';
import { STATUS_CODES } from '../http/node-http.ts';
import type { Duplex } from 'node:stream';
import type { ProxyError } from './errors.ts';
import { encodeGrpcMessage } from '../h2/grpc.ts';

export const ERROR_HEADER = 'x-tsmesh-error';

export interface ProxyErrorResponse {
  /** The HTTP status (200 for a gRPC call: its status is in `grpc-status`). */
  readonly status: number;
  /** Header fields, names in lower case, framing (content-length) included where there is a body. */
  readonly headers: Readonly<Record<string, string>>;
  /** The text body ('' for a gRPC call). */
  readonly body: string;
}

/**
 * The answer to `err`: for HTTP (1.1 or 2) its status with a text body, for a gRPC call a
 * trailers-only answer (HTTP 200, `grpc-status` from the registry, `grpc-message`).
 */
export function proxyErrorResponse(err: ProxyError, grpc = false): ProxyErrorResponse {
  if (grpc) return { status: 200, headers: { 'content-type': 'application/grpc', ...grpcErrorTrailers(err) }, body: '' };
  const body = `${err.reason}: ${err.message}\n`;
  return { status: err.status, headers: { 'content-type': 'text/plain; charset=utf-8', 'content-length': String(Buffer.byteLength(body)), [ERROR_HEADER]: err.reason }, body };
}

/** The trailers that end a gRPC call's response with the proxy's error once the response has started. */
export function grpcErrorTrailers(err: ProxyError): Record<string, string> {
  return { 'grpc-status': String(err.grpcStatus), 'grpc-message': encodeGrpcMessage(`${err.reason}: ${err.message}`), [ERROR_HEADER]: err.reason };
}

/** Header fields as HTTP/1.1 header lines, each "name: value\r\n". */
export function headerLines(headers: Readonly<Record<string, string>>): string {
  let lines = '';
  for (const name in headers) lines += `${name}: ${headers[name]}\r\n`;
  return lines;
}

/**
 * The answer as the whole of an HTTP/1.1 response on a raw socket that closes after it: a
 * request refused before (or without) a parsed head the pipeline could answer through, or an
 * Upgrade request, whose socket the pipeline holds.
 */
export function rawProxyErrorResponse(err: ProxyError): string {
  const r = proxyErrorResponse(err);
  return `HTTP/1.1 ${r.status} ${STATUS_CODES[r.status] ?? err.reason}\r\n${headerLines(r.headers)}connection: close\r\n\r\n${r.body}`;
}

/**
 * Writes the answer on a raw connection (an Upgrade request, handed over as a socket), then
 * closes it once the answer is written (as node:http does for `connection: close`), whether or
 * not the client closes its side.
 */
export function endWithProxyError(socket: Duplex, err: ProxyError): void {
  socket.once('finish', () => socket.destroy());
  socket.end(rawProxyErrorResponse(err));
}

/** The answer through node:http (the admin port). If the response has already started, the only honest signal left is to cut it. */
export function sendProxyError(res: ServerResponse, err: ProxyError): void {
  if (res.headersSent) {
    res.destroy(err);
    return;
  }
  const r = proxyErrorResponse(err);
  res.writeHead(r.status, r.headers);
  res.end(r.body);
}
