// A scene of the demo: one thing it shows on the running mesh, in any mode. Scenes run in the
// order of the list in ./index.ts, each printing its own account.
import type { DemoMesh } from '../mesh.ts';

export interface SceneContext {
  readonly mesh: DemoMesh;
  /** prints one line of the demo's output */
  readonly print: (line: string) => void;
  /** --requests: how many requests a scene that sends a series should send */
  readonly requests: number;
  /** aborted when the user stops the demo (Ctrl-C, SIGTERM): end the scene soon after */
  readonly signal: AbortSignal;
}

export interface Scene {
  readonly name: string;
  /** runs the scene; false when what it shows did not happen (the demo then exits 1) */
  run(ctx: SceneContext): Promise<boolean>;
}
