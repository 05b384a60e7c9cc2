// The registry the pipelines read: the current view, replaced whole by its source. Sources
// call `replace`; readers call `view` on every request (a field read, no copying).
import { EventEmitter } from 'node:events';
import { RegistryView } from './view.ts';
import type { RegistryData } from './model.ts';

export class Registry extends EventEmitter<{ change: [RegistryView] }> {
  #view = RegistryView.empty();
  #loaded = false;

  get view(): RegistryView {
    return this.#view;
  }

  /** True once a source has delivered a first valid view (readiness). */
  get loaded(): boolean {
    return this.#loaded;
  }

  replace(data: RegistryData): RegistryView {
    this.#view = new RegistryView(data, this.#view.version + 1);
    this.#loaded = true;
    this.emit('change', this.#view);
    return this.#view;
  }
}
