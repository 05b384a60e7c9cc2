// Request bodies for replay: a retry must send the same bytes again, so a replayable request's
// body is held in memory, up to a cap (64 KiB, as Linkerd). A larger body is streamed and the
// request is not retried.
import { PassThrough, Readable } from 'node:stream';
import type { IncomingMessage } from 'node:http';

export const REPLAY_LIMIT = 64 * 1024;
export const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);

export type Body =
  /** The whole body (possibly empty), replayable. */
  | { replayable: true; bytes: Buffer }
  /** Too large to hold: one stream, sent once (`bytes`: how many of its bytes were read already). */
  | { replayable: false; stream: Readable; bytes: number };

function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  if (length !== undefined) return Number(length) > 0;
  return req.headers['transfer-encoding'] !== undefined;
}

/** Reads up to `limit` bytes of the request's body; past that, hands back the stream. */
export function readReplayable(req: IncomingMessage, limit = REPLAY_LIMIT): Promise<Body> {
  if (!hasBody(req)) return Promise.resolve({ replayable: true, bytes: Buffer.alloc(0) });
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (declared > limit) return Promise.resolve({ replayable: false, stream: req, bytes: 0 });
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const cleanup = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
    };
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      size += chunk.length;
      if (size > limit) {
        // over the cap: stream what was read, then the rest, once
        cleanup();
        req.pause();
        const stream = new PassThrough();
        for (const c of chunks) stream.write(c);
        req.pipe(stream);
        resolve({ replayable: false, stream, bytes: 0 });
      }
    };
    const onEnd = () => {
      cleanup();
      resolve({ replayable: true, bytes: Buffer.concat(chunks, size) });
    };
    const onError = (err: Error) => {
      cleanup();
      reject(err);
    };
    req.on('data', onData);
    req.once('end', onEnd);
    req.once('error', onError);
  });
}

export function replay(bytes: Buffer): Readable {
  return Readable.from(bytes.length ? [bytes] : []);
}
