// RequestMirror: a copy of the request to one endpoint of each mirror Service, fire and forget.
// The copy gets the request's head (after the rule's request filters) and its body as the
// client sends it; its response is read and dropped; its failures are logged at
// debug, never seen by the client. A mirror that cannot keep up (more than MIRROR_BUFFER bytes
// waiting) is cut, so a slow mirror never holds the real request's memory or pace.
import type { ClientHttp2Stream, OutgoingHttpHeaders } from 'node:http2';
import type { Readable } from 'node:stream';
import type { BodySink, ServerRequest } from '../http1/server.ts';
import { requestHead } from '../http1/transport.ts';
import type { Dialer } from '../upstream/dial.ts';
import type { H2Pools } from '../upstream/h2-pool.ts';
import { endpointDestination } from '../upstream/dial.ts';
import type { Endpoint } from '../registry/model.ts';
import type { Logger } from '../log/log.ts';

export const MIRROR_BUFFER = 256 * 1024;
/** A mirror connection silent this long is closed. */
const MIRROR_IDLE_MS = 30_000;

export interface MirrorTarget {
  /** "name.namespace" of the mirror Service, for logs. */
  readonly service: string;
  readonly endpoint: Endpoint;
}

/**
 * Mirrors an HTTP/1.1 request (the raw-socket core): a connection of its own to each mirror
 * endpoint (through the dialer: mTLS and the preamble to a meshed pod), the request's head with
 * `connection: close`, then its body bytes as they are read for the real request (framing
 * included, as the head says), teed from whichever sink the request's body flows into.
 */
export function mirrorHttp1(targets: readonly MirrorTarget[], req: ServerRequest, dialer: Dialer, log: Logger): void {
  const head = requestHead(req).replace(/\r\n\r\n$/, '\r\nconnection: close\r\nx-tsmesh-attempt: 1\r\n\r\n');
  const copies = targets.map((t) => {
    const socket = dialer.dial(endpointDestination(t.endpoint));
    socket.on('error', (err) => log.debug({ mirror: t.service, upstream: t.endpoint.key, err: err.message }, 'mirrored request failed'));
    socket.setTimeout(MIRROR_IDLE_MS, () => socket.destroy());
    socket.write(head);
    socket.resume(); // the response is dropped; the upstream closes after it (connection: close)
    return socket;
  });
  if (req.bodyDone) {
    for (const c of copies) c.end();
    return;
  }
  const copy = (chunk: Buffer) => {
    for (const c of copies) {
      if (c.destroyed) continue;
      if (c.writableLength > MIRROR_BUFFER) c.destroy();
      else c.write(chunk);
    }
  };
  const end = () => {
    for (const c of copies) if (!c.destroyed) c.end();
  };
  // every body byte passes through exactly one sink: the replay collector or a try's upstream
  const pipeBody = req.pipeBody.bind(req);
  req.pipeBody = (sink: BodySink) =>
    pipeBody({
      body(chunk) {
        copy(chunk);
        return sink.body(chunk);
      },
      bodyEnd() {
        end();
        sink.bodyEnd();
      },
    });
}

/** Mirrors an HTTP/2 stream (a gRPC call): a stream on the endpoint's shared session. */
export function mirrorH2(targets: readonly MirrorTarget[], headers: OutgoingHttpHeaders, body: Readable, h2: H2Pools, log: Logger): void {
  for (const t of targets) {
    const ep = t.endpoint;
    const failed = (err: { message: string }) => log.debug({ mirror: t.service, upstream: ep.key, err: err.message }, 'mirrored request failed');
    // the body is taken from now on; held (bounded) until the session is connected
    let held: Buffer[] | null = [];
    let heldBytes = 0;
    let ended = body.readableEnded;
    let up: ClientHttp2Stream | undefined;
    const onData = (chunk: Buffer) => {
      if (up) {
        if (up.writableLength > MIRROR_BUFFER) return cut();
        up.write(chunk);
      } else if (held) {
        heldBytes += chunk.length;
        if (heldBytes > MIRROR_BUFFER) return cut();
        held.push(chunk);
      }
    };
    const onEnd = () => {
      ended = true;
      up?.end();
    };
    const cut = () => {
      body.off('data', onData);
      body.off('end', onEnd);
      held = null;
      up?.close();
    };
    if (!ended) {
      body.on('data', onData);
      body.once('end', onEnd);
    }
    h2.sessionFor(endpointDestination(ep)).use((session) => {
      if (!('request' in session)) return failed(session);
      if (held === null) return; // cut before it started
      try {
        up = session.request({ ...headers, 'x-tsmesh-attempt': '1' }, { endStream: false });
      } catch (err) {
        cut();
        return failed(err as Error);
      }
      up.on('error', failed);
      up.resume(); // the response is dropped
      for (const chunk of held) up.write(chunk);
      held = [];
      if (ended) up.end();
    });
  }
}
