// pod-a made to fail on purpose: a retry that turns a failure into a success, then a circuit
// breaker that opens and answers for pod-a without calling it.
//   retry:   GET http://pod-service/flaky: pod-a answers 503 to a first attempt; pod-b's
//            sidecar retries (retry-on gateway-error, the default) and the client gets 200
//   breaker: GET http://flaky-service/fail: pod-a always answers 500; the Service's policy
//            (retry-attempts 0, breaker-volume-threshold 5) opens pod-a's breaker after 5
//            failures, and the next call gets 503 circuit-open at once, pod-a never seeing it
import { waitFor } from '../mesh.ts';
import type { Scene } from './scene.ts';
import { FLAKY_SERVICE } from '../app.ts';

export const resilience: Scene = {
  name: 'resilience',
  async run({ mesh, print, signal }) {
    print('\nRetries: pod-a is made to fail the first attempt of GET /flaky.');
    const retryPath = '/flaky?scene=retry';
    const reply = await mesh.get(`http://pod-service${retryPath}`);
    const line = await waitFor(() => mesh.accessLines('b').find((l) => l.direction === 'outbound' && l.path === retryPath));
    await waitFor(() => (mesh.appRequests(retryPath).length >= 2 ? true : undefined));
    const seen = mesh.appRequests(retryPath);
    print(`  pod-b got ${reply.status} "${messageOf(reply.body)}"`);
    print(`  pod-a's app saw ${seen.length} attempts: ${seen.map((r) => `attempt ${r.attempt} -> ${r.status}`).join(', ')}`);
    print(`  pod-b's sidecar: ${String(line?.attempts ?? '?')} attempts in ${line ? (line.duration_ms as number).toFixed(2) : '?'} ms (retry-on: gateway-error, backoff with jitter)`);
    const retried = reply.status === 200 && seen.length === 2 && line?.attempts === 2;
    if (signal.aborted) return retried;

    print(`\nCircuit breaker: ${FLAKY_SERVICE.name} selects pod-a too, with retry-attempts 0 and breaker-volume-threshold 5; GET /fail always fails.`);
    const statuses: string[] = [];
    let opened: { status: number; error: string; ms: number } | undefined;
    for (let i = 1; i <= 8 && !signal.aborted; i++) {
      const path = `/fail?call=${i}`;
      const r = await mesh.get(`http://${FLAKY_SERVICE.name}${path}`);
      const out = await waitFor(() => mesh.accessLines('b').find((l) => l.direction === 'outbound' && l.path === path));
      const error = typeof out?.error === 'string' ? out.error : '';
      statuses.push(`${r.status}${error === 'circuit-open' ? ' circuit-open' : ''}`);
      if (error === 'circuit-open' && !opened) opened = { status: r.status, error, ms: out!.duration_ms };
    }
    const reachedApp = mesh.appRequests('/fail').length + Array.from({ length: 8 }, (_, i) => mesh.appRequests(`/fail?call=${i + 1}`).length).reduce((a, b) => a + b, 0);
    print(`  8 calls: ${statuses.join(', ')}`);
    if (opened) {
      print(`  after 5 failures pod-a's breaker opened: pod-b's sidecar answered ${opened.status} (x-tsmesh-error: ${opened.error}) in ${opened.ms.toFixed(2)} ms without calling pod-a;`);
      print(`  pod-a's app saw ${reachedApp} of the 8 calls. After breaker-reset-timeout (30s) one probe will test pod-a again.`);
    } else print('  the breaker did not open');
    return retried && opened !== undefined && reachedApp === 5;
  },
};

function messageOf(body: string): string {
  try {
    return String((JSON.parse(body) as { message?: unknown }).message ?? body.trim());
  } catch {
    return body.trim();
  }
}
