// A canary release with a Gateway API HTTPRoute (docs/routing.md): the scene writes a route on
// pod-service into the registry (the sidecars reload it live), then pod-b calls pod-service:
// 90% of the calls go to pod-a (v1) and 10% to pod-a-v2, and a call with `x-canary: 1` always
// goes to v2. The route is removed at the end, so pod-service is as before.
import { CANARY } from '../app.ts';
import type { Scene } from './scene.ts';

const CALLS = 100;

export const canary: Scene = {
  name: 'canary',
  async run({ mesh, print, signal }) {
    print('\nCanary: an HTTPRoute on pod-service sends 90% to pod-a (v1) and 10% to pod-a-v2, and x-canary: 1 to v2.');
    await mesh.setRoutes([CANARY.route]);
    try {
      const counts = { v1: 0, v2: 0, other: 0 };
      for (let i = 0; i < CALLS && !signal.aborted; i++) {
        const r = await mesh.get(`http://pod-service/?canary=${i}`);
        const v = versionOf(r.status, r.body);
        counts[v]++;
      }
      if (signal.aborted) return true;
      print(`  ${CALLS} calls to pod-service: ${counts.v1} answered by pod-a (v1), ${counts.v2} by pod-a-v2${counts.other ? `, ${counts.other} failed` : ''} (weights 90/10)`);
      const tagged: string[] = [];
      for (let i = 0; i < 3 && !signal.aborted; i++) {
        const r = await mesh.get('http://pod-service/?canary=tagged', { 'x-canary': '1' });
        tagged.push(versionOf(r.status, r.body));
      }
      print(`  3 calls with x-canary: 1: ${tagged.join(', ')}`);
      // 10 of 100 expected; 3..20 holds but for a chance of about 3 in 1000
      return counts.other === 0 && counts.v2 >= 3 && counts.v2 <= 20 && tagged.every((t) => t === 'v2');
    } finally {
      await mesh.setRoutes([]).catch(() => undefined);
      print('  The route is removed again: pod-service goes to pod-a alone.');
    }
  },
};

function versionOf(status: number, body: string): 'v1' | 'v2' | 'other' {
  if (status !== 200) return 'other';
  return body.includes('Hello from pod-a v2') ? 'v2' : body.includes('Hello from pod-a') ? 'v1' : 'other';
}
