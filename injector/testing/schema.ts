// Validation of manifests against the Kubernetes OpenAPI schema, for tests:
// - types, formats, enums and required fields with `kubernetes-models` (validators generated
//   from the Kubernetes OpenAPI definitions);
// - unknown fields (what `kubectl apply --validate=strict` refuses, e.g. a typo such as
//   "readinesProbe"), walked with the field lists of @kubernetes/client-node's models, which
//   are generated from the same OpenAPI definitions.
import * as k8s from '@kubernetes/client-node';

interface Model {
  validate(): void;
}
type ModelClass = new (data: unknown) => Model;

type AttributeMap = { name: string; baseName: string; type: string }[];
const models = k8s as unknown as Record<string, { getAttributeTypeMap?: () => AttributeMap } | undefined>;

/** client-node's class name for apiVersion + kind: apps/v1 Deployment -> V1Deployment. */
function clientModelName(apiVersion: string, kind: string): string {
  const version = apiVersion.split('/').pop()!;
  return version.charAt(0).toUpperCase() + version.slice(1) + kind;
}

/** Fields of `value` that the schema of `type` does not have, as JSON paths. */
export function unknownFields(value: unknown, type: string, path = ''): string[] {
  if (value === null || value === undefined) return [];
  const array = /^Array<(.+)>$/.exec(type);
  if (array) return Array.isArray(value) ? value.flatMap((v, i) => unknownFields(v, array[1]!, `${path}[${i}]`)) : [];
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (map) return typeof value === 'object' ? Object.entries(value).flatMap(([k, v]) => unknownFields(v, map[1]!, `${path}.${k}`)) : [];
  const attrs = models[type]?.getAttributeTypeMap?.();
  if (!attrs || typeof value !== 'object' || Array.isArray(value)) return []; // a scalar, IntOrString, Quantity, any
  const out: string[] = [];
  for (const [key, v] of Object.entries(value as Record<string, unknown>)) {
    const attr = attrs.find((a) => a.baseName === key);
    if (!attr) out.push(`${path}.${key}`);
    else out.push(...unknownFields(v, attr.type, `${path}.${key}`));
  }
  return out;
}

/** Throws an Error naming every problem of `obj` against the schema of its apiVersion and kind. */
export async function validateObject(obj: object): Promise<void> {
  const { apiVersion, kind } = obj as { apiVersion?: unknown; kind?: unknown };
  if (typeof apiVersion !== 'string' || typeof kind !== 'string') throw new Error('object has no apiVersion and kind');
  const what = `${apiVersion} ${kind}`;
  let mod: Record<string, unknown>;
  try {
    mod = (await import(`kubernetes-models/${apiVersion}`)) as Record<string, unknown>;
  } catch {
    throw new Error(`${what}: no schema for apiVersion ${apiVersion}`);
  }
  const Cls = mod[kind] as ModelClass | undefined;
  if (!Cls) throw new Error(`${what}: no schema for kind ${kind}`);
  try {
    new Cls(obj).validate();
  } catch (err) {
    throw new Error(`${what}: ${(err as Error).message}`, { cause: err });
  }
  const model = clientModelName(apiVersion, kind);
  if (!models[model]?.getAttributeTypeMap) throw new Error(`${what}: no field list (${model})`);
  const unknown = unknownFields(obj, model);
  if (unknown.length) throw new Error(`${what}: unknown fields ${unknown.join(', ')}`);
}
