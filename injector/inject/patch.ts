// The webhook's JSONPatch (RFC 6902) is the diff of the mutated pod against the original, as
// Istio computes it, not a hand-built list of operations: whatever injectPod changes is exactly
// what the patch carries, and an unchanged pod gives an empty patch.
import fjp from 'fast-json-patch';
import type { Operation } from 'fast-json-patch';

export type { Operation };

export function diffPatch(original: unknown, mutated: unknown): Operation[] {
  // JSON round trip: `undefined` fields are not part of either document.
  return fjp.compare(JSON.parse(JSON.stringify(original ?? {})) as object, JSON.parse(JSON.stringify(mutated ?? {})) as object);
}
