// Body framing for the raw-socket HTTP/1.1 path: where a body ends, found without buffering
// it. A Content-Length body is counted down; a chunked body is walked by a small state machine
// (chunk sizes, extensions, data, trailers) that checks the framing as strictly as the head
// parser checks heads, so the bytes forwarded verbatim frame the same way at the next hop.
// The data bytes are counted (body limits, access logs).
import { HeadError, TCHAR } from './head.ts';

const CR = 0x0d;
const LF = 0x0a;

// the framer's states
const S_Size = 0;
const S_Ext = 1;
const S_SizeLf = 2;
const S_Data = 3;
const S_DataCr = 4;
const S_DataLf = 5;
const S_TrailerStart = 6;
const S_Trailer = 7;
const S_TrailerLf = 8;
const S_EndLf = 9;
const S_Done = 10;

const HEX = new Int8Array(256).fill(-1);
for (let c = 0; c < 10; c++) HEX[48 + c] = c;
for (let c = 0; c < 6; c++) HEX[65 + c] = HEX[97 + c] = 10 + c;

/** The most hex digits of a chunk size (2^48 bytes: beyond anything forwarded). */
const MAX_SIZE_DIGITS = 12;
/** The most bytes of one chunk's extensions, and of all trailers. */
const MAX_EXT = 4096;
const MAX_TRAILERS = 16 * 1024;

/**
 * Walks a chunked body. `feed` returns how many of the bytes given belong to the body (all of
 * them until the last chunk's trailers end; then `done` is true and the rest belongs to the
 * next message). Throws HeadError on a malformed chunk.
 */
export class ChunkedFramer {
  /** Data bytes seen (without the chunked framing). */
  bytes = 0;
  done = false;
  #state: number = S_Size;
  #size = 0;
  #digits = 0;
  #remaining = 0;
  #ext = '';
  #trailerBytes = 0;
  #line = '';

  reset(): void {
    this.bytes = 0;
    this.done = false;
    this.#state = S_Size;
    this.#size = 0;
    this.#digits = 0;
    this.#remaining = 0;
    this.#ext = '';
    this.#trailerBytes = 0;
    this.#line = '';
  }

  feed(buf: Buffer, start: number, end: number): number {
    let i = start;
    while (i < end) {
      switch (this.#state) {
        case S_Data: {
          const n = Math.min(this.#remaining, end - i);
          this.#remaining -= n;
          this.bytes += n;
          i += n;
          if (this.#remaining === 0) this.#state = S_DataCr;
          continue;
        }
        case S_Size: {
          const c = buf[i]!;
          const h = HEX[c]!;
          if (h >= 0) {
            if (++this.#digits > MAX_SIZE_DIGITS) throw new HeadError('a chunk size is too large');
            this.#size = this.#size * 16 + h;
          } else if (this.#digits === 0) throw new HeadError('malformed chunk size');
          else if (c === CR) this.#state = S_SizeLf;
          else if (c === 0x3b /* ; */) {
            this.#ext = ';';
            this.#state = S_Ext;
          } else throw new HeadError('malformed chunk size');
          break;
        }
        case S_Ext: {
          const c = buf[i]!;
          if (c === CR) {
            if (!validExtensions(this.#ext)) throw new HeadError('malformed chunk extension');
            this.#ext = '';
            this.#state = S_SizeLf;
          } else {
            if (this.#ext.length >= MAX_EXT) throw new HeadError('chunk extensions too long');
            this.#ext += String.fromCharCode(c);
          }
          break;
        }
        case S_SizeLf:
          if (buf[i] !== LF) throw new HeadError('a bare CR after a chunk size');
          this.#digits = 0;
          if (this.#size === 0) this.#state = S_TrailerStart;
          else {
            this.#remaining = this.#size;
            this.#size = 0;
            this.#state = S_Data;
          }
          break;
        case S_DataCr:
          if (buf[i] !== CR) throw new HeadError('chunk data longer than its size');
          this.#state = S_DataLf;
          break;
        case S_DataLf:
          if (buf[i] !== LF) throw new HeadError('a bare CR after chunk data');
          this.#state = S_Size;
          break;
        case S_TrailerStart:
          if (buf[i] === CR) this.#state = S_EndLf;
          else {
            this.#line = '';
            this.#state = S_Trailer;
            continue; // this byte starts a trailer line
          }
          break;
        case S_Trailer: {
          const c = buf[i]!;
          if (++this.#trailerBytes > MAX_TRAILERS) throw new HeadError('trailers too long');
          if (c === CR) this.#state = S_TrailerLf;
          else if (c === LF) throw new HeadError('a bare LF in a trailer');
          else this.#line += String.fromCharCode(c);
          break;
        }
        case S_TrailerLf:
          if (buf[i] !== LF) throw new HeadError('a bare CR in a trailer');
          checkTrailer(this.#line);
          this.#state = S_TrailerStart;
          break;
        case S_EndLf:
          if (buf[i] !== LF) throw new HeadError('a bare CR at the end of a chunked body');
          this.#state = S_Done;
          this.done = true;
          return i + 1 - start;
        case S_Done:
          return i - start;
      }
      i++;
    }
    return i - start;
  }
}

/** chunk-ext = *( ";" ext-name [ "=" ext-val ] ), ext-val = token / quoted-string; no whitespace. */
function validExtensions(ext: string): boolean {
  return /^(?:;[!#$%&'*+\-.^_`|~0-9A-Za-z]+(?:=(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+|"(?:[\t !#-[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"))?)+$/.test(ext);
}

const NOT_IN_TRAILERS = new Set(['content-length', 'transfer-encoding', 'connection', 'keep-alive', 'upgrade', 'host', 'te', 'trailer', 'proxy-connection']);

/** A trailer line: a token, a colon, a value without control characters. */
function checkTrailer(line: string): void {
  let i = 0;
  while (i < line.length && TCHAR[line.charCodeAt(i)]) i++;
  if (i === 0 || line.charCodeAt(i) !== 0x3a) throw new HeadError('malformed trailer');
  // fields of framing, routing and connection management are not allowed in trailers (RFC 9110 6.5.1)
  const name = line.slice(0, i).toLowerCase();
  if (NOT_IN_TRAILERS.has(name)) throw new HeadError(`${name} in a trailer`);
  for (i++; i < line.length; i++) {
    const c = line.charCodeAt(i);
    if ((c < 0x20 && c !== 0x09) || c === 0x7f) throw new HeadError('a control character in a trailer');
  }
}
