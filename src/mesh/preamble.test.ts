import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect, type Socket, type AddressInfo } from 'node:net';
import { readPreamble, preamble } from './preamble.ts';

async function accept(send: (s: Socket) => void, timeoutMs = 200) {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const accepted = new Promise<Socket>((r) => server.once('connection', r));
  const client = connect((server.address() as AddressInfo).port, '127.0.0.1');
  send(client);
  const socket = await accepted;
  const result = await readPreamble(socket, timeoutMs);
  const rest = await new Promise<string>((resolve) => {
    let data = '';
    socket.on('data', (c) => (data += c.toString('latin1')));
    setTimeout(() => resolve(data), 50);
    socket.resume();
  });
  client.destroy();
  server.close();
  return { result, rest };
}

test('reads the port and leaves the following bytes for the next stage', async () => {
  const { result, rest } = await accept((c) => c.write(Buffer.concat([preamble(8080), Buffer.from('GET / HTTP/1.1\r\n')])));
  assert.deepEqual(result, { port: 8080, protocol: 'http1' });
  assert.equal(rest, 'GET / HTTP/1.1\r\n');
});

test('a preamble split over several packets', async () => {
  const { result, rest } = await accept((c) => {
    c.write('TSM');
    setTimeout(() => c.write('ESH/1 90'), 10);
    setTimeout(() => c.write('00\r\nhello'), 20);
  });
  assert.deepEqual(result, { port: 9000, protocol: 'http1' });
  assert.equal(rest, 'hello');
});

test('opaque TCP is marked so the inbound side does not parse it', async () => {
  const { result, rest } = await accept((c) => c.write(Buffer.concat([preamble(3306, 'tcp'), Buffer.from([0, 1, 2])])));
  assert.deepEqual(result, { port: 3306, protocol: 'tcp' });
  assert.equal(rest, '\u0000\u0001\u0002');
});

test('HTTP/2 is marked so the inbound side hands it to its HTTP/2 server', async () => {
  const { result, rest } = await accept((c) => c.write(Buffer.concat([preamble(50051, 'h2'), Buffer.from('PRI * HTTP/2.0\r\n')])));
  assert.deepEqual(result, { port: 50051, protocol: 'h2' });
  assert.equal(rest, 'PRI * HTTP/2.0\r\n');
  assert.deepEqual((await accept((c) => c.write('TSMESH/1 80 h3\r\n'))).result, { error: 'bad preamble: "80 h3"' });
});

test('no preamble: every byte is put back', async () => {
  const { result, rest } = await accept((c) => c.write('GET / HTTP/1.1\r\n'));
  assert.deepEqual(result, { absent: true });
  assert.equal(rest, 'GET / HTTP/1.1\r\n');
});

test('bad ports and over-long lines are errors', async () => {
  assert.deepEqual((await accept((c) => c.write('TSMESH/1 70000\r\n'))).result, { error: 'bad preamble: "70000"' });
  assert.deepEqual((await accept((c) => c.write(`TSMESH/1 ${'9'.repeat(40)}`))).result, { error: 'preamble line too long' });
});

test('a silent client: absent after the timeout', async () => {
  const { result } = await accept(() => undefined, 50);
  assert.deepEqual(result, { absent: true });
});
