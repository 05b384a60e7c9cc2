// pod-b calls http://pod-service/ a few times; for each request, which pod answered, through
// which hops, and how long each took (from the sidecars' access logs).
import { requestAccount } from '../account.ts';
import { waitFor } from '../mesh.ts';
import type { Scene } from './scene.ts';

export const requests: Scene = {
  name: 'requests',
  async run({ mesh, print, requests: count, signal }) {
    print("Each hop's time includes the hops below it (from the sidecars' access logs).");
    let ok = true;
    for (let n = 1; n <= count && !signal.aborted; n++) {
      const path = `/?request=${n}`;
      const url = `http://pod-service${path}`;
      const reply = await mesh.get(url);
      if (signal.aborted) break;
      // the sidecars log a request just after answering it: give the lines a moment to arrive
      const seen = (pod: 'a' | 'b', direction: string) => mesh.accessLines(pod).find((l) => l.direction === direction && l.path === path);
      await waitFor(() => seen('b', 'outbound'));
      await waitFor(() => seen('a', 'inbound'));
      await waitFor(() => mesh.appTime(path));
      const account = requestAccount({
        n,
        url,
        reply,
        outbound: mesh.accessLines('b'),
        inbound: mesh.accessLines('a'),
        appMs: mesh.appTime(path),
        entry: mesh.entry,
        podAIP: mesh.pods.a.ip,
      });
      for (const line of account.lines) print(line);
      ok = account.ok && ok;
    }
    if (!signal.aborted) print(`\n${ok ? 'Every request' : 'Not every request'} went ${mesh.route}.`);
    return ok;
  },
};
