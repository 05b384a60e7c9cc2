// Protocol detection from the first bytes a client sends on an accepted socket, so the
// sidecar can hand an HTTP connection to its HTTP server, terminate TLS, or pipe anything
// else as opaque TCP. The bytes read are put back (socket.unshift) and the socket is left
// paused, so whoever takes it over sees the stream from its first byte.
import type { Socket } from 'node:net';

export type Protocol = 'http1' | 'h2' | 'tls' | 'opaque';

export interface Detection {
  readonly protocol: Protocol;
  /** the bytes read to decide, already put back into the socket */
  readonly head: Buffer;
}

export interface DetectOptions {
  /**
   * How long a client may stay silent. A server-first protocol (SMTP, MySQL, ...) has the client
   * send nothing until the server speaks: after this it is opaque, with an empty head. Only
   * silence counts: bytes that arrived by then (even while the event loop was busy elsewhere)
   * are read and decide. Default 5000 ms.
   */
  readonly timeoutMs?: number;
  /** performance.now() when the socket was accepted: the timeout runs from there. Default: now. */
  readonly acceptedAt?: number;
}

/** HTTP/2 connection preface (RFC 9113 3.4). */
export const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
/** The longest request-line prefix read to recognise HTTP/1.x: a method token and a space. */
export const MAX_METHOD = 24;
/** tchar of RFC 9110 5.6.2: the characters a method token may hold. */
const TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") TCHAR[c.charCodeAt(0)] = 1;

type Verdict = Protocol | 'more';

/** Empty lines an HTTP/1 parser skips before a request line (RFC 9112 2.2; llhttp takes any number). */
const CR = 0x0d;
const LF = 0x0a;
/** More leading CR/LF than this is no other protocol's opening: the HTTP server may judge it. */
const MAX_EMPTY_LINES = 64;

/**
 * Classifies the first bytes. 'more' means they are a prefix of something recognisable and
 * a decision needs more bytes (at most H2_PREFACE.length or MAX_METHOD + 1 of them, after any
 * leading empty lines).
 */
export function classify(head: Buffer): Verdict {
  if (head.length === 0) return 'more';
  // TLS: a handshake record (22) of version 3.x (SSL 3.0 .. TLS 1.3 all say 0x03 here)
  if (head[0] === 0x16) {
    if (head.length < 2) return 'more';
    return head[1] === 0x03 ? 'tls' : 'opaque';
  }
  // HTTP/2 prior knowledge: the preface, byte for byte ("PRI" is also a valid method token,
  // so this comes before HTTP/1)
  const n = Math.min(head.length, H2_PREFACE.length);
  if (head.subarray(0, n).equals(H2_PREFACE.subarray(0, n))) return head.length >= H2_PREFACE.length ? 'h2' : 'more';
  // HTTP/1.x: a method token followed by a space, after any empty lines: an app's HTTP parser
  // skips them, so bytes that open with them and then a request line are HTTP (were they piped
  // as opaque TCP, the request would reach the app unseen, with whatever headers it carries)
  let start = 0;
  while (start < head.length && (head[start] === CR || head[start] === LF)) start++;
  if (start > MAX_EMPTY_LINES) return 'http1';
  for (let i = start; i < head.length; i++) {
    const c = head[i]!;
    if (c === 0x20) return i > start ? 'http1' : 'opaque';
    if (!TCHAR[c] || i - start >= MAX_METHOD) return 'opaque';
  }
  return 'more';
}

/**
 * What an undecided head ('more') is on its way to being, for a client that stopped sending
 * before a decision: the HTTP/2 preface past its "PRI" (the method), a TLS record, or else (a
 * method token, maybe after empty lines) HTTP/1. The server it is handed to judges the rest
 * with its own limits (headersTimeout, the preface, the handshake); it is never opaque, which
 * would let it past every HTTP check.
 */
export function likelyProtocol(head: Buffer): Protocol {
  if (head[0] === 0x16) return 'tls';
  if (head.length > 3 && H2_PREFACE.subarray(0, head.length).equals(head)) return 'h2';
  return 'http1';
}

/**
 * Reads just enough of `socket` to tell HTTP/1.x, HTTP/2 (prior knowledge), TLS and
 * anything else apart. Resolves with the socket paused and the bytes put back; never
 * rejects (a socket that errors or ends before deciding is opaque with what it sent).
 */
export function detectProtocol(socket: Socket, options: DetectOptions = {}): Promise<Detection> {
  const timeoutMs = options.timeoutMs ?? 5000;
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let length = 0;
    let done = false;
    const finish = (protocol: Protocol) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.off('readable', onReadable);
      socket.off('end', onEnd);
      socket.off('error', onEnd);
      socket.off('close', onEnd);
      socket.pause();
      const head = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, length);
      // after 'end' (only if the EOF check above missed it) the stream takes nothing back
      if (head.length > 0 && !socket.destroyed && !socket.readableEnded) socket.unshift(head);
      resolve({ protocol, head });
    };
    const onReadable = () => {
      // read() without a size returns whatever is buffered; decide on it, or wait for more
      for (let chunk = socket.read() as Buffer | null; chunk !== null; chunk = socket.read() as Buffer | null) {
        chunks.push(chunk);
        length += chunk.length;
        const verdict = classify(chunks.length === 1 ? chunk : Buffer.concat(chunks, length));
        if (verdict !== 'more') return finish(verdict);
      }
      // The client half-closed before a decision: decide now, while 'end' is still pending
      // (it is emitted on the next tick), so the head can still be put back in front of it.
      if ((socket as unknown as { _readableState?: { ended?: boolean } })._readableState?.ended) finish('opaque');
    };
    const onEnd = () => finish('opaque');
    // At the timeout, a busy event loop may not have read what arrived yet: I/O is polled before
    // immediates run, so by then any bytes waiting in the kernel have been read (and decided on).
    // Nothing at all: a server-first protocol, opaque. Bytes that did not decide: their likely protocol.
    const onTimeout = () => setImmediate(() => finish(length === 0 ? 'opaque' : likelyProtocol(Buffer.concat(chunks, length))));
    const timer = setTimeout(onTimeout, Math.max(0, (options.acceptedAt ?? performance.now()) + timeoutMs - performance.now()));
    socket.on('readable', onReadable);
    socket.once('end', onEnd);
    socket.once('error', onEnd);
    socket.once('close', onEnd);
    onReadable();
  });
}
