// The HTTP/1.1 core's server and client sides together, on loopback sockets: a client ->
// Http1Server -> ForwardOnce -> an Http1Pools connection -> a node:http app. Each write to a
// socket is counted: a request head goes upstream in one write with its body, a response head
// goes to the client in one write with its body (one TLS record on a TLS socket).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createServer as createNetServer, type Socket, type AddressInfo } from 'node:net';
import { createServer } from 'node:http';
import { pino } from 'pino';
import { Http1Server } from './server.ts';
import { Http1Pools } from './client.ts';
import { ForwardOnce, type ForwardResult } from './transport.ts';
import type { Dialer } from '../upstream/dial.ts';

/** Counts write calls on a socket. */
function counted(socket: Socket): { socket: Socket; writes: number } {
  const c = { socket, writes: 0 };
  const write = socket.write.bind(socket) as (...args: unknown[]) => boolean;
  socket.write = ((...args: unknown[]) => {
    c.writes++;
    return write(...args);
  }) as Socket['write'];
  return c;
}

test('one write per head with the body bytes at hand, both ways; the connection to the app is kept and reused', async (t) => {
  const app = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(`got ${body}`) });
      res.end(`got ${body}`);
    });
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  const appPort = (app.address() as AddressInfo).port;
  const upstreams: { socket: Socket; writes: number }[] = [];
  const countingDialer: Dialer = {
    dial: () => {
      const c = counted(connect({ host: '127.0.0.1', port: appPort, noDelay: true }));
      upstreams.push(c);
      return c.socket;
    },
  };
  const pools = new Http1Pools(countingDialer);
  const results: ForwardResult[] = [];
  const clients: { socket: Socket; writes: number }[] = [];
  const server = new Http1Server<undefined>({
    handler: {
      request: (req) => void new ForwardOnce(req, pools, { ip: '127.0.0.1', port: appPort, meshed: false }, (r) => results.push(r)),
      upgrade: (_req, socket) => socket.destroy(),
    },
    limits: { headersTimeoutMs: 5000, idleTimeoutMs: 5000 },
    log: pino({ level: 'silent' }),
    direction: 'outbound',
  });
  const front = createNetServer((s) => {
    clients.push(counted(s));
    server.accept(s, undefined);
  });
  await new Promise<void>((r) => front.listen(0, '127.0.0.1', r));
  t.after(() => {
    server.close();
    pools.close();
    front.close();
    app.closeAllConnections();
    app.close();
  });

  const client = connect((front.address() as AddressInfo).port, '127.0.0.1');
  let data = '';
  client.on('data', (c: Buffer) => (data += c.toString('latin1')));
  for (let i = 1; i <= 3; i++) {
    client.write(`POST /x${i} HTTP/1.1\r\nHost: app\r\nContent-Length: 5\r\n\r\nhello`);
    await waitFor(() => results.length === i);
  }
  await waitFor(() => (data.match(/got hello/g) ?? []).length === 3);
  assert.equal(upstreams.length, 1, 'one connection to the app for three sequential requests');
  assert.equal(upstreams[0]!.writes, 3, 'each request head went upstream in one write with its body');
  assert.equal(clients[0]!.writes, 3, 'each response head went to the client in one write with its body');
  assert.deepEqual(results.map((r) => [r.status, r.bytesIn, r.bytesOut, r.error]), [[200, 5, 9, undefined], [200, 5, 9, undefined], [200, 5, 9, undefined]]);
  assert.match(data, /^HTTP\/1\.1 200 OK\r\ncontent-type: text\/plain\r\ncontent-length: 9\r\n/i);
  client.destroy();
});

async function waitFor(check: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !check(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(check(), 'condition reached');
}

test('a status line without a reason phrase gets the standard one; a close-delimited response reaches the client close-delimited', async (t) => {
  const app = createNetServer((s) => {
    s.on('data', (c: Buffer) => {
      if (c.toString('latin1').startsWith('GET /close ')) s.end('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end');
      else s.write('HTTP/1.1 404\r\ncontent-length: 0\r\n\r\n');
    });
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  const appPort = (app.address() as AddressInfo).port;
  const pools = new Http1Pools({ dial: () => connect({ host: '127.0.0.1', port: appPort }) });
  const server = new Http1Server<undefined>({
    handler: { request: (req) => void new ForwardOnce(req, pools, { ip: '127.0.0.1', port: appPort, meshed: false }, () => undefined), upgrade: (_req, socket) => socket.destroy() },
    limits: { headersTimeoutMs: 5000, idleTimeoutMs: 5000 },
    log: pino({ level: 'silent' }),
    direction: 'outbound',
  });
  const front = createNetServer((s) => void server.accept(s, undefined));
  await new Promise<void>((r) => front.listen(0, '127.0.0.1', r));
  t.after(() => {
    server.close();
    pools.close();
    front.close();
    app.close();
  });
  const ask = (path: string) =>
    new Promise<string>((resolve) => {
      const c = connect((front.address() as AddressInfo).port, '127.0.0.1');
      let data = '';
      c.on('data', (d: Buffer) => {
        data += d.toString('latin1');
        if (path === '/missing' && data.endsWith('\r\n\r\n')) c.destroy();
      });
      c.on('close', () => resolve(data));
      c.write(`GET ${path} HTTP/1.1\r\nHost: app\r\n\r\n`);
    });
  assert.match(await ask('/missing'), /^HTTP\/1\.1 404 Not Found\r\n/);
  const closed = await ask('/close');
  assert.match(closed, /^HTTP\/1\.1 200 OK\r\n/);
  assert.match(closed, /\r\nconnection: close\r\n/);
  assert.ok(closed.endsWith('\r\n\r\nuntil the end'), closed);
});
