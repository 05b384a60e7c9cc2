// Raw HTTP/2 frames (RFC 9113) and HPACK header blocks (RFC 7541, literals without Huffman),
// written by hand so tests and the fuzzer can send what no well-behaved client library would:
// frames out of order, on the wrong stream, truncated, followed by garbage.
import { H2_PREFACE } from '../../src/detect/detect.ts';

export { H2_PREFACE };

export const FRAME = { DATA: 0, HEADERS: 1, PRIORITY: 2, RST_STREAM: 3, SETTINGS: 4, PUSH_PROMISE: 5, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8, CONTINUATION: 9 } as const;
export const FLAG = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4, PADDED: 0x8, PRIORITY: 0x20 } as const;

/** One frame: 9-byte header (length, type, flags, stream id) and the payload. */
export function frame(type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(streamId & 0x7fffffff, 5);
  return Buffer.concat([head, payload]);
}

/** An HPACK integer with an `prefix`-bit prefix; `first` holds the bits above the prefix. */
export function hpackInt(value: number, prefix: number, first = 0): Buffer {
  const max = (1 << prefix) - 1;
  if (value < max) return Buffer.from([first | value]);
  const out = [first | max];
  let v = value - max;
  while (v >= 128) {
    out.push((v % 128) + 128);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return Buffer.from(out);
}

const hpackString = (s: string): Buffer => {
  const b = Buffer.from(s, 'latin1');
  return Buffer.concat([hpackInt(b.length, 7), b]);
};

/** A header block of literal fields without indexing (new names), in the order given. */
export function hpack(fields: readonly (readonly [string, string])[]): Buffer {
  return Buffer.concat(fields.flatMap(([name, value]) => [Buffer.from([0]), hpackString(name), hpackString(value)]));
}

export const settings = (entries: readonly (readonly [id: number, value: number])[] = [], flags = 0): Buffer => {
  const p = Buffer.alloc(entries.length * 6);
  entries.forEach(([id, value], i) => {
    p.writeUInt16BE(id, i * 6);
    p.writeUInt32BE(value >>> 0, i * 6 + 2);
  });
  return frame(FRAME.SETTINGS, flags, 0, p);
};

export const headers = (streamId: number, fields: readonly (readonly [string, string])[], flags: number = FLAG.END_HEADERS): Buffer => frame(FRAME.HEADERS, flags, streamId, hpack(fields));

export const rstStream = (streamId: number, code: number): Buffer => {
  const p = Buffer.alloc(4);
  p.writeUInt32BE(code >>> 0);
  return frame(FRAME.RST_STREAM, 0, streamId, p);
};

export const goaway = (lastStreamId: number, code: number): Buffer => {
  const p = Buffer.alloc(8);
  p.writeUInt32BE(lastStreamId & 0x7fffffff);
  p.writeUInt32BE(code >>> 0, 4);
  return frame(FRAME.GOAWAY, 0, 0, p);
};

export const windowUpdate = (streamId: number, increment: number): Buffer => {
  const p = Buffer.alloc(4);
  p.writeUInt32BE(increment >>> 0);
  return frame(FRAME.WINDOW_UPDATE, 0, streamId, p);
};

/** A GET request's header fields for `authority` and `path`. */
export const getRequest = (authority: string, path = '/'): [string, string][] => [
  [':method', 'GET'],
  [':scheme', 'http'],
  [':path', path],
  [':authority', authority],
];

/**
 * The input of issue 14 (item 1) that killed a sidecar: the preface, SETTINGS, HEADERS opening
 * stream 1, a GOAWAY, then zero bytes (read as DATA frames on stream 0, a connection error),
 * all in one write.
 */
export function prefaceHeadersGoawayZeros(authority: string): Buffer {
  return Buffer.concat([H2_PREFACE, settings(), headers(1, getRequest(authority), FLAG.END_HEADERS | FLAG.END_STREAM), goaway(0, 2), Buffer.alloc(150)]);
}
