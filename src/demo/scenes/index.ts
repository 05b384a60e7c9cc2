// The demo's scenes, in the order they run. To add one, write a `Scene` (./scene.ts) beside
// these and put it in the list.
import type { Scene } from './scene.ts';
import { requests } from './requests.ts';
import { resilience } from './resilience.ts';
import { trace } from './trace.ts';
import { canary } from './canary.ts';

export type { Scene, SceneContext } from './scene.ts';

export const scenes: readonly Scene[] = [requests, resilience, trace, canary];
