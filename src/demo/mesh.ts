// What every mode of the demo provides: DESIGN.md's example mesh (pod-a with a web app behind
// Service pod-service, pod-b as the client, a sidecar in each), however its pods are made.
// Scenes (src/demo/scenes/) use only this interface, so each works in every mode.

export type DemoMode = 'loopback' | 'netns';

export interface DemoPod {
  readonly name: string;
  readonly ip: string;
  readonly labels: Record<string, string>;
}

/** A sidecar access-log line (src/log/access.ts), as the demo reads it from the sidecar's stdout. */
export interface AccessLine {
  type: 'access';
  direction: 'inbound' | 'outbound';
  path: string;
  status: number;
  duration_ms: number;
  upstream?: string;
  upstream_pod?: string;
  upstream_service?: string;
  [k: string]: unknown;
}

/** What pod-b's app got back. */
export interface DemoReply {
  status: number;
  body: string;
  /** as the client measured it */
  ms: number;
  /** the client program, e.g. "curl" */
  client: string;
  /** why no HTTP answer came (status 0) */
  error?: string;
}

/** How a request gets from pod-b's app to its sidecar, for the first line of an account. */
export interface EntryHop {
  /** e.g. "pod-b app" or "pod-b app -> iptables" */
  readonly from: string;
  /** e.g. "outbound 127.0.0.11:15001" */
  readonly where: string;
}

export interface DemoMesh {
  readonly mode: DemoMode;
  /** the first lines the demo prints: the mode, then what was started */
  readonly description: readonly string[];
  readonly pods: { readonly a: DemoPod; readonly b: DemoPod };
  readonly entry: EntryHop;
  /** the way every request should have gone, for the summary */
  readonly route: string;
  /** pod-b's app sends GET `url` (e.g. http://pod-service/x), with these request headers */
  get(url: string, headers?: Record<string, string>): Promise<DemoReply>;
  /** Rewrites the registry with these mesh routes and waits until pod-b's sidecar has loaded it. */
  setRoutes(routes: readonly unknown[]): Promise<void>;
  /** the access lines the pod's sidecar has logged so far */
  accessLines(pod: 'a' | 'b'): readonly AccessLine[];
  /** every JSON log line the pod's sidecar has written so far */
  logLines(pod: 'a' | 'b'): readonly Record<string, unknown>[];
  /** how long pod-a's app took for the request with this path (ms), once it has said so */
  appTime(path: string): number | undefined;
  /** the requests pod-a's app saw with this path ({path, status, attempt, ms}) */
  appRequests(path: string): readonly { status: number; attempt: number }[];
  /** GET `path` on the pod's sidecar admin port (15020), from inside the pod; the body */
  admin(pod: 'a' | 'b', path: string): Promise<string>;
  /** where the sidecars export spans (OTEL_EXPORTER_OTLP_ENDPOINT), or why they do not */
  readonly traceExport: { endpoint: string } | { none: string };
  /** how to call the running mesh by hand (for --keep) */
  tryIt(): readonly string[];
  close(): Promise<void>;
}

/** JSON lines of a process's output; anything else is skipped. */
export function jsonLines(output: string): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const line of output.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      /* a partial or foreign line */
    }
  }
  return out;
}

/** Waits for a "registry loaded" line of a sidecar after the `seen` lines it had logged (its reload of the file). */
export async function registryReloaded(lines: () => readonly Record<string, unknown>[], seen: number, timeoutMs = 10_000): Promise<void> {
  const loaded = await waitFor(() => lines().slice(seen).find((l) => l.msg === 'registry loaded'), timeoutMs);
  if (!loaded) throw new Error('the sidecar did not reload the registry');
}

/** Polls `find` until it returns something or `timeoutMs` passes (log lines arrive a little after the reply). */
export async function waitFor<T>(find: () => T | undefined, timeoutMs = 2000): Promise<T | undefined> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = find();
    if (v !== undefined || Date.now() > end) return v;
    await new Promise((r) => setTimeout(r, 10));
  }
}
