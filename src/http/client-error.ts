// What a listener answers to a request Node's parser rejects: 431 for headers over the limit,
// 400 for anything malformed, each with `x-tsmesh-error` so the caller can tell who refused it.
import type { Socket } from 'node:net';
import { codes } from '../errors/errors.ts';
import type { Logger } from '../log/log.ts';

export function onClientError(log: Logger, direction: string) {
  return (err: NodeJS.ErrnoException & { rawPacket?: Buffer }, socket: Socket): void => {
    const tooLarge = err.code === 'HPE_HEADER_OVERFLOW';
    const { reason, status } = tooLarge ? codes.HEADERS_TOO_LARGE : codes.BAD_REQUEST;
    if (err.code !== 'ECONNRESET') {
      log.warn({ code: err.code, direction, client: socket.remoteAddress, reason: err.message }, `refused a malformed request: ${err.message}`);
    }
    if (!socket.writable || (socket as Socket & { _httpMessage?: unknown })._httpMessage) {
      socket.destroy();
      return;
    }
    const text = tooLarge ? 'Request Header Fields Too Large' : 'Bad Request';
    const body = `${reason}: ${tooLarge ? 'request headers exceed the limit' : err.message}\n`;
    socket.end(
      `HTTP/1.1 ${status} ${text}\r\ncontent-type: text/plain\r\nx-tsmesh-error: ${reason}\r\nconnection: close\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
  };
}
