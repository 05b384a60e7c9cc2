// Differential fuzzing of the sidecar's HTTP/1.1 request parser (src/http1/) against llhttp,
// Node's own parser, driven exactly as node:http's server drives it (strict: no lenient flags,
// 16 KiB of headers). For every input, made from a seed: either both parsers accept each
// message with the same method, target, version, headers and body framing (how many body
// bytes, where the next message starts), or ours refuses. Ours accepting what llhttp refuses,
// or reading it differently, is a finding: the input is printed (and the run exits 1).
//
//   node fuzz/http1-diff.ts [--seconds 60] [--seed N]
// test/http1-differential.test.ts runs a short seeded run in `npm test`.
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';
import { ChunkedFramer } from '../src/http1/body.ts';
import { HeadError, parseRequestHead, scanHead } from '../src/http1/head.ts';

/** One message as a parser read it. */
export interface Message {
  method: string;
  target: string;
  version: string;
  headers: [string, string][];
  bodyBytes: number;
  upgrade: boolean;
}

/** The messages read in full, and whether the parser refused what came next. */
export interface Reading {
  messages: Message[];
  refused: boolean;
}

/** Our parser, as the server side of the raw-socket path uses it. */
export function ours(input: Buffer): Reading {
  const messages: Message[] = [];
  let at = 0;
  const framer = new ChunkedFramer();
  try {
    while (at < input.length) {
      const end = scanHead(input, at, at, input.length);
      if (end === -1) break;
      const head = parseRequestHead(input, at, end);
      const headers: [string, string][] = [];
      for (let i = at; i < end; ) {
        const nl = input.indexOf('\r\n', i);
        if (i !== at && nl > i) {
          const line = input.toString('latin1', i, nl);
          const colon = line.indexOf(':');
          headers.push([line.slice(0, colon), line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '')]);
        }
        i = nl + 2;
      }
      let bodyBytes = 0;
      at = end;
      if (head.upgrade) {
        messages.push({ method: head.method, target: head.target, version: head.version, headers, bodyBytes, upgrade: true });
        break; // the rest belongs to the upgraded protocol
      }
      if (head.chunked) {
        framer.reset();
        at += framer.feed(input, at, input.length);
        if (!framer.done) break;
        bodyBytes = framer.bytes;
      } else if (head.contentLength > 0) {
        if (input.length - at < head.contentLength) break;
        bodyBytes = head.contentLength;
        at += head.contentLength;
      }
      messages.push({ method: head.method, target: head.target, version: head.version, headers, bodyBytes, upgrade: false });
      if (!head.keepAlive) break; // the server reads nothing after a request that closes the connection
    }
  } catch (err) {
    if (!(err instanceof HeadError)) throw err;
    return { messages, refused: true };
  }
  return { messages, refused: false };
}

interface LlhttpParser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenient: number): void;
  execute(data: Buffer): number | Error;
  finish(): void;
  close(): void;
  [k: number]: unknown;
}
interface LlhttpCtor {
  new (): LlhttpParser;
  REQUEST: number;
  kOnHeaders: number;
  kOnHeadersComplete: number;
  kOnBody: number;
  kOnMessageComplete: number;
  kOnExecute: number;
}
const require = createRequire(import.meta.url);
// node:http's own parser class: reachable (without flags) through the pool node:http keeps
const HTTPParser = (require('_http_common') as { parsers: { alloc(): { constructor: LlhttpCtor } } }).parsers.alloc().constructor;

/** llhttp as node:http's server runs it. */
export function llhttp(input: Buffer): Reading {
  const p = new HTTPParser();
  p.initialize(HTTPParser.REQUEST, {}, 16 * 1024, 0);
  const messages: Message[] = [];
  let current: Message | undefined;
  let pendingHeaders: string[] = [];
  let pendingUrl = '';
  p[HTTPParser.kOnHeaders] = (headers: string[], url: string) => {
    pendingHeaders.push(...headers);
    pendingUrl += url;
  };
  p[HTTPParser.kOnHeadersComplete] = (major: number, minor: number, headers: string[] | undefined, method: number, url: string | undefined, _code: unknown, _msg: unknown, upgrade: boolean) => {
    const h = headers ?? pendingHeaders;
    const pairs: [string, string][] = [];
    for (let i = 0; i < h.length; i += 2) pairs.push([h[i]!, h[i + 1]!]);
    current = { method: METHODS[method] ?? String(method), target: url ?? pendingUrl, version: `${major}.${minor}`, headers: pairs, bodyBytes: 0, upgrade };
    pendingHeaders = [];
    pendingUrl = '';
    return 0;
  };
  p[HTTPParser.kOnBody] = (b: Buffer) => {
    if (current) current.bodyBytes += b.length;
  };
  p[HTTPParser.kOnMessageComplete] = () => {
    // headers flushed since the head were trailers
    pendingHeaders = [];
    pendingUrl = '';
    if (current) messages.push(current);
    current = undefined;
  };
  const r = p.execute(input);
  // an upgrade: llhttp stops after the head (node:http hands the socket over)
  if (current?.upgrade) messages.push(current);
  p.close();
  return { messages, refused: r instanceof Error };
}
// llhttp numbers methods in its own order: node:http's _http_common.methods
const METHODS = (require('_http_common') as { methods: string[] }).methods;

