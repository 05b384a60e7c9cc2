// The span exporter built from OTLP's parts (./otlp.ts) against the packages' own
// OTLPTraceExporter: for the same spans a collector receives the same request (path, content
// type, user agent, body bytes), over http/protobuf and http/json.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { BasicTracerProvider, type ReadableSpan, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import { OTLPTraceExporter as ProtoExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { OTLPTraceExporter as JsonExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { otlpTraceExporter } from './otlp.ts';

interface Received {
  readonly path: string | undefined;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: Buffer;
}

function spans(): ReadableSpan[] {
  const tracer = new BasicTracerProvider().getTracer('tsmesh-test');
  const out: ReadableSpan[] = [];
  for (const name of ['GET /a', 'POST /b']) {
    const span = tracer.startSpan(name, { attributes: { 'http.request.method': name.split(' ')[0]!, 'server.port': 8080 } });
    span.addEvent('retry', { attempt: 2 });
    span.end();
    out.push(span as unknown as ReadableSpan);
  }
  return out;
}

async function send(exporter: SpanExporter, batch: ReadableSpan[], received: Received[]): Promise<Received> {
  const before = received.length;
  await new Promise<void>((resolve, reject) => exporter.export(batch, (r) => (r.code === 0 ? resolve() : reject(r.error ?? new Error('export failed')))));
  await exporter.shutdown();
  assert.equal(received.length, before + 1);
  return received[before]!;
}

for (const protocol of ['http/protobuf', 'http/json'] as const) {
  test(`${protocol}: the collector receives from ours what it receives from OTLPTraceExporter`, async () => {
    const received: Received[] = [];
    const server = createServer((req: IncomingMessage, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const { 'content-type': type, 'content-encoding': encoding, 'user-agent': agent } = req.headers;
        received.push({ path: req.url, headers: { type, encoding, agent }, body: Buffer.concat(chunks) });
        res.writeHead(200, { 'content-type': protocol === 'http/json' ? 'application/json' : 'application/x-protobuf' }).end(protocol === 'http/json' ? '{}' : '');
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/traces`;
      const batch = spans();
      const theirs = await send(protocol === 'http/json' ? new JsonExporter({ url }) : new ProtoExporter({ url }), batch, received);
      const ours = await send(otlpTraceExporter(protocol, { url }), batch, received);
      assert.ok(theirs.body.length > 100, 'the spans were sent');
      assert.deepEqual(ours, theirs);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
}

test("a sidecar's first export loads neither @opentelemetry/sdk-metrics nor api-logs (createOtlpExporter, in a fresh process)", async () => {
  const { spawn } = await import('node:child_process');
  const exportTs = new URL('./export.ts', import.meta.url).pathname;
  const code = `
    import { createServer } from 'node:http';
    import { createRequire } from 'node:module';
    import { BasicTracerProvider } from '@opentelemetry/sdk-trace-base';
    const { createOtlpExporter } = await import(${JSON.stringify(exportTs)});
    const server = createServer((req, res) => { req.resume(); req.on('end', () => res.writeHead(200).end()); });
    await new Promise((r) => server.listen(0, '127.0.0.1', r));
    const span = new BasicTracerProvider().getTracer('t').startSpan('x'); span.end();
    const exporter = createOtlpExporter({ url: 'http://127.0.0.1:' + server.address().port + '/v1/traces', protocol: 'http/protobuf' });
    const result = await new Promise((r) => exporter.export([span], r));
    await exporter.shutdown(); server.close();
    const loaded = Object.keys(createRequire(import.meta.url).cache);
    process.stdout.write(JSON.stringify({ code: result.code, otlp: loaded.filter((k) => k.includes('otlp-transformer')).length, unwanted: loaded.filter((k) => /sdk-metrics|api-logs|sdk-logs/.test(k)) }));`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'inherit'], cwd: new URL('../..', import.meta.url).pathname });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  await new Promise<void>((resolve) => child.on('exit', () => resolve()));
  const seen = JSON.parse(out) as { code: number; otlp: number; unwanted: string[] };
  assert.equal(seen.code, 0, 'the span was exported');
  assert.ok(seen.otlp > 0, 'the serializer was loaded');
  assert.deepEqual(seen.unwanted, []);
});
