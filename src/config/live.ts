// The sidecar's live configuration: defaults <- environment <- the pod's annotations file
// (re-read when it changes, so `kubectl annotate` reconfigures a running sidecar) <- the
// destination Service's annotations for per-destination policy. A bad value is logged with
// its key and the previous valid value stays in force.
import { EventEmitter } from 'node:events';
import {
  defaultsOf,
  formatProblem,
  podAnnotations,
  policyAnnotations,
  readAnnotations,
  type AnnotationProblem,
  type PodSettings,
  type Policy,
} from './annotations.ts';
import { parsePodInfo } from './podinfo.ts';
import type { Service } from '../registry/model.ts';
import type { Logger } from '../log/log.ts';

export class LiveConfig extends EventEmitter<{ change: [] }> {
  pod: PodSettings = defaultsOf(podAnnotations);
  /** The calling pod's own default policy for every destination. */
  policy: Policy = defaultsOf(policyAnnotations);
  annotations: Readonly<Record<string, string>> = {};
  problems: readonly AnnotationProblem[] = [];
  readonly #log: Logger;
  #servicePolicies = new WeakMap<Service, Policy>();
  #lastByService = new Map<string, Policy>(); // "ns/name" -> last policy, for bad values
  #reported = new Set<string>();

  constructor(log: Logger) {
    super();
    this.#log = log;
  }

  /** Applies the pod's annotations file content (downward-API format). */
  applyAnnotationsFile(text: string): void {
    this.applyAnnotations(parsePodInfo(text));
  }

  applyAnnotations(annotations: Readonly<Record<string, string>>): void {
    const pod = readAnnotations(podAnnotations, annotations, undefined, this.pod);
    const policy = readAnnotations(policyAnnotations, annotations, undefined, this.policy);
    this.annotations = annotations;
    this.problems = [...pod.problems, ...policy.problems];
    for (const p of this.problems) this.#log.warn({ code: 'TSMESH_ANNOTATION_INVALID', key: p.key, value: p.value, reason: p.reason }, formatProblem(p));
    this.pod = pod.values;
    this.policy = policy.values;
    this.#servicePolicies = new WeakMap();
    this.emit('change');
  }

  /** The effective policy for calls to `service`: its annotations win over the pod's. */
  policyFor(service: Service): Policy {
    let policy = this.#servicePolicies.get(service);
    if (!policy) {
      const name = `${service.namespace}/${service.name}`;
      const r = readAnnotations(policyAnnotations, service.annotations, this.policy, this.#lastByService.get(name));
      for (const p of r.problems) {
        const id = `${name} ${p.key}=${p.value}`;
        if (this.#reported.has(id)) continue;
        this.#reported.add(id);
        this.#log.warn({ code: 'TSMESH_ANNOTATION_INVALID', service: name, key: p.key, value: p.value, reason: p.reason }, `service ${name}: ${formatProblem(p)}`);
      }
      policy = r.values;
      this.#servicePolicies.set(service, policy);
      this.#lastByService.set(name, policy);
    }
    return policy;
  }
}
