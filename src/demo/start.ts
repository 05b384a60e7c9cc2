// Which mode the demo runs in, and starting its mesh. `auto` takes network namespaces when this
// machine can make them (root, Linux, ip/iptables/setpriv/ss on PATH, the project readable by
// the pod users) and says why not otherwise; if building them fails anyway (a kernel without
// the nat table, say), it says so and falls back to loopback.
import { netnsUnsupportedReasons } from '../localcluster/netns.ts';
import { DemoError } from './errors.ts';
import { startLoopbackMesh } from './loopback.ts';
import { startNetnsMesh } from './netns.ts';
import type { DemoMesh } from './mesh.ts';

export const DEMO_MODES = ['auto', 'loopback', 'netns'] as const;
export type RequestedMode = (typeof DEMO_MODES)[number];

export interface StartOptions {
  readonly mode: RequestedMode;
  readonly logLevel?: string;
  /** where to say that the demo fell back to loopback (default: stderr) */
  readonly warn?: (line: string) => void;
  /** the user stopped the demo: no fallback then */
  readonly signal?: AbortSignal;
}

export async function startDemoMesh(options: StartOptions): Promise<DemoMesh> {
  const warn = options.warn ?? ((line: string) => process.stderr.write(`${line}\n`));
  if (options.mode === 'loopback') return startLoopbackMesh({ logLevel: options.logLevel, why: 'asked for with --mode loopback' });

  const reasons = await netnsUnsupportedReasons();
  if (options.mode === 'netns') {
    if (reasons.length > 0) throw new DemoError('TSMESH_DEMO_NETNS_UNAVAILABLE', `--mode netns: cannot make network-namespace pods here: ${reasons.join('; ')}`);
    return startNetnsMesh({ logLevel: options.logLevel });
  }
  if (reasons.length > 0) return startLoopbackMesh({ logLevel: options.logLevel, why: `not network namespaces: ${reasons.join('; ')}` });
  try {
    return await startNetnsMesh({ logLevel: options.logLevel });
  } catch (err) {
    if (options.signal?.aborted) throw err;
    const why = `network namespaces failed: ${(err as Error).message.split('\n')[0]}`;
    warn(`tsmesh demo: ${why}; falling back to loopback mode`);
    return startLoopbackMesh({ logLevel: options.logLevel, why });
  }
}
