// A real OTLP/HTTP trace receiver for tests: an HTTP server on a loopback port that accepts
// POST /v1/traces in both encodings the OTLP/HTTP spec allows, application/x-protobuf (decoded
// with protobufjs and the message definitions below, written from the OTLP wire format) and
// application/json, and keeps the spans it got. It can also misbehave as collectors do: refuse
// with a status, or take requests and never answer.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import protobuf from 'protobufjs';
import type { FinishedSpan } from '../../src/tracing/recorder.ts';

// The subset of opentelemetry/proto/collector/trace/v1 (ExportTraceServiceRequest) that spans
// need; fields not listed here (events, links) are skipped by the decoder.
const OTLP_TRACE_PROTO = `
syntax = "proto3";
package otlp;
message ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }
message ExportTraceServiceResponse { ExportTracePartialSuccess partial_success = 1; }
message ExportTracePartialSuccess { int64 rejected_spans = 1; string error_message = 2; }
message ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2; string schema_url = 3; }
message Resource { repeated KeyValue attributes = 1; uint32 dropped_attributes_count = 2; }
message ScopeSpans { InstrumentationScope scope = 1; repeated Span spans = 2; string schema_url = 3; }
message InstrumentationScope { string name = 1; string version = 2; repeated KeyValue attributes = 3; }
message Span {
  bytes trace_id = 1; bytes span_id = 2; string trace_state = 3; bytes parent_span_id = 4;
  string name = 5; int32 kind = 6; fixed64 start_time_unix_nano = 7; fixed64 end_time_unix_nano = 8;
  repeated KeyValue attributes = 9; uint32 dropped_attributes_count = 10;
  Status status = 15; fixed32 flags = 16;
}
message Status { string message = 2; int32 code = 3; }
message KeyValue { string key = 1; AnyValue value = 2; }
message AnyValue {
  oneof value { string string_value = 1; bool bool_value = 2; int64 int_value = 3; double double_value = 4;
                ArrayValue array_value = 5; KeyValueList kvlist_value = 6; bytes bytes_value = 7; }
}
message ArrayValue { repeated AnyValue values = 1; }
message KeyValueList { repeated KeyValue values = 1; }
`;

const root = protobuf.parse(OTLP_TRACE_PROTO, { keepCase: false }).root;
const RequestType = root.lookupType('otlp.ExportTraceServiceRequest');
const ResponseType = root.lookupType('otlp.ExportTraceServiceResponse');

/** OTLP span kinds (SPAN_KIND_*). */
export const OTLP_KIND = { UNSPECIFIED: 0, INTERNAL: 1, SERVER: 2, CLIENT: 3, PRODUCER: 4, CONSUMER: 5 } as const;
/** OTLP status codes (STATUS_CODE_*). */
export const OTLP_STATUS = { UNSET: 0, OK: 1, ERROR: 2 } as const;

export type AttrValue = string | number | boolean | AttrValue[] | { [key: string]: AttrValue } | null;

export interface ReceivedSpan {
  readonly traceId: string;
  readonly spanId: string;
  /** undefined for a root span. */
  readonly parentSpanId: string | undefined;
  readonly traceState: string;
  readonly name: string;
  /** OTLP_KIND */
  readonly kind: number;
  readonly startTimeUnixNano: bigint;
  readonly endTimeUnixNano: bigint;
  readonly attributes: Readonly<Record<string, AttrValue>>;
  readonly status: { readonly code: number; readonly message: string };
  /** The resource's attributes (service.name, k8s.*). */
  readonly resource: Readonly<Record<string, AttrValue>>;
  readonly scope: string;
  /** Which encoding it came in. */
  readonly encoding: 'protobuf' | 'json';
}

export interface ReceivedRequest {
  readonly method: string;
  readonly path: string;
  readonly contentType: string;
  readonly bytes: number;
}

/** ok: 200 with an empty ExportTraceServiceResponse; hang: read the request, never answer; a number: answer with that status. */
export type ReceiverMode = 'ok' | 'hang' | number;

