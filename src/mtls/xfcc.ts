// x-forwarded-client-cert for the app on inbound (DESIGN.md "Headers"):
//   x-forwarded-client-cert: By=<own SPIFFE ID>;URI=<peer SPIFFE ID>
// Only set when the peer was authenticated; the inbound side must drop any value the caller
// sent, since a client could otherwise claim any identity.

export const XFCC_HEADER = 'x-forwarded-client-cert';

/** The header value, or undefined when there is no authenticated peer (no header then). */
export function xfccValue(ownSpiffeId: string, peerSpiffeId: string | null | undefined): string | undefined {
  if (!peerSpiffeId) return undefined;
  return `By=${ownSpiffeId};URI=${peerSpiffeId}`;
}
