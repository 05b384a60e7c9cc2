// One line for an error and what caused it: "cannot read Secret x: fetch failed: connect
// ECONNREFUSED 127.0.0.1:6443". Libraries wrap the socket error that says what went wrong
// (undici's "fetch failed" holds the ECONNREFUSED in `cause`); a fatal message shows it.

const MAX_DEPTH = 6;

function own(err: unknown): string {
  if (err instanceof AggregateError && !err.message) return err.errors.map(own).filter(Boolean).join(' / ');
  if (err instanceof Error) return err.message || String((err as { code?: unknown }).code ?? err.name);
  return err === undefined || err === null ? '' : String(err);
}

/** The error's message followed by each cause's that it does not already contain. */
export function describeError(err: unknown): string {
  const parts: string[] = [];
  let e: unknown = err;
  for (let depth = 0; depth < MAX_DEPTH && e !== undefined && e !== null; depth++) {
    const text = own(e);
    if (text && !parts.some((p) => p.includes(text))) parts.push(text);
    e = e instanceof Error ? e.cause : undefined;
  }
  return parts.join(': ');
}