export interface OtlpReceiver {
  /** http://host:port (OTEL_EXPORTER_OTLP_ENDPOINT). */
  readonly endpoint: string;
  /** http://host:port/v1/traces (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT). */
  readonly tracesUrl: string;
  readonly server: Server;
  readonly spans: ReceivedSpan[];
  readonly requests: ReceivedRequest[];
  mode: ReceiverMode;
  /** Resolves once `count` spans (matching `where`) arrived; rejects after `timeoutMs` saying what did arrive. */
  waitForSpans(count: number, options?: { where?: (s: ReceivedSpan) => boolean; timeoutMs?: number }): Promise<ReceivedSpan[]>;
  close(): Promise<void>;
}

export async function startOtlpReceiver(options: { host?: string; port?: number; mode?: ReceiverMode } = {}): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const requests: ReceivedRequest[] = [];
  const waiters = new Set<() => void>();
  const hung: ServerResponse[] = [];

  const server = createServer((req, res) => {
    void handle(req, res);
  });
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const body = await readBody(req);
    const contentType = (req.headers['content-type'] ?? '').split(';')[0]!.trim();
    const path = (req.url ?? '/').split('?')[0]!;
    requests.push({ method: req.method ?? '', path, contentType, bytes: body.length });
    if (receiver.mode === 'hang') {
      hung.push(res);
      return;
    }
    if (typeof receiver.mode === 'number') {
      res.writeHead(receiver.mode, { 'content-type': 'text/plain' }).end(`refused with ${receiver.mode}\n`);
      return;
    }
    if (req.method !== 'POST' || path !== '/v1/traces') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end(`no ${req.method} ${path} here: OTLP traces go to POST /v1/traces\n`);
      return;
    }
    let got: ReceivedSpan[];
    try {
      if (contentType === 'application/x-protobuf') got = decodeProtobuf(body);
      else if (contentType === 'application/json') got = decodeJson(JSON.parse(body.toString('utf8')));
      else {
        res.writeHead(415, { 'content-type': 'text/plain' }).end(`content-type ${contentType} is not application/x-protobuf or application/json\n`);
        return;
      }
    } catch (err) {
      res.writeHead(400, { 'content-type': 'text/plain' }).end(`cannot decode the request: ${(err as Error).message}\n`);
      return;
    }
    spans.push(...got);
    for (const w of [...waiters]) w();
    if (contentType === 'application/json') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    } else {
      const out = ResponseType.encode(ResponseType.create({})).finish();
      res.writeHead(200, { 'content-type': 'application/x-protobuf', 'content-length': out.length }).end(Buffer.from(out));
    }
  };

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve());
  });
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  const endpoint = `http://${host}:${addr.port}`;

  const receiver: OtlpReceiver = {
    endpoint,
    tracesUrl: `${endpoint}/v1/traces`,
    server,
    spans,
    requests,
    mode: options.mode ?? 'ok',
    waitForSpans(count, { where = () => true, timeoutMs = 10_000 } = {}) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const matching = spans.filter(where);
          if (matching.length < count) return false;
          waiters.delete(check);
          clearTimeout(timer);
          resolve(matching);
          return true;
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`OTLP receiver: waited ${timeoutMs} ms for ${count} matching spans, got ${spans.filter(where).length} (all: ${spans.map((s) => `${s.name}/${s.kind}`).join(', ') || 'none'}; ${requests.length} requests)`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const res of hung) res.destroy();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  return receiver;
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

// ---- decoding ----
// protobufjs's toObject gives the same shape as OTLP/JSON, except that ids are bytes (hex
// strings in JSON) and 64-bit integers are strings (numbers or strings in JSON); one walk
// serves both.

type Id = string | Uint8Array | undefined;
interface AnyValue {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: string | number;
  doubleValue?: number;
  arrayValue?: { values?: AnyValue[] };
  kvlistValue?: { values?: KeyValue[] };
  bytesValue?: string | Uint8Array;
}
interface KeyValue {
  key: string;
  value?: AnyValue;
}
interface OtlpRequest {
  resourceSpans?: {
    resource?: { attributes?: KeyValue[] };
    scopeSpans?: {
      scope?: { name?: string };
      spans?: {
        traceId: Id;
        spanId: Id;
        traceState?: string;
        parentSpanId?: Id;
        name: string;
        kind?: number;
        startTimeUnixNano: string | number;
        endTimeUnixNano: string | number;
        attributes?: KeyValue[];
        status?: { code?: number; message?: string };
      }[];
    }[];
  }[];
}

