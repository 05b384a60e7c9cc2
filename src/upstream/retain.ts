// The upstream pools keep connections only to endpoints that still exist: this pod (the inbound's
// connections to the app) and the pods the registry knows.
import type { RegistryView } from '../registry/view.ts';

export interface RetainingPool {
  retain(keep: (dest: { ip: string; port: number }) => boolean): void;
}

export function retainKnownPods(view: RegistryView, podIP: string, pools: readonly RetainingPool[]): void {
  const keep = ({ ip }: { ip: string }) => ip === podIP || view.podByIP(ip) !== undefined;
  for (const pool of pools) pool.retain(keep);
}
