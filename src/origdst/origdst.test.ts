// Unit tests of the original-destination reader. The real redirected case (iptables REDIRECT
// in a network namespace, IPv4 and IPv6) is in test/netfilter-intercept.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect, type Socket, type AddressInfo } from 'node:net';
import { decodeSockaddr, originalDestination, originalDestinationAvailable } from './origdst.ts';

function sockaddrIn(ip: string, port: number): Buffer {
  const buf = Buffer.alloc(16);
  buf.writeUInt16LE(2, 0);
  buf.writeUInt16BE(port, 2);
  ip.split('.').forEach((octet, i) => buf.writeUInt8(Number(octet), 4 + i));
  return buf;
}

function sockaddrIn6(groups: number[], port: number): Buffer {
  const buf = Buffer.alloc(28);
  buf.writeUInt16LE(10, 0);
  buf.writeUInt16BE(port, 2);
  groups.forEach((g, i) => buf.writeUInt16BE(g, 8 + 2 * i));
  return buf;
}

void test('decodeSockaddr reads sockaddr_in', () => {
  assert.deepEqual(decodeSockaddr(sockaddrIn('10.96.0.10', 80)), { address: '10.96.0.10', port: 80, family: 4 });
  assert.deepEqual(decodeSockaddr(sockaddrIn('255.1.0.7', 65535)), { address: '255.1.0.7', port: 65535, family: 4 });
});

void test('decodeSockaddr reads sockaddr_in6 and writes addresses as Node does (RFC 5952)', () => {
  const cases: number[][] = [
    [0xfd77, 0, 0, 0, 0, 0, 0, 0xc8],
    [0, 0, 0, 0, 0, 0, 0, 1],
    [0, 0, 0, 0, 0, 0, 0, 0],
    [0x2001, 0xdb8, 0, 0, 1, 0, 0, 1], // two equal zero runs: the first is shortened
    [0x2001, 0xdb8, 0, 1, 1, 1, 1, 1], // a single zero group stays
    [0xfe80, 0, 0, 0, 0xa8c1, 0xabff, 0xfe12, 0x3456],
    [0x2001, 0xdb8, 0, 0, 0, 1, 0, 0],
  ];
  for (const groups of cases) {
    const got = decodeSockaddr(sockaddrIn6(groups, 8080));
    const written = groups.map((g) => g.toString(16)).join(':');
    const expected = new URL(`http://[${written}]/`).hostname.slice(1, -1); // WHATWG URL normalises IPv6
    assert.deepEqual(got, { address: expected, port: 8080, family: 6 }, written);
  }
});

void test('decodeSockaddr rejects what it does not know', () => {
  assert.equal(decodeSockaddr(Buffer.alloc(4)), undefined);
  const unix = Buffer.alloc(16);
  unix.writeUInt16LE(1, 0);
  assert.equal(decodeSockaddr(unix), undefined);
});

void test('getsockopt is bound on Linux', { skip: process.platform !== 'linux' }, () => {
  assert.equal(originalDestinationAvailable(), true);
});

void test('a connection that was not redirected has no original destination', async () => {
  const server = createServer();
  const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const client = connect((server.address() as AddressInfo).port, '127.0.0.1');
  client.on('error', () => {});
  try {
    const socket = await accepted;
    assert.equal(originalDestination(socket), undefined);
    assert.equal(originalDestination(client), undefined);
    socket.destroy();
    // a closed socket has no descriptor: still no throw
    await new Promise((r) => socket.once('close', r));
    assert.equal(originalDestination(socket), undefined);
  } finally {
    client.destroy();
    await new Promise((r) => server.close(r));
  }
});

void test('never throws on a socket that never connected', () => {
  const s = connect({ port: 1, host: '127.0.0.1' });
  s.on('error', () => {});
  assert.equal(originalDestination(s), undefined);
  s.destroy();
});