/** A disagreement: ours accepted a message llhttp refused or read differently; undefined when they agree. */
export function compare(input: Buffer): string | undefined {
  const a = ours(input);
  const b = llhttp(input);
  for (let k = 0; k < a.messages.length; k++) {
    const m = a.messages[k]!;
    const l = b.messages[k];
    if (!l) {
      // ours read a whole message; llhttp did not: refused, or still waiting (then a finding too)
      return `message ${k}: ours accepted ${m.method} ${m.target}, llhttp ${b.refused ? 'refused it' : 'did not finish it'}`;
    }
    const sa = JSON.stringify(m);
    const sb = JSON.stringify(l);
    if (sa !== sb) return `message ${k} read differently:\n  ours   ${sa}\n  llhttp ${sb}`;
  }
  // llhttp read more messages than ours: fine only if ours refused or is waiting for more
  // bytes (a message ours has not finished is not forwarded)
  return undefined;
}

// ---- inputs --------------------------------------------------------------------------------

export function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    // xorshift32
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 2 ** 32;
  };
}

const NASTY = ['\r', '\n', '\r\n', ' ', '\t', ':', '\0', '\x01', '\x7f', '\x80', '\xff', ';', ',', '"', '\\', '0', 'chunked', 'Content-Length: 5\r\n', 'Transfer-Encoding: chunked\r\n', '\r\n\r\n', ' \r\n', 'Host: x\r\n', '\r\n ', 'HTTP/1.1', 'ffffffffffffffff', '-1', '+5', '0x5', 'identity', 'Connection: close\r\n', 'Upgrade: websocket\r\nConnection: Upgrade\r\n', 'Expect: 100-continue\r\n'];
const METHOD_POOL = ['GET', 'POST', 'PUT', 'DELETE', 'HEAD', 'OPTIONS', 'PATCH', 'TRACE', 'CONNECT', 'PRI', 'get', 'FOO', 'M-SEARCH', 'PROPFIND', 'G ET', ''];
const TARGETS = ['/', '/a?b=c', 'http://pod-service/x', '*', '/%00', '/a b', '/é', '/#frag', '/{x}', '/"q"', '/|', "/'", '/<', '/\\', '/^', '/`'];
const HEADER_NAMES = ['Host', 'Content-Length', 'Transfer-Encoding', 'Connection', 'X-A', 'x-b', 'Cookie', 'Set-Cookie', 'Expect', 'Upgrade', 'Te', 'Trailer', 'Keep-Alive', 'X Y', 'X:Y', 'Ä', ''];
const VALUES = ['1', '0', '5', '10', 'chunked', 'gzip, chunked', 'chunked, gzip', 'Chunked', 'identity', 'close', 'keep-alive', 'Upgrade', 'websocket', 'a b', ' padded ', 'a\tb', 'x\x01y', '\xe9\xff', '', '05', '1 ', '1,1', '+1', 'pod-service', 'h:1', '100-continue'];

function pickFrom<T>(r: () => number, a: readonly T[]): T {
  return a[Math.floor(r() * a.length)]!;
}

/** A chunked body, mostly well formed. */
function chunkedBody(r: () => number): string {
  let s = '';
  const n = Math.floor(r() * 3);
  for (let k = 0; k < n; k++) {
    const data = 'x'.repeat(1 + Math.floor(r() * 20));
    const size = r() < 0.95 ? data.length.toString(16) : pickFrom(r, ['', 'z', ' 5', '5 ', '-1', '0x5', data.length.toString(16).toUpperCase(), `0${data.length.toString(16)}`]);
    const ext = r() < 0.85 ? '' : pickFrom(r, [';a', ';a=b', ';a="b c"', '; a', ';a =b', ';', ';a=', ';a="\\"', ';a="x"y']);
    s += `${size}${ext}\r\n${data}\r\n`;
  }
  s += '0';
  if (r() < 0.1) s += pickFrom(r, [';x', ';x=1', '; x']);
  s += '\r\n';
  if (r() < 0.2) s += pickFrom(r, ['T: 1\r\n', 'X-T: a b\r\n', 'bad trailer\r\n', 'T : 1\r\n', ' T: 1\r\n']);
  return s + '\r\n';
}

