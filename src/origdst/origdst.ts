// The original destination of a connection that iptables REDIRECTed to the sidecar: the
// address and port the app connected to before the nat table rewrote it. Linux keeps it in
// the connection's conntrack entry and hands it out through getsockopt(SO_ORIGINAL_DST)
// (IPv4) or getsockopt(IP6T_SO_ORIGINAL_DST) (IPv6). Node has no binding for that, so this
// is a native call, made with koffi (prebuilt FFI, no compiler); the other is malloc_trim
// (src/lifecycle/trim.ts).
import type { Socket } from 'node:net';
import { createRequire } from 'node:module';
import { endianness } from 'node:os';

export interface OriginalDestination {
  readonly address: string;
  readonly port: number;
  readonly family: 4 | 6;
}

const SOL_IP = 0;
const SOL_IPV6 = 41;
const SO_ORIGINAL_DST = 80; // <linux/netfilter_ipv4.h>
const IP6T_SO_ORIGINAL_DST = 80; // <linux/netfilter_ipv6/ip6_tables.h>
const AF_INET = 2;
const AF_INET6 = 10;
const SOCKADDR_IN6_SIZE = 28;

type GetSockOpt = (fd: number, level: number, name: number, value: Buffer, length: Uint32Array) => number;
interface Koffi {
  load(path: string | null): { func(signature: string): unknown };
}

let getsockopt: GetSockOpt | null | undefined;

/** Binds libc's getsockopt once; null where that is impossible (not Linux, no koffi). */
function libcGetsockopt(): GetSockOpt | null {
  if (getsockopt !== undefined) return getsockopt;
  getsockopt = null;
  if (process.platform !== 'linux') return null;
  try {
    const require = createRequire(import.meta.url);
    const koffi = require('koffi') as Koffi;
    const libc = koffi.load(null); // the process's own symbols: libc's, glibc or musl
    getsockopt = libc.func('int getsockopt(int fd, int level, int optname, void *optval, uint32_t *optlen)') as GetSockOpt;
  } catch {
    getsockopt = null;
  }
  return getsockopt;
}

/** Whether original destinations can be read here at all (Linux, koffi loaded): log it at start. */
export function originalDestinationAvailable(): boolean {
  return libcGetsockopt() !== null;
}

/** The file descriptor under a connected net.Socket, or undefined (closed, not a TCP socket). */
function socketFd(socket: Socket): number | undefined {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

function ipv4(buf: Buffer, offset: number): string {
  return `${buf[offset]}.${buf[offset + 1]}.${buf[offset + 2]}.${buf[offset + 3]}`;
}

function ipv6(buf: Buffer, offset: number): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(buf.readUInt16BE(offset + i).toString(16));
  // the shortest form, as Node prints addresses (net.SocketAddress normalises it)
  return compressIpv6(groups);
}

function compressIpv6(groups: string[]): string {
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen && j - i > 1) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (bestStart < 0) return groups.join(':');
  return `${groups.slice(0, bestStart).join(':')}::${groups.slice(bestStart + bestLen).join(':')}`;
}

/** Decodes a sockaddr_in or sockaddr_in6 as the kernel filled it in. */
export function decodeSockaddr(buf: Buffer): OriginalDestination | undefined {
  if (buf.length < 8) return undefined;
  const family = endianness() === 'LE' ? buf.readUInt16LE(0) : buf.readUInt16BE(0); // sa_family_t is in host order
  const port = buf.readUInt16BE(2);
  if (family === AF_INET) return { address: ipv4(buf, 4), port, family: 4 };
  if (family === AF_INET6 && buf.length >= 24) {
    return { address: ipv6(buf, 8), port, family: 6 };
  }
  return undefined;
}

/** True for an IPv4 address, or an IPv4-mapped IPv6 address (::ffff:a.b.c.d) of a dual-stack socket. */
function isIpv4Connection(localAddress: string | undefined, localFamily: string | undefined): boolean {
  if (localFamily === 'IPv4') return true;
  return localAddress !== undefined && /^::ffff:\d+\.\d+\.\d+\.\d+$/i.test(localAddress);
}

/**
 * Where the peer of `socket` meant to connect before a REDIRECT rule sent it here, or
 * undefined when the connection was not redirected (the original destination is the
 * socket's own address), when the kernel has no conntrack entry for it (ENOENT), or when it
 * cannot be read at all (closed socket, not Linux). Never throws.
 */
export function originalDestination(socket: Socket): OriginalDestination | undefined {
  const call = libcGetsockopt();
  const fd = socketFd(socket);
  if (!call || fd === undefined) return undefined;
  const v4 = isIpv4Connection(socket.localAddress, socket.localFamily);
  const buf = Buffer.alloc(SOCKADDR_IN6_SIZE);
  const len = new Uint32Array([v4 ? 16 : SOCKADDR_IN6_SIZE]);
  let rc: number;
  try {
    rc = v4 ? call(fd, SOL_IP, SO_ORIGINAL_DST, buf, len) : call(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, buf, len);
  } catch {
    return undefined;
  }
  if (rc !== 0) return undefined;
  const dst = decodeSockaddr(buf.subarray(0, len[0]));
  if (!dst) return undefined;
  if (dst.port === socket.localPort && sameAddress(dst.address, socket.localAddress)) return undefined;
  return dst;
}

function sameAddress(a: string, b: string | undefined): boolean {
  if (b === undefined) return false;
  const strip = (x: string) => x.toLowerCase().replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/, '');
  return strip(a) === strip(b);
}
