// The mesh transport between sidecars. An outbound sidecar connects to a meshed pod's inbound
// port (15006) directly, as Linkerd does with its inbound port, and opens the connection with
// one line naming the app port it wants and what the connection carries:
// `TSMESH/1 <port>\r\n` (HTTP/1.1), `TSMESH/1 <port> tcp\r\n` (opaque TCP) or
// `TSMESH/1 <port> h2\r\n` (HTTP/2). The same path then serves every protocol, with or
// without iptables, and (with mTLS) the line travels encrypted. With mTLS the TLS ALPN says the
// same thing ("h2" for HTTP/2, "tsmesh/1" for the rest); the preamble is what the inbound side
// reads, so a plaintext mesh hop (local mode without certificates) works the same way.
// Redirected connections from unmeshed callers carry no preamble: their original
// destination port (SO_ORIGINAL_DST) names the app port instead.
import type { Socket } from 'node:net';

const MAGIC = 'TSMESH/1 ';
const MAX_LINE = 32;

/** What a mesh connection carries after its preamble. */
export type MeshProtocol = 'http1' | 'tcp' | 'h2';

export function preamble(port: number, protocol: MeshProtocol = 'http1'): Buffer {
  return Buffer.from(`${MAGIC}${port}${protocol === 'http1' ? '' : ` ${protocol}`}\r\n`, 'latin1');
}

export type PreambleResult = { port: number; protocol: MeshProtocol } | { absent: true } | { error: string };

/**
 * Reads the preamble from a new connection. Bytes after it (or all bytes, when there is no
 * preamble) are put back on the socket, which is left paused for the next stage.
 */
export function readPreamble(socket: Socket, timeoutMs: number): Promise<PreambleResult> {
  return new Promise((resolve) => {
    let buffered: Buffer = Buffer.alloc(0);
    const finish = (result: PreambleResult, rest: Buffer) => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('error', onEnd);
      socket.pause();
      if (rest.length) socket.unshift(rest);
      resolve(result);
    };
    const onData = (chunk: Buffer) => {
      buffered = buffered.length ? Buffer.concat([buffered, chunk]) : chunk;
      const prefixLen = Math.min(buffered.length, MAGIC.length);
      if (buffered.toString('latin1', 0, prefixLen) !== MAGIC.slice(0, prefixLen)) return finish({ absent: true }, buffered);
      const nl = buffered.indexOf(0x0a);
      if (nl === -1) {
        if (buffered.length > MAX_LINE) finish({ error: 'preamble line too long' }, Buffer.alloc(0));
        return;
      }
      const text = buffered.toString('latin1', MAGIC.length, nl).trim();
      const m = /^(\d{1,5})(?: (tcp|h2))?$/.exec(text);
      const port = m ? Number(m[1]) : NaN;
      if (!(port >= 1 && port <= 65535)) return finish({ error: `bad preamble: "${text}"` }, Buffer.alloc(0));
      finish({ port, protocol: (m![2] as MeshProtocol | undefined) ?? 'http1' }, buffered.subarray(nl + 1));
    };
    const onEnd = () => finish({ error: 'connection closed before the preamble' }, Buffer.alloc(0));
    const timer = setTimeout(() => finish({ absent: true }, buffered), timeoutMs);
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('error', onEnd);
    socket.resume();
  });
}
