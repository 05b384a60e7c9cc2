// Request bodies for replay: a retry must send the same bytes again, so a replayable request's
// body is held in memory, up to a cap (64 KiB, as Linkerd). A larger body is streamed and the
// request is not retried. (The HTTP/1.1 path reads it in src/http1/transport.ts.)
export const REPLAY_LIMIT = 64 * 1024;
export const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);
