// The downward-API file format Kubernetes writes for labels and annotations: one
// `key="value"` line per entry, the value a Go-quoted string.

export function parsePodInfo(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    const key = line.slice(0, eq).trim();
    out[key] = unquote(line.slice(eq + 1).trim());
  }
  return out;
}

function unquote(v: string): string {
  if (v.length < 2 || !v.startsWith('"') || !v.endsWith('"')) return v;
  try {
    // Go's %q escapes are a superset of JSON's only in \x, \a, \v and octal, rare in annotations.
    return JSON.parse(v.replace(/\\x([0-9a-fA-F]{2})/g, '\\u00$1').replace(/\\a/g, '\\u0007').replace(/\\v/g, '\\u000b')) as string;
  } catch {
    return v.slice(1, -1);
  }
}

export function formatPodInfo(entries: Record<string, string>): string {
  return Object.entries(entries)
    .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
    .join('\n');
}