function anyValue(v: AnyValue | undefined): AttrValue {
  if (!v) return null;
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.boolValue !== undefined) return v.boolValue;
  if (v.intValue !== undefined) return Number(v.intValue);
  if (v.doubleValue !== undefined) return v.doubleValue;
  if (v.arrayValue) return (v.arrayValue.values ?? []).map(anyValue);
  if (v.kvlistValue) return attributes(v.kvlistValue.values);
  if (v.bytesValue !== undefined) return typeof v.bytesValue === 'string' ? v.bytesValue : Buffer.from(v.bytesValue).toString('base64');
  return null;
}

function attributes(kvs: KeyValue[] | undefined): Record<string, AttrValue> {
  const out: Record<string, AttrValue> = {};
  for (const kv of kvs ?? []) out[kv.key] = anyValue(kv.value);
  return out;
}

function spansOf(body: OtlpRequest, encoding: 'protobuf' | 'json'): ReceivedSpan[] {
  const hex = (id: Id, what: string, bytes: number): string => {
    const h = id === undefined ? '' : typeof id === 'string' ? id : Buffer.from(id).toString('hex');
    if (h !== '' && !new RegExp(`^[0-9a-f]{${bytes * 2}}$`).test(h)) throw new Error(`${what} "${h}" is not ${bytes} bytes of lower-case hex`);
    return h;
  };
  const out: ReceivedSpan[] = [];
  for (const rs of body.resourceSpans ?? []) {
    const resource = attributes(rs.resource?.attributes);
    for (const ss of rs.scopeSpans ?? []) {
      for (const s of ss.spans ?? []) {
        const parent = hex(s.parentSpanId, 'parentSpanId', 8);
        out.push({
          traceId: hex(s.traceId, 'traceId', 16),
          spanId: hex(s.spanId, 'spanId', 8),
          parentSpanId: parent ? parent : undefined,
          traceState: s.traceState ?? '',
          name: s.name,
          kind: s.kind ?? 0,
          startTimeUnixNano: BigInt(s.startTimeUnixNano ?? 0),
          endTimeUnixNano: BigInt(s.endTimeUnixNano ?? 0),
          attributes: attributes(s.attributes),
          status: { code: s.status?.code ?? 0, message: s.status?.message ?? '' },
          resource,
          scope: ss.scope?.name ?? '',
          encoding,
        });
      }
    }
  }
  return out;
}

/** An ExportTraceServiceRequest in protobuf. */
export function decodeProtobuf(body: Uint8Array): ReceivedSpan[] {
  return spansOf(RequestType.toObject(RequestType.decode(body), { longs: String, defaults: false, oneofs: false }) as OtlpRequest, 'protobuf');
}

/** An ExportTraceServiceRequest in OTLP/JSON (ids as hex strings). */
export function decodeJson(body: unknown): ReceivedSpan[] {
  return spansOf(body as OtlpRequest, 'json');
}

const KIND_NAMES = ['internal', 'internal', 'server', 'client', 'producer', 'consumer'] as const;

/** Received spans as the waterfall's FinishedSpan (e2e tests can draw what the collector got). */
export function asFinishedSpans(spans: readonly ReceivedSpan[]): FinishedSpan[] {
  return spans.map((s) => ({
    traceId: s.traceId,
    spanId: s.spanId,
    parentSpanId: s.parentSpanId,
    name: s.name,
    kind: KIND_NAMES[s.kind] ?? 'internal',
    service: String(s.resource['service.name'] ?? 'unknown'),
    startUs: Number(s.startTimeUnixNano / 1000n),
    durationUs: Number((s.endTimeUnixNano - s.startTimeUnixNano) / 1000n),
    status: s.status.code === OTLP_STATUS.ERROR ? 'error' : s.status.code === OTLP_STATUS.OK ? 'ok' : 'unset',
    statusMessage: s.status.message || undefined,
    attributes: Object.fromEntries(Object.entries(s.attributes).filter((e): e is [string, string | number | boolean] => ['string', 'number', 'boolean'].includes(typeof e[1]))),
  }));
}
