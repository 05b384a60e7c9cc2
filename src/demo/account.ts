// The account of one request, in every mode: which pod answered, through which hops, and how
// long each took, from the sidecars' access lines (each hop's time includes the hops below it).
import type { AccessLine, DemoReply, EntryHop } from './mesh.ts';

export interface RequestAccountInput {
  readonly n: number;
  /** what pod-b's app asked for, e.g. http://pod-service/?request=1 */
  readonly url: string;
  readonly reply: DemoReply;
  /** pod-b's sidecar's access lines (its outbound line for the request is looked up by path) */
  readonly outbound: readonly AccessLine[];
  /** pod-a's sidecar's access lines (its inbound line) */
  readonly inbound: readonly AccessLine[];
  /** pod-a's app's own time for the request */
  readonly appMs: number | undefined;
  /** how pod-b's app reached its sidecar */
  readonly entry: EntryHop;
  /** pod-a's address, where its sidecar's inbound listener is */
  readonly podAIP: string;
}

export interface RequestAccount {
  readonly lines: string[];
  /** a 200 that went through both sidecars to pod-a */
  readonly ok: boolean;
}

const ms = (n: number | undefined) => (n === undefined ? '     ?   ' : `${n.toFixed(2).padStart(6)} ms`);

function answerOf(reply: DemoReply): string {
  if (reply.status === 0) return `no answer: ${reply.error ?? 'unknown error'}`;
  const body = reply.body.trim();
  try {
    const message = (JSON.parse(body) as { message?: unknown }).message;
    if (typeof message === 'string') return `"${message}"`;
  } catch {
    /* shown as it is */
  }
  return `"${body.length > 60 ? `${body.slice(0, 57)}...` : body}"`;
}

export function requestAccount(input: RequestAccountInput): RequestAccount {
  const path = new URL(input.url).pathname + new URL(input.url).search;
  const out = input.outbound.find((l) => l.direction === 'outbound' && l.path === path);
  const inn = input.inbound.find((l) => l.direction === 'inbound' && l.path === path);
  const { reply } = input;
  const hops: [from: string, to: string, where: string, took: number | undefined, note: string][] = [
    [input.entry.from, 'pod-b sidecar', input.entry.where, out?.duration_ms, `chose endpoint ${out?.upstream_pod ?? '?'} (${out?.upstream ?? '?'}) of pod-service`],
    ['pod-b sidecar', 'pod-a sidecar', `inbound  ${input.podAIP}:15006`, inn?.duration_ms, 'mesh hop, target port 8080'],
    ['pod-a sidecar', 'pod-a app', inn?.upstream ?? '?', input.appMs, 'app time'],
  ];
  const width = (i: 0 | 1 | 2) => Math.max(...hops.map((h) => h[i].length));
  const lines = [
    '',
    `Request ${input.n}: pod-b  GET ${input.url}  ->  ${reply.status || '---'} ${answerOf(reply)}  (${reply.ms.toFixed(2)} ms at the client, ${reply.client})`,
    ...hops.map(([from, to, where, took, note], i) => `  ${i + 1}. ${from.padEnd(width(0) + 2)}-> ${to.padEnd(width(1) + 3)}${where.padEnd(width(2) + 2)}${ms(took)}  ${note}`),
  ];
  const identities = identitiesOf(reply, inn);
  if (identities) lines.push(identities);
  if (!out) lines.push("  (no outbound access line from pod-b's sidecar: the request did not go through it)");
  if (!inn) lines.push("  (no inbound access line from pod-a's sidecar)");
  return { lines, ok: reply.status === 200 && out !== undefined && inn !== undefined && out.upstream_pod === 'pod-a' };
}

/**
 * Who was who on the mesh hop: pod-a's sidecar logs the caller's verified SPIFFE ID (`peer`),
 * and tells its app, in x-forwarded-client-cert, both its own (By=) and the caller's (URI=).
 */
function identitiesOf(reply: DemoReply, inbound: AccessLine | undefined): string | undefined {
  let xfcc: unknown;
  try {
    xfcc = (JSON.parse(reply.body) as { sawClientCert?: unknown }).sawClientCert;
  } catch {
    return undefined;
  }
  const by = typeof xfcc === 'string' ? /By=([^;]+)/.exec(xfcc)?.[1] : undefined;
  const caller = typeof inbound?.peer === 'string' ? inbound.peer : undefined;
  if (!by && !caller) return '  mTLS: none (the mesh hop was plaintext)';
  return `  mTLS: pod-b is ${caller ?? '?'} (verified by pod-a's sidecar), pod-a is ${by ?? '?'} (verified by pod-b's sidecar)`;
}
