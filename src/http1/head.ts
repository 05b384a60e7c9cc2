// A strict HTTP/1.1 head parser (RFC 9112) for the sidecar's raw-socket data path: request
// heads from clients, response heads from upstreams. It refuses what a lenient parser would
// read one way and the next hop another (request smuggling): Content-Length with
// Transfer-Encoding, a duplicate or malformed Content-Length, a Transfer-Encoding that does not
// end in chunked, bare CR or LF, obs-fold, whitespace before the colon, control characters,
// a missing or repeated Host. What it accepts, llhttp (Node's parser, strict mode) accepts the
// same way (test/http1-differential.test.ts, fuzz/http1-diff.ts).
//
// Heads are found in two steps: `scanHead` walks the bytes as they arrive (each byte once) to
// find the empty line that ends the head, refusing a bare LF at once; the parse functions then
// read the complete head.

import { METHODS } from '../http/node-http.ts';

/** The methods node:http (llhttp) knows, which apps behind the sidecar are written for; others are refused as today. */
const KNOWN_METHODS = new Set(METHODS);

/** The largest head (request or status line and header lines) taken: larger is 431 (as node:http's 16 KiB). */
export const MAX_HEAD_BYTES = 16 * 1024;

/** tchar (RFC 9110 5.6.2): the bytes of a token (methods, header names, transfer codings). */
export const TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") TCHAR[c.charCodeAt(0)] = 1;
/** field-vchar, SP and HTAB: the bytes a header value may hold (obs-text 0x80-0xFF included). */
const VALUE = new Uint8Array(256);
for (let c = 0x20; c < 0x7f; c++) VALUE[c] = 1;
for (let c = 0x80; c <= 0xff; c++) VALUE[c] = 1;
VALUE[0x09] = 1;
/** The bytes of a request-target: visible ASCII. */
const TARGET = new Uint8Array(256);
for (let c = 0x21; c < 0x7f; c++) TARGET[c] = 1;

/** buf's bytes [start, end) as a latin1 string (Buffer's own fast path). */
const latin1 = (buf: Buffer, start: number, end: number): string => (buf as Buffer & { latin1Slice(start: number, end: number): string }).latin1Slice(start, end);

