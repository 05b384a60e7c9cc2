// The annotation contract (DESIGN.md), one table: key, default, parser. The injector and the
// sidecar both read annotations through `readAnnotations`, so a value means the same thing
// everywhere, and a bad one is reported with its key while the previous (or default) stays.
import {
  parseBool,
  parseCidrList,
  parseDuration,
  parseEnum,
  parseIntIn,
  parseList,
  parsePercent,
  parsePortList,
  parseQuantity,
  parseRatio,
} from './parse.ts';
import { LOG_LEVELS } from '../log/log.ts';

export const PREFIX = 'tsmesh.io/';

export const MTLS_MODES = ['strict', 'permissive', 'disabled'] as const;
export type MtlsMode = (typeof MTLS_MODES)[number];

export const RETRY_ON = ['5xx', 'gateway-error', 'connect-failure', 'reset', 'retriable-4xx'] as const;
export type RetryOn = (typeof RETRY_ON)[number];

function parseAllow(text: string): string[] {
  return parseList(text).map((entry) => {
    if (/^spiffe:\/\/[^/\s]+\/ns\/[^/\s]+\/sa\/[^/\s]+$/.test(entry)) return entry;
    if (/^ns\/[^/\s]+\/sa\/[^/\s]+$/.test(entry)) return entry;
    if (/^ns\/[^/\s]+$/.test(entry)) return entry;
    throw new Error(`"${entry}" is not a SPIFFE ID (spiffe://DOMAIN/ns/NS/sa/SA), ns/NS/sa/SA or ns/NS`);
  });
}

function parseRetryOn(text: string): RetryOn[] {
  const items = parseList(text);
  const bad = items.filter((i) => !(RETRY_ON as readonly string[]).includes(i));
  if (bad.length) throw new Error(`unknown retry condition ${bad.map((b) => `"${b}"`).join(', ')} (use ${RETRY_ON.join(', ')})`);
  return [...new Set(items)] as RetryOn[];
}

function positiveDuration(text: string): number {
  const ms = parseDuration(text);
  if (ms <= 0) throw new Error(`"${text}" must be longer than 0`);
  return ms;
}

function optionalDuration(text: string): number | null {
  if (text.trim() === '' || text.trim() === 'none') return null;
  return positiveDuration(text);
}

interface Spec<T> {
  readonly default: T;
  readonly parse: (value: string) => T;
  readonly doc: string;
}
const spec = <T>(def: T, parse: (value: string) => T, doc: string): Spec<T> => ({ default: def, parse, doc });

/** Pod annotations: read by the injector and by the pod's own sidecar. */
export const podAnnotations = {
  mtls: spec<MtlsMode>('strict', parseEnum(MTLS_MODES), 'inbound mTLS mode: strict, permissive or disabled'),
  allow: spec<string[]>([], parseAllow, 'SPIFFE IDs (or ns/NS/sa/SA) allowed to call this pod; empty = any meshed caller'),
  'trace-sampling': spec(0.01, parseRatio, 'ratio 0..1 of new traces sampled (a caller\'s sampled or unsampled context is kept)'),
  'exclude-outbound-ports': spec<number[]>([], parsePortList, 'outbound ports not intercepted'),
  'exclude-inbound-ports': spec<number[]>([], parsePortList, 'inbound ports not intercepted'),
  'exclude-outbound-cidrs': spec<string[]>([], parseCidrList, 'CIDRs not intercepted'),
  'opaque-ports': spec<number[]>([], parsePortList, 'ports treated as plain TCP'),
  'native-sidecar': spec(true, parseBool, 'run the sidecar as a native sidecar (Kubernetes 1.29+)'),
  'proxy-cpu': spec('50m', parseQuantity, 'sidecar CPU request'),
  'proxy-memory': spec('64Mi', parseQuantity, 'sidecar memory request'),
  'log-level': spec<(typeof LOG_LEVELS)[number]>('info', parseEnum(LOG_LEVELS), 'sidecar log level'),
} as const;

/** Per-destination policy: on a Service (wins) or on the calling pod (its default). */
export const policyAnnotations = {
  timeout: spec(15_000, positiveDuration, 'whole request deadline'),
  'retry-attempts': spec(2, (v) => parseIntIn(v, 0, 10), 'retries after the first try'),
  'retry-on': spec<RetryOn[]>(['connect-failure', 'reset', 'gateway-error'], parseRetryOn, 'which failures are retried'),
  'per-try-timeout': spec<number | null>(null, optionalDuration, 'deadline of one try'),
  'retry-budget': spec(0.2, parsePercent, 'retries as a share of requests (plus 10/s minimum)'),
  'breaker-error-threshold': spec(50, (v) => parseIntIn(v, 1, 100), '% failing calls that opens an endpoint breaker'),
  'breaker-volume-threshold': spec(10, (v) => parseIntIn(v, 1, 1_000_000), 'calls in the window before the breaker may open'),
  'breaker-reset-timeout': spec(10_000, positiveDuration, 'time before a half-open probe'),
  'consecutive-failures': spec(5, (v) => parseIntIn(v, 0, 1000), 'failures in a row that eject an endpoint (0: none)'),
} as const;

type Values<S extends Record<string, Spec<unknown>>> = { -readonly [K in keyof S]: S[K]['default'] };
export type PodSettings = Values<typeof podAnnotations>;
export type Policy = Values<typeof policyAnnotations>;

export interface AnnotationProblem {
  readonly key: string; // full annotation key, e.g. tsmesh.io/timeout
  readonly value: string;
  readonly reason: string;
}

export function defaultsOf<S extends Record<string, Spec<unknown>>>(specs: S): Values<S> {
  const out: Record<string, unknown> = {};
  for (const [k, s] of Object.entries(specs)) out[k] = s.default;
  return out as Values<S>;
}

/**
 * Reads the tsmesh.io/ annotations that `specs` knows from `annotations` over `base`
 * (the defaults, or a lower layer such as the calling pod's policy). A bad value keeps
 * its `previous` value (the last good one) or else the base, and is returned as a problem
 * naming its key. `set` lists the keys that the annotations gave a valid value.
 */
export function readAnnotations<S extends Record<string, Spec<unknown>>>(
  specs: S,
  annotations: Readonly<Record<string, string>> | undefined,
  base: Values<S> = defaultsOf(specs),
  previous?: Values<S>,
): { values: Values<S>; problems: AnnotationProblem[]; set: (keyof S)[] } {
  const values = { ...base } as Record<string, unknown>;
  const problems: AnnotationProblem[] = [];
  const set: (keyof S)[] = [];
  for (const [name, s] of Object.entries(specs)) {
    const key = PREFIX + name;
    const raw = annotations?.[key];
    if (raw === undefined) continue;
    try {
      values[name] = s.parse(raw);
      set.push(name as keyof S);
    } catch (err) {
      problems.push({ key, value: raw, reason: (err as Error).message });
      if (previous) values[name] = (previous as Record<string, unknown>)[name];
    }
  }
  return { values: values as Values<S>, problems, set };
}

export function formatProblem(p: AnnotationProblem): string {
  return `annotation ${p.key}="${p.value}" ignored: ${p.reason}`;
}

/** A Service may mark its own ports opaque with the same annotation pods use. */
export function serviceOpaquePorts(service: { readonly annotations: Readonly<Record<string, string>> }): number[] {
  const raw = service.annotations['tsmesh.io/opaque-ports'];
  if (raw === undefined) return [];
  try {
    return podAnnotations['opaque-ports'].parse(raw);
  } catch {
    return [];
  }
}