/** One request made from parts, mostly well formed, sometimes not. */
function generated(r: () => number): string {
  // most requests are well formed (so the framing of what follows is compared), some not
  const odd = r() < 0.3 ? 0.15 : 0;
  const method = r() >= odd ? pickFrom(r, METHOD_POOL.slice(0, 8)) : pickFrom(r, METHOD_POOL);
  const target = r() >= odd ? pickFrom(r, TARGETS.slice(0, 4)) : pickFrom(r, TARGETS);
  const version = r() >= odd ? (r() < 0.9 ? 'HTTP/1.1' : 'HTTP/1.0') : pickFrom(r, ['HTTP/1.0', 'HTTP/2.0', 'HTTP/1.2', 'http/1.1', 'HTTP/1.1 ', 'HTTP/01.1']);
  let s = `${method} ${target} ${version}\r\n`;
  if (r() >= odd / 2) s += 'Host: pod-service\r\n';
  const extra = Math.floor(r() * 4);
  let body = '';
  for (let k = 0; k < extra; k++) {
    const name = r() >= odd ? pickFrom(r, ['X-A', 'x-b', 'Cookie', 'Connection', 'Expect', 'Te', 'Keep-Alive']) : pickFrom(r, HEADER_NAMES);
    const value = r() >= odd ? pickFrom(r, ['1', 'close', 'keep-alive', 'a b', ' padded ', 'a\tb', '\xe9\xff', '', '100-continue', 'trailers']) : pickFrom(r, VALUES);
    const sep = r() >= odd ? ': ' : pickFrom(r, [':', ' : ', ':\t', '::']);
    s += `${name}${sep}${value}${r() >= odd / 3 ? '\r\n' : '\n'}`;
    if (r() < odd / 3) s += ` folded\r\n`;
  }
  const framing = r();
  if (framing < 0.3) {
    s += 'Transfer-Encoding: chunked\r\n';
    body = chunkedBody(r);
  } else if (framing < 0.55) {
    body = 'b'.repeat(Math.floor(r() * 12));
    s += `Content-Length: ${r() >= odd ? body.length : pickFrom(r, VALUES)}\r\n`;
  }
  return `${s}\r\n${body}`;
}

function mutate(r: () => number, input: Buffer): Buffer {
  let b = input;
  const edits = Math.floor(r() * 4);
  for (let k = 0; k < edits; k++) {
    const at = Math.floor(r() * (b.length + 1));
    switch (Math.floor(r() * 5)) {
      case 0:
        if (b.length) {
          b = Buffer.from(b);
          b[Math.min(at, b.length - 1)] = Math.floor(r() * 256);
        }
        break;
      case 1:
        b = Buffer.concat([b.subarray(0, at), Buffer.from(pickFrom(r, NASTY), 'latin1'), b.subarray(at)]);
        break;
      case 2:
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + Math.floor(r() * 4))]);
        break;
      case 3:
        b = Buffer.concat([b.subarray(0, at), b.subarray(at, at + 16), b.subarray(at)]);
        break;
      default:
        b = b.subarray(0, at);
    }
  }
  return b;
}

/** The input number `n` of a run seeded with `seed`: one to three requests back to back, mutated. */
export function input(seed: number, n: number): Buffer {
  const r = rng(seed * 1_000_003 + n + 1);
  const count = 1 + Math.floor(r() * 3);
  let s = '';
  for (let k = 0; k < count; k++) s += generated(r);
  return r() < 0.7 ? Buffer.from(s, 'latin1') : mutate(r, Buffer.from(s, 'latin1'));
}

/** Runs inputs 0.. of `seed` until `until()` says stop; returns the counts and the first finding. */
export function run(seed: number, until: (n: number) => boolean): { inputs: number; bothAccepted: number; oursRefused: number; finding?: { n: number; input: Buffer; why: string } } {
  let n = 0;
  let bothAccepted = 0;
  let oursRefused = 0;
  for (; !until(n); n++) {
    const bytes = input(seed, n);
    const why = compare(bytes);
    if (why) return { inputs: n + 1, bothAccepted, oursRefused, finding: { n, input: bytes, why } };
    const a = ours(bytes);
    if (a.refused) oursRefused++;
    else if (a.messages.length) bothAccepted++;
  }
  return { inputs: n, bothAccepted, oursRefused };
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { seconds: { type: 'string', default: '60' }, seed: { type: 'string', default: '1' } } });
  const seconds = Number(values.seconds);
  const seed = Number(values.seed);
  const start = Date.now();
  const end = start + seconds * 1000;
  const result = run(seed, (n) => n % 1000 === 0 && Date.now() >= end);
  const took = ((Date.now() - start) / 1000).toFixed(0);
  console.log(`seed ${seed}: ${result.inputs} inputs in ${took} s; both accepted ${result.bothAccepted}, ours refused ${result.oursRefused}`);
  if (result.finding) {
    console.log(`FINDING at input ${result.finding.n}: ${result.finding.why}\ninput: ${JSON.stringify(result.finding.input.toString('latin1'))}`);
    process.exitCode = 1;
  }
}