/** An absolute-form request-target: scheme "://" a non-empty authority, then a path, a query or nothing. */
const ABSOLUTE = /^[A-Za-z]+:\/\/[A-Za-z0-9._~%!$&'()*+,;=:@[\]-]+(?:[/?].*)?$/;

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const HTAB = 0x09;
const COLON = 0x3a;

export class HeadError extends Error {
  override readonly name = 'HeadError';
  /** 400 for a malformed head, 431 for one over the size limit. */
  readonly tooLarge: boolean;
  constructor(message: string, tooLarge = false) {
    super(message);
    this.tooLarge = tooLarge;
  }
}

/**
 * Looks for the end of a head in buf[from, end), `scanned` bytes of which were looked at
 * already. Returns the index just past the empty line, -1 when more bytes are needed (then
 * `end` is the new `scanned`). Throws HeadError for a bare LF, or when the head passes
 * `limit` bytes without ending.
 */
export function scanHead(buf: Buffer, from: number, scanned: number, end: number, limit = MAX_HEAD_BYTES): number {
  let i = buf.indexOf(LF, Math.max(from, scanned));
  while (i !== -1 && i < end) {
    if (i === from || buf[i - 1] !== CR) throw new HeadError('a line ends in a bare LF');
    // "\r\n\r\n": the empty line that ends the head (the head starts with its start line, so i - 3 >= from)
    if (i - 3 >= from && buf[i - 2] === LF && buf[i - 3] === CR) {
      if (i + 1 - from > limit) throw new HeadError('the head is larger than the limit', true);
      return i + 1;
    }
    i = buf.indexOf(LF, i + 1);
  }
  if (end - from > limit) throw new HeadError('the head is larger than the limit', true);
  return -1;
}

/** Headers as node:http presents them: lower-case names; repeats joined with ", " ("; " for cookie), set-cookie a list. */
export type Headers = Record<string, string | string[] | undefined>;

export interface RequestHead {
  readonly method: string;
  /** The request-target as sent (origin form, or absolute form from an HTTP_PROXY client). */
  readonly target: string;
  /** "1.1" or "1.0". */
  readonly version: string;
  readonly headers: Headers;
  /** The declared body length; -1 for none (then a chunked body or none). */
  readonly contentLength: number;
  readonly chunked: boolean;
  /** The connection may carry another request after this one. */
  readonly keepAlive: boolean;
  /** `Expect: 100-continue`. */
  readonly expectContinue: boolean;
  /** An Upgrade request (WebSocket): Connection names upgrade and an Upgrade header is present. */
  readonly upgrade: boolean;
}

export interface ResponseHead {
  readonly status: number;
  readonly reason: string;
  readonly version: string;
  /** Header names as the upstream wrote them and their values, in order. */
  readonly names: string[];
  readonly values: string[];
  readonly contentLength: number;
  readonly chunked: boolean;
  /** Transfer-Encoding without chunked last: the body runs to the close of the connection. */
  readonly closeDelimited: boolean;
  readonly keepAlive: boolean;
  /** The lower-case tokens of the Connection header (hop-by-hop names), or undefined. */
  readonly connection: string | undefined;
}

/** Parses a complete request head buf[start, end) (end: just past the empty line, from scanHead). */
export function parseRequestHead(buf: Buffer, start: number, end: number): RequestHead {
  // request-line = method SP request-target SP HTTP-version CRLF
  let i = start;
  while (TCHAR[buf[i]!]) i++;
  if (i === start || buf[i] !== SP) throw new HeadError('malformed request line: method');
  const method = latin1(buf, start, i);
  if (!KNOWN_METHODS.has(method)) throw new HeadError(`unknown method ${JSON.stringify(method.slice(0, 24))}`);
  const t0 = ++i;
  while (TARGET[buf[i]!]) i++;
  if (i === t0 || buf[i] !== SP) throw new HeadError('malformed request line: request-target');
  const target = latin1(buf, t0, i);
  const first = buf[t0];
  // origin form (/path), asterisk form (*), or absolute form (scheme://authority...) from a proxy client
  if (first !== 0x2f && !(first === 0x2a && i === t0 + 1) && !ABSOLUTE.test(target)) throw new HeadError('malformed request-target');
  i++;
  const version = httpVersion(buf, i);
  if (version === undefined || buf[i + 8] !== CR || buf[i + 9] !== LF) throw new HeadError('malformed request line: version');
  i += 10;

  const headers: Headers = {};
  let contentLength = -1;
  let te: string | undefined;
  let hosts = 0;
  let connection: string | undefined;
  let expect: string | undefined;
  let upgradeHeader = false;
  while (i < end - 2) {
    const line = fieldLine(buf, i);
    const name = line.name;
    const value = line.value;
    i = line.next;
    switch (name) {
      case 'content-length':
        if (contentLength !== -1) throw new HeadError('more than one Content-Length');
        contentLength = decimal(value);
        break;
      case 'transfer-encoding':
        // whitespace after the last coding is read differently by other parsers: refused
        if (line.trailingSpace) throw new HeadError('whitespace after Transfer-Encoding');
        te = te === undefined ? value : `${te}, ${value}`;
        break;
      case 'host':
        hosts++;
        break;
      case 'connection':
        connection = connection === undefined ? value : `${connection}, ${value}`;
        break;
      case 'expect':
        expect = value;
        break;
      case 'upgrade':
        upgradeHeader ||= value !== ''; // an empty Upgrade asks for nothing
        break;
    }
    add(headers, name, value);
  }
  if (version === '1.1' && hosts === 0) throw new HeadError('no Host header');
  if (hosts > 1) throw new HeadError('more than one Host header');
  let chunked = false;
  if (te !== undefined) {
    if (contentLength !== -1) throw new HeadError('both Content-Length and Transfer-Encoding');
    if (version === '1.0') throw new HeadError('Transfer-Encoding in an HTTP/1.0 request');
    if (!endsInChunked(te)) throw new HeadError('Transfer-Encoding does not end in chunked');
    chunked = true;
  }
  const tokens = connection === undefined ? undefined : connection.toLowerCase();
  const keepAlive = version === '1.1' ? !hasToken(tokens, 'close') : hasToken(tokens, 'keep-alive');
  const upgrade = upgradeHeader && hasToken(tokens, 'upgrade');
  // an Upgrade (WebSocket) handshake has no body: one with a body would be framed two ways
  if (upgrade && (chunked || contentLength > 0)) throw new HeadError('an Upgrade request with a body');
  if (method === 'CONNECT') throw new HeadError('CONNECT is not proxied');
  return { method, target, version, headers, contentLength, chunked, keepAlive, expectContinue: expect !== undefined && expect.toLowerCase() === '100-continue', upgrade };
}

/** Parses a complete response head buf[start, end). */
export function parseResponseHead(buf: Buffer, start: number, end: number): ResponseHead {
  // status-line = HTTP-version SP status-code SP [ reason-phrase ] CRLF
  const version = httpVersion(buf, start);
  if (version === undefined || buf[start + 8] !== SP) throw new HeadError('malformed status line');
  let i = start + 9;
  const d0 = buf[i]! - 48;
  const d1 = buf[i + 1]! - 48;
  const d2 = buf[i + 2]! - 48;
  if (!(d0 >= 1 && d0 <= 9 && d1 >= 0 && d1 <= 9 && d2 >= 0 && d2 <= 9)) throw new HeadError('malformed status code');
  const status = d0 * 100 + d1 * 10 + d2;
  i += 3;
  let reason = '';
  if (buf[i] === SP) {
    const r0 = ++i;
    while (buf[i] !== CR) {
      if (!VALUE[buf[i]!]) throw new HeadError('a control character in the reason phrase');
      i++;
    }
    reason = latin1(buf, r0, i);
  }
  if (buf[i] !== CR || buf[i + 1] !== LF) throw new HeadError('malformed status line');
  i += 2;

  const names: string[] = [];
  const values: string[] = [];
  let contentLength = -1;
  let te: string | undefined;
  let connection: string | undefined;
  while (i < end - 2) {
    const line = fieldLine(buf, i);
    i = line.next;
    if (line.name === 'content-length') {
      const n = decimal(line.value);
      if (contentLength !== -1 && n !== contentLength) throw new HeadError('different Content-Lengths');
      contentLength = n;
    } else if (line.name === 'transfer-encoding') te = te === undefined ? line.value : `${te}, ${line.value}`;
    else if (line.name === 'connection') connection = connection === undefined ? line.value : `${connection}, ${line.value}`;
    names.push(line.raw);
    values.push(line.value);
  }
  const tokens = connection === undefined ? undefined : connection.toLowerCase();
  let chunked = false;
  let closeDelimited = false;
  if (te !== undefined) {
    if (contentLength !== -1) throw new HeadError('both Content-Length and Transfer-Encoding');
    if (endsInChunked(te)) chunked = true;
    else closeDelimited = true;
  } else if (contentLength === -1) closeDelimited = true;
  const keepAlive = !closeDelimited && (version === '1.1' ? !hasToken(tokens, 'close') : hasToken(tokens, 'keep-alive'));
  return { status, reason, version, names, values, contentLength, chunked, closeDelimited, keepAlive, connection: tokens };
}

/** "1.1" or "1.0" for the bytes "HTTP/1.1" / "HTTP/1.0" at i. */
function httpVersion(buf: Buffer, i: number): string | undefined {
  if (buf[i] !== 0x48 || buf[i + 1] !== 0x54 || buf[i + 2] !== 0x54 || buf[i + 3] !== 0x50 || buf[i + 4] !== 0x2f || buf[i + 5] !== 0x31 || buf[i + 6] !== 0x2e) return undefined;
  const minor = buf[i + 7];
  return minor === 0x31 ? '1.1' : minor === 0x30 ? '1.0' : undefined;
}

interface FieldLine {
  /** lower case */
  name: string;
  /** as written */
  raw: string;
  value: string;
  /** The value had whitespace after it (trimmed). */
  trailingSpace: boolean;
  next: number;
}

/**
 * One header line at i: field-name ":" OWS field-value OWS CRLF. Also used for chunked
 * trailers. The caller has made sure the line ends in CRLF (scanHead).
 */
export function fieldLine(buf: Buffer, i: number): FieldLine {
  const n0 = i;
  while (TCHAR[buf[i]!]) i++;
  if (i === n0) throw new HeadError(buf[i] === SP || buf[i] === HTAB ? 'obs-fold (a header line starts with whitespace)' : 'malformed header name');
  if (buf[i] !== COLON) throw new HeadError(buf[i] === SP || buf[i] === HTAB ? 'whitespace before the colon of a header' : 'malformed header name');
  const raw = latin1(buf, n0, i);
  i++;
  while (buf[i] === SP || buf[i] === HTAB) i++;
  const v0 = i;
  let last = i; // just past the last byte that is not whitespace
  for (;;) {
    const c = buf[i]!;
    if (c === CR) break;
    if (!VALUE[c]) throw new HeadError('a control character in a header value');
    i++;
    if (c !== SP && c !== HTAB) last = i;
  }
  if (buf[i + 1] !== LF) throw new HeadError('a bare CR in a header line');
  return { name: lowerCase(raw), raw, value: latin1(buf, v0, last), trailingSpace: last !== i, next: i + 2 };
}

const lowerCache = new Map<string, string>();
/** Header names repeat from request to request: their lower case is remembered (bounded). */
function lowerCase(name: string): string {
  let lower = lowerCache.get(name);
  if (lower === undefined) {
    lower = name.toLowerCase();
    if (lowerCache.size < 1024) lowerCache.set(name, lower);
  }
  return lower;
}

function add(headers: Headers, name: string, value: string): void {
  const prior = headers[name];
  if (prior === undefined) headers[name] = name === 'set-cookie' ? [value] : value;
  else if (Array.isArray(prior)) prior.push(value);
  else headers[name] = `${prior}${name === 'cookie' ? '; ' : ', '}${value}`;
}

/** 1*DIGIT, as a number (at most 15 digits: beyond any body this proxy forwards). */
function decimal(value: string): number {
  if (value.length === 0 || value.length > 15) throw new HeadError('malformed Content-Length');
  let n = 0;
  for (let i = 0; i < value.length; i++) {
    const d = value.charCodeAt(i) - 48;
    if (d < 0 || d > 9) throw new HeadError('malformed Content-Length');
    n = n * 10 + d;
  }
  return n;
}

/** The transfer codings end in chunked, which appears once; every coding is a token. */
function endsInChunked(te: string): boolean {
  const codings = te.split(',');
  for (let k = 0; k < codings.length; k++) {
    const c = codings[k]!.trim().toLowerCase();
    if (c === '' || !isToken(c)) return false;
    if (c === 'chunked' && k !== codings.length - 1) return false;
  }
  return codings[codings.length - 1]!.trim().toLowerCase() === 'chunked';
}

function isToken(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (!TCHAR[s.charCodeAt(i)]) return false;
  return true;
}

/** Whether a comma-separated, lower-cased list holds `token`. */
export function hasToken(list: string | undefined, token: string): boolean {
  if (list === undefined) return false;
  if (list === token) return true;
  for (const t of list.split(',')) if (t.trim() === token) return true;
  return false;
}
