// The mesh transport between sidecars. An outbound sidecar connects to a meshed pod's inbound
// port (15006) directly, as Linkerd does with its inbound port, and opens the connection with
// one line naming the app port it wants and, for opaque TCP, saying so:
// `TSMESH/1 <port>\r\n` or `TSMESH/1 <port> tcp\r\n`. The same path then serves HTTP and
// opaque TCP, with or without iptables, and (with mTLS) the line travels encrypted.
// Redirected connections from unmeshed callers carry no preamble: their original
// destination port (SO_ORIGINAL_DST) names the app port instead.
import type { Socket } from 'node:net';

const MAGIC = 'TSMESH/1 ';
const MAX_LINE = 32;

export function preamble(port: number, opaque = false): Buffer {
  return Buffer.from(`${MAGIC}${port}${opaque ? ' tcp' : ''}\r\n`, 'latin1');
}

export type PreambleResult = { port: number; opaque: boolean } | { absent: true } | { error: string };

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
      const m = /^(\d{1,5})( tcp)?$/.exec(text);
      const port = m ? Number(m[1]) : NaN;
      if (!(port >= 1 && port <= 65535)) return finish({ error: `bad preamble: "${text}"` }, Buffer.alloc(0));
      finish({ port, opaque: m![2] !== undefined }, buffered.subarray(nl + 1));
    };
    const onEnd = () => finish({ error: 'connection closed before the preamble' }, Buffer.alloc(0));
    const timer = setTimeout(() => finish({ absent: true }, buffered), timeoutMs);
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('error', onEnd);
    socket.resume();
  });
}
