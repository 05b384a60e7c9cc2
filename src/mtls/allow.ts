// The `tsmesh.io/allow` annotation as a matcher. Entries (validated by src/config/annotations.ts):
//   spiffe://DOMAIN/ns/NS/sa/SA   exactly that identity (any trust domain)
//   ns/NS/sa/SA                   that service account in our own trust domain
//   ns/NS                         any service account of namespace NS in our own trust domain
// An empty list allows any caller the mTLS mode let in. A non-empty list needs an
// authenticated caller (plaintext callers in permissive mode have none).
import { parseSpiffeId } from '../identity/spiffe.ts';

export type AllowDecision = { readonly allowed: true } | { readonly allowed: false; readonly reason: string };

export interface AllowList {
  readonly entries: readonly string[];
  check(peerSpiffeId: string | null | undefined): AllowDecision;
}

type Rule = { kind: 'id'; td: string; ns: string; sa: string } | { kind: 'ns'; td: string; ns: string };

function ruleOf(entry: string, trustDomain: string): Rule {
  if (entry.startsWith('spiffe://')) {
    const id = parseSpiffeId(entry);
    if (!id) throw new Error(`allow entry "${entry}" is not a SPIFFE ID spiffe://DOMAIN/ns/NS/sa/SA`);
    return { kind: 'id', td: id.trustDomain, ns: id.namespace, sa: id.serviceAccount };
  }
  const m = /^ns\/([^/\s]+)(?:\/sa\/([^/\s]+))?$/.exec(entry);
  if (!m) throw new Error(`allow entry "${entry}" is not spiffe://DOMAIN/ns/NS/sa/SA, ns/NS/sa/SA or ns/NS`);
  return m[2] ? { kind: 'id', td: trustDomain, ns: m[1]!, sa: m[2] } : { kind: 'ns', td: trustDomain, ns: m[1]! };
}

/** Compiles the entries once (per annotation change); throws naming a malformed entry. */
export function compileAllowList(entries: readonly string[], trustDomain: string): AllowList {
  const td = trustDomain.toLowerCase();
  const rules = entries.map((e) => ruleOf(e.trim(), td));
  const list = entries.join(', ');
  return {
    entries: [...entries],
    check(peer) {
      if (rules.length === 0) return { allowed: true };
      if (!peer) return { allowed: false, reason: `the caller has no verified identity (plaintext or no valid client certificate); allowed: ${list}` };
      const id = parseSpiffeId(peer);
      if (!id) return { allowed: false, reason: `the caller's identity "${peer}" is not a tsmesh SPIFFE ID; allowed: ${list}` };
      const ok = rules.some((r) => r.td === id.trustDomain && r.ns === id.namespace && (r.kind === 'ns' || r.sa === id.serviceAccount));
      return ok ? { allowed: true } : { allowed: false, reason: `${peer} is not allowed to call this workload; allowed: ${list}` };
    },
  };
}
