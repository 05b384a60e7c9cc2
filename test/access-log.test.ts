// Access lines through a real sidecar pair carry the request's strings as the client sent them,
// JSON-escaped: quotes and backslashes (HTTP/1.1 takes them in a request-target), non-ASCII
// bytes (HTTP/2 takes them in :path, decoded as latin1). Control characters cannot reach a path
// (both parsers refuse them): src/log/access.test.ts covers them. The lines are written by
// src/log/access.ts's own serializer; the harness parses every line with JSON.parse.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { connect as connectTcp } from 'node:net';
import { connect, createServer, type Http2Server } from 'node:http2';
import { createServer as createHttp1Server, type Server } from 'node:http';
import { eventually, loopbackIP, tempDir, testSidecar, writeRegistry, type PodDef, type TestSidecar } from './harness/mesh.ts';

let dir: { path: string; remove(): Promise<void> };
let h1: Server;
let h2: Http2Server;
let server: TestSidecar;
let client: TestSidecar;

before(async () => {
  dir = await tempDir();
  const a: PodDef = { name: 'pod-a', ip: loopbackIP(), labels: { app: 'web' }, meshed: true };
  const b: PodDef = { name: 'pod-b', ip: loopbackIP(), labels: { app: 'client' }, meshed: true };
  h1 = createHttp1Server((req, res) => res.end(req.url));
  h2 = createServer();
  h2.on('stream', (stream, headers) => {
    stream.on('error', () => undefined);
    stream.respond({ ':status': 200 });
    stream.end(Buffer.from(String(headers[':path']), 'latin1'));
  });
  await new Promise<void>((r) => h1.listen(8080, a.ip, r));
  await new Promise<void>((r) => h2.listen(8081, a.ip, r));
  const registryFile = join(dir.path, 'registry.yaml');
  await writeRegistry(registryFile, {
    services: [
      { name: 'web', ports: [{ port: 80, targetPort: 8080 }], selector: { app: 'web' } },
      { name: 'web2', ports: [{ port: 80, targetPort: 8081 }], selector: { app: 'web' } },
    ],
    pods: [a, b],
  });
  server = await testSidecar({ pod: a, registryFile, dir: dir.path });
  client = await testSidecar({ pod: b, registryFile, dir: dir.path });
});
after(async () => {
  await Promise.all([client?.close(), server?.close()]);
  h1?.close();
  h2?.close();
  await dir?.remove();
});

const accessLine = (s: TestSidecar, direction: string, path: string) => s.logs.find((l) => l.type === 'access' && l.kind === 'http' && l.direction === direction && l.path === path);

test('HTTP/1.1: quotes and backslashes in the path are in both access lines as sent', async () => {
  const path = '/q?a="x"&b=\\"y\\"&c=\\\\';
  const { hostname: host, port } = new URL(client.outboundURL);
  const reply = await new Promise<string>((resolve, reject) => {
    const s = connectTcp(Number(port), host);
    let data = '';
    s.on('data', (c: Buffer) => (data += c.toString('latin1')));
    s.on('end', () => resolve(data));
    s.on('error', reject);
    s.write(`GET ${path} HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n`);
  });
  assert.match(reply, /^HTTP\/1\.1 200 /);
  assert.ok(reply.endsWith(path), 'the app saw the path unchanged');
  await eventually(() => !!accessLine(client, 'outbound', path) && !!accessLine(server, 'inbound', path), 5000, 'both access lines');
  const out = accessLine(client, 'outbound', path)!;
  assert.equal(out.authority, 'web');
  assert.equal(out.msg, `outbound GET web${path} 200`);
  assert.equal(accessLine(server, 'inbound', path)!.status, 200);
});

test('HTTP/2: non-ASCII bytes, quotes and backslashes in :path are in both access lines as decoded', async (t) => {
  const path = '/caf\u00e9/\u00ff\u0080/"q"\\end';
  const session = connect(`http://${new URL(client.outboundURL).host}`);
  session.on('error', () => undefined);
  t.after(() => session.close());
  const req = session.request({ ':path': path, ':authority': 'web2' });
  req.end();
  let body = '';
  req.setEncoding('latin1');
  req.on('data', (c: string) => (body += c));
  await new Promise((r) => req.once('end', r));
  assert.equal(body, path, 'the app saw the same path');
  await eventually(() => !!accessLine(client, 'outbound', path) && !!accessLine(server, 'inbound', path), 5000, 'both access lines');
  assert.equal(accessLine(client, 'outbound', path)!.protocol, 'HTTP/2');
  assert.equal(accessLine(server, 'inbound', path)!.msg, `inbound GET web2${path} 200`);
});
