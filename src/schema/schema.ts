// Small validators for the data the sidecar reads (its environment, the registry, routes,
// discovery messages, TSMESH_APP_PROBES): typed values out, every problem with the path of the
// field and a sentence. The subset of zod 4 these schemas used, with zod's English messages
// and its order of reporting (the control plane's tests and route status conditions show
// them), without its 95 modules in every sidecar (issue 17: ~6 MiB of RssAnon idle).
// src/schema/schema.test.ts compares every schema here with the zod schema it replaced.
//
// How a value is checked, as zod does: the type first, then the children (an object's fields,
// an array's items), then the schema's own checks in order. A problem says whether what follows
// still runs (zod's `continue`): after a soft one (a size, a pattern, a refinement, an unknown
// key) every check runs; after a wrong type only the size checks run (on anything with a
// length: "Too big: expected string to have <=16 characters" for a long string where a list
// was expected); after a hard stop (not a whole number; an array longer than its maximum,
// reported alone with its items unread) none does.

export type PathKey = string | number;

export interface Issue {
  readonly path: PathKey[];
  readonly message: string;
  /** true: every later check still runs; undefined: only size checks; false: none */
  readonly continue?: boolean | undefined;
}

/** As zod's safeParse: the value, or the problems (in `error.issues`). */
export type SafeResult<T> = { readonly success: true; readonly data: T } | { readonly success: false; readonly error: { readonly issues: Issue[] } };

interface Check<T> {
  readonly test: (value: T, issues: Issue[]) => void;
  /** a size check: runs on any value with a length, after any problem but a hard stop */
  readonly sized: boolean;
}

/** zod's name for the type of a value in "expected X, received Y". */
export function typeName(v: unknown): string {
  switch (typeof v) {
    case 'number':
      return Number.isNaN(v) || !Number.isFinite(v) ? String(v) : 'number';
    case 'object': {
      if (v === null) return 'null';
      if (Array.isArray(v)) return 'array';
      const proto = Object.getPrototypeOf(v) as object | null;
      const ctor = (v as { constructor?: { name?: string } }).constructor;
      if (proto !== Object.prototype && 'constructor' in v && ctor) return ctor.name ?? 'object';
      return 'object';
    }
    default:
      return typeof v;
  }
}

const quote = (v: unknown): string => (typeof v === 'string' ? `"${v}"` : String(v));
const stops = (issues: Issue[], from: number): boolean => {
  for (let i = from; i < issues.length; i++) if (issues[i]!.continue !== true) return true;
  return false;
};
const stopsAll = (issues: Issue[], from: number): boolean => {
  for (let i = from; i < issues.length; i++) if (issues[i]!.continue === false) return true;
  return false;
};
const typeIssue = (expected: string, input: unknown): Issue => ({ path: [], message: `Invalid input: expected ${expected}, received ${typeName(input)}` });
const soft = (message: string): Issue => ({ path: [], message, continue: true });

/** A string's length in code points (as zod counts), anything else's `length`. */
function lengthOf(v: unknown): number {
  if (typeof v !== 'string') return (v as { length: number }).length;
  let n = v.length;
  for (let i = 0; i < v.length - 1; i++) {
    if ((v.charCodeAt(i) & 0xfc00) === 0xd800 && (v.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n--;
      i++;
    }
  }
  return n;
}

/** A minimum or maximum length; the default message names what the value is (string or array). */
function sizeCheck(bound: 'min' | 'max', n: number, message: string | undefined): Check<unknown> {
  return {
    sized: true,
    test: (v, issues) => {
      const len = lengthOf(v);
      if (bound === 'min' ? len >= n : len <= n) return;
      if (message !== undefined) return void issues.push(soft(message));
      const [what, unit] = Array.isArray(v) ? ['array', 'items'] : typeof v === 'string' ? ['string', 'characters'] : ['unknown', undefined];
      const [word, op] = bound === 'min' ? ['Too small', '>='] : ['Too big', '<='];
      issues.push(soft(unit ? `${word}: expected ${what} to have ${op}${n} ${unit}` : `${word}: expected ${what} to be ${op}${n}`));
    },
  };
}
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Runs `schema` on a child value and adds its issues under `key`. */
function child<T>(schema: Schema<T>, value: unknown, key: PathKey, issues: Issue[]): T {
  const own: Issue[] = [];
  const out = schema.run(value, own);
  for (const i of own) issues.push({ path: [key, ...i.path], message: i.message, continue: i.continue });
  return out;
}

export abstract class Schema<T> {
  declare readonly _output: T;
  /** How an absent object key is taken: 'optional' (left out) or 'default' (filled in); undefined: required. */
  readonly absent: 'optional' | 'default' | undefined = undefined;
  // typed for any value so that a Schema<string> is a Schema<unknown>; with() takes only Check<T>
  protected readonly checks: readonly Check<unknown>[] = [];

  /** The type and the children; returns the value (its issues pushed with paths relative to it). */
  protected abstract read(input: unknown, issues: Issue[]): T;

  run(input: unknown, issues: Issue[]): T {
    const start = issues.length;
    const value = this.read(input, issues);
    let stopped = stops(issues, start);
    for (const check of this.checks) {
      if (check.sized) {
        if (value === null || value === undefined || (value as { length?: unknown }).length === undefined || stopsAll(issues, start)) continue;
      } else if (stopped) continue;
      const before = issues.length;
      check.test(value, issues);
      stopped ||= stops(issues, before);
    }
    return value;
  }

  safeParse(input: unknown): SafeResult<T> {
    const issues: Issue[] = [];
    const data = this.run(input, issues);
    return issues.length ? { success: false, error: { issues } } : { success: true, data };
  }

  /** A copy with one more check (schemas are built once and then shared: never changed in place). */
  protected with(test: Check<T>['test'], sized = false): this {
    const check: Check<T> = { test, sized };
    const copy = Object.create(Object.getPrototypeOf(this) as object) as this;
    Object.assign(copy, this);
    (copy as unknown as { checks: readonly Check<unknown>[] }).checks = [...this.checks, check as Check<unknown>];
    return copy;
  }

  refine(ok: (value: T) => boolean, message: string): this {
    return this.with((v, issues) => {
      if (!ok(v)) issues.push(soft(message));
    });
  }

  optional(): Schema<T | undefined> {
    return new Wrapped<T | undefined>(this, 'optional', (v) => (v === undefined ? { value: undefined } : undefined));
  }

  /** undefined becomes `value` (not checked, as zod 4's default). */
  default(value: NoInfer<T>): Schema<T> {
    return new Wrapped<T>(this, 'default', (v) => (v === undefined ? { value: structuredCloneIfObject(value) } : undefined));
  }

  /** The value turned into another by `to`, which throws an Error saying what is wrong with it. */
  transform<U>(to: (value: T) => U): Schema<U> {
    return new Transformed(this, to);
  }

  nullable(): Schema<T | null> {
    return new Wrapped<T | null>(this, undefined, (v) => (v === null ? { value: null } : undefined));
  }
}

// zod hands out the same default object on every parse; a copy keeps one parse's result from
// changing another's (the values here are small: [], {}, one rule).
function structuredCloneIfObject<T>(v: T): T {
  return typeof v === 'object' && v !== null ? structuredClone(v) : v;
}

class Wrapped<T> extends Schema<T> {
  override readonly absent: 'optional' | 'default' | undefined;
  protected readonly inner: Schema<unknown>;
  protected readonly shortcut: (input: unknown) => { value: T } | undefined;
  constructor(inner: Schema<unknown>, absent: 'optional' | 'default' | undefined, shortcut: (input: unknown) => { value: T } | undefined) {
    super();
    this.inner = inner;
    this.absent = absent ?? inner.absent;
    this.shortcut = shortcut;
  }
  protected read(input: unknown, issues: Issue[]): T {
    const s = this.shortcut(input);
    return s ? s.value : (this.inner.run(input, issues) as T);
  }
}

class Transformed<T, U> extends Schema<U> {
  protected readonly inner: Schema<T>;
  protected readonly to: (value: T) => U;
  constructor(inner: Schema<T>, to: (value: T) => U) {
    super();
    this.inner = inner;
    this.to = to;
  }
  protected read(input: unknown, issues: Issue[]): U {
    const start = issues.length;
    const value = this.inner.run(input, issues);
    if (issues.length > start) return value as unknown as U;
    try {
      return this.to(value);
    } catch (err) {
      issues.push(soft((err as Error).message));
      return undefined as U;
    }
  }
}

// ---- strings --------------------------------------------------------------------------------

class StringSchema extends Schema<string> {
  protected read(input: unknown, issues: Issue[]): string {
    if (typeof input !== 'string') issues.push(typeIssue('string', input));
    return input as string;
  }
  min(n: number, message?: string): this {
    return this.with(sizeCheck('min', n, message).test, true);
  }
  max(n: number, message?: string): this {
    return this.with(sizeCheck('max', n, message).test, true);
  }
  regex(re: RegExp, message?: string): this {
    return this.with((v, issues) => {
      re.lastIndex = 0;
      if (!re.test(v)) issues.push(soft(message ?? `Invalid string: must match pattern ${String(re)}`));
    });
  }
  startsWith(prefix: string, message?: string): this {
    return this.with((v, issues) => {
      if (!v.startsWith(prefix)) issues.push(soft(message ?? `Invalid string: must start with "${prefix}"`));
    });
  }
  /** RFC 3339 date and time with seconds, Z or an offset (zod's datetime({ offset: true })). */
  datetime(): this {
    return this.regex(DATETIME, 'Invalid ISO datetime');
  }
}

// A calendar date (29 February in leap years only), T, hh:mm:ss with optional fraction, Z or ±hh:mm.
const LEAP_DAY = '(?:\\d\\d(?:[2468][048]|[13579][26]|0[48])|(?:[02468][048]|[13579][26])00)-02-29';
const MONTH_DAY = '\\d{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\\d|30)|02-(?:0[1-9]|1\\d|2[0-8]))';
const DATETIME = new RegExp(`^(?:${LEAP_DAY}|${MONTH_DAY})T(?:[01]\\d|2[0-3]):[0-5]\\d:[0-5]\\d(?:\\.\\d+)?(?:Z|[+-](?:[01]\\d|2[0-3]):[0-5]\\d)$`);

/** A URL `new URL()` accepts; the value is trimmed and loses tabs and newlines (as the URL parser reads it). */
class UrlSchema extends Schema<string> {
  protected read(input: unknown, issues: Issue[]): string {
    if (typeof input !== 'string') {
      issues.push(typeIssue('string', input));
      return input as string;
    }
    const trimmed = input.trim();
    if (!URL.canParse(trimmed)) {
      issues.push(soft('Invalid URL'));
      return input;
    }
    return trimmed.replace(/[\t\n\r]/g, '');
  }
}

// ---- numbers, booleans, literals ------------------------------------------------------------

class NumberSchema extends Schema<number> {
  protected readonly coerce: boolean;
  constructor(coerce: boolean) {
    super();
    this.coerce = coerce;
  }
  protected read(input: unknown, issues: Issue[]): number {
    const v = this.coerce ? Number(input) : input;
    if (typeof v !== 'number' || !Number.isFinite(v)) issues.push(typeIssue('number', v));
    return v as number;
  }
  /** A whole number within the safe integer range. */
  int(): this {
    return this.with((v, issues) => {
      if (!Number.isInteger(v)) issues.push({ path: [], message: `Invalid input: expected int, received number`, continue: false });
      else if (v > Number.MAX_SAFE_INTEGER) issues.push(soft(`Too big: expected int to be <=${Number.MAX_SAFE_INTEGER}`));
      else if (v < Number.MIN_SAFE_INTEGER) issues.push(soft(`Too small: expected int to be >=${Number.MIN_SAFE_INTEGER}`));
    });
  }
  min(n: number): this {
    return this.with((v, issues) => {
      if (v < n) issues.push(soft(`Too small: expected number to be >=${n}`));
    });
  }
  max(n: number): this {
    return this.with((v, issues) => {
      if (v > n) issues.push(soft(`Too big: expected number to be <=${n}`));
    });
  }
}

class BooleanSchema extends Schema<boolean> {
  protected read(input: unknown, issues: Issue[]): boolean {
    if (typeof input !== 'boolean') issues.push(typeIssue('boolean', input));
    return input as boolean;
  }
}

class UnknownSchema extends Schema<unknown> {
  protected read(input: unknown): unknown {
    return input;
  }
}

/**
 * One of a few fixed values (zod's enum and literal); a single value reads "expected X". With
 * `message`, that message instead (zod's union of literals that none matched: "Invalid input").
 */
class OneOf<const V extends string | number> extends Schema<V> {
  readonly values: readonly V[];
  readonly #message: string | undefined;
  constructor(values: readonly V[], message?: string) {
    super();
    this.values = values;
    this.#message = message;
  }
  protected read(input: unknown, issues: Issue[]): V {
    if (!(this.values as readonly unknown[]).includes(input)) {
      const message = this.#message ?? (this.values.length === 1 ? `Invalid input: expected ${quote(this.values[0])}` : `Invalid option: expected one of ${this.values.map(quote).join('|')}`);
      issues.push({ path: [], message });
    }
    return input as V;
  }
}

// ---- arrays, tuples, records ----------------------------------------------------------------

class ArraySchema<T> extends Schema<T[]> {
  protected readonly item: Schema<T>;
  protected cap: { n: number; message: string } | undefined;
  constructor(item: Schema<T>) {
    super();
    this.item = item;
  }
  protected read(input: unknown, issues: Issue[]): T[] {
    if (!Array.isArray(input)) {
      issues.push(typeIssue('array', input));
      return input as T[];
    }
    // too long: said alone, the items not read
    if (this.cap && input.length > this.cap.n) {
      issues.push({ path: [], message: this.cap.message, continue: false });
      return input as T[];
    }
    const out = new Array<T>(input.length);
    for (let i = 0; i < input.length; i++) out[i] = child(this.item, input[i], i, issues);
    return out;
  }
  min(n: number, message?: string): this {
    return this.with(sizeCheck('min', n, message).test, true);
  }
  max(n: number, message?: string): this {
    const text = message ?? `Too big: expected array to have <=${n} items`;
    const copy = this.with(sizeCheck('max', n, message).test, true);
    copy.cap = !this.cap || n < this.cap.n ? { n, message: text } : this.cap;
    return copy;
  }
}

type TupleOut<S extends readonly Schema<unknown>[]> = { -readonly [K in keyof S]: Infer<S[K]> };

class TupleSchema<S extends readonly Schema<unknown>[]> extends Schema<TupleOut<S>> {
  protected readonly items: S;
  constructor(items: S) {
    super();
    this.items = items;
  }
  protected read(input: unknown, issues: Issue[]): TupleOut<S> {
    if (!Array.isArray(input)) {
      issues.push(typeIssue('tuple', input));
      return input as TupleOut<S>;
    }
    const n = this.items.length;
    if (input.length < n) {
      issues.push({ path: [], message: `Too small: expected array to have >=${n} items` });
      return input as TupleOut<S>;
    }
    if (input.length > n) issues.push({ path: [], message: `Too big: expected array to have <=${n} items` });
    return this.items.map((s, i) => child(s, input[i], i, issues)) as TupleOut<S>;
  }
}

class RecordSchema<T> extends Schema<Record<string, T>> {
  protected readonly valueSchema: Schema<T>;
  constructor(value: Schema<T>) {
    super();
    this.valueSchema = value;
  }
  protected read(input: unknown, issues: Issue[]): Record<string, T> {
    const proto = isObject(input) ? (Object.getPrototypeOf(input) as object | null) : undefined;
    if (proto !== Object.prototype && proto !== null) {
      issues.push(typeIssue('record', input));
      return input as Record<string, T>;
    }
    const out: Record<string, T> = {};
    for (const key of Object.keys(input as object)) {
      const v = child(this.valueSchema, (input as Record<string, unknown>)[key], key, issues);
      if (key === '__proto__') Object.defineProperty(out, key, { value: v, enumerable: true, writable: true, configurable: true });
      else out[key] = v;
    }
    return out;
  }
}

// ---- objects --------------------------------------------------------------------------------

export type Shape = Record<string, Schema<unknown>>;
export type Infer<S> = S extends Schema<infer T> ? T : never;
type OptionalKeys<S extends Shape> = { [K in keyof S]: undefined extends Infer<S[K]> ? K : never }[keyof S];
type Flat<T> = { [K in keyof T]: T[K] } & {};
export type ObjectOut<S extends Shape> = Flat<{ [K in Exclude<keyof S, OptionalKeys<S>>]: Infer<S[K]> } & { [K in OptionalKeys<S>]?: Infer<S[K]> }>;

class ObjectSchema<S extends Shape> extends Schema<ObjectOut<S>> {
  readonly shape: S;
  protected readonly isStrict: boolean;
  constructor(shape: S, strict: boolean) {
    super();
    this.shape = shape;
    this.isStrict = strict;
  }
  /** Keys outside the shape are problems (otherwise they are dropped from the value). */
  strict(): ObjectSchema<S> {
    return new ObjectSchema(this.shape, true);
  }
  protected read(input: unknown, issues: Issue[]): ObjectOut<S> {
    if (!isObject(input)) {
      issues.push(typeIssue('object', input));
      return input as ObjectOut<S>;
    }
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(this.shape)) {
      const schema = this.shape[key]!;
      const present = key in input;
      if (!present && schema.absent === 'optional') continue;
      const own: Issue[] = [];
      const v = schema.run(input[key], own);
      for (const i of own) issues.push({ path: [key, ...i.path], message: i.message, continue: i.continue });
      if (!present && schema.absent === undefined && own.length === 0) {
        issues.push({ path: [key], message: 'Invalid input: expected nonoptional, received undefined' });
        continue;
      }
      if (v !== undefined || present) out[key] = v;
    }
    if (this.isStrict) {
      const unknownKeys: string[] = [];
      for (const key in input) if (!Object.hasOwn(this.shape, key)) unknownKeys.push(key);
      if (unknownKeys.length) issues.push(soft(`Unrecognized key${unknownKeys.length > 1 ? 's' : ''}: ${unknownKeys.map(quote).join(', ')}`));
    }
    return out as ObjectOut<S>;
  }
}

/** Objects told apart by the value of one key (a literal or a one-value enum in each shape). */
class Tagged<const K extends string, O extends ObjectSchema<Shape>> extends Schema<Infer<O>> {
  protected readonly key: K;
  protected readonly byTag = new Map<unknown, O>();
  constructor(key: K, options: readonly O[]) {
    super();
    this.key = key;
    for (const o of options) {
      const tag = o.shape[key];
      if (!(tag instanceof OneOf)) throw new Error(`the option has no literal "${key}"`);
      for (const v of tag.values) this.byTag.set(v, o);
    }
  }
  protected read(input: unknown, issues: Issue[]): Infer<O> {
    if (!isObject(input)) {
      issues.push(typeIssue('object', input));
      return input as Infer<O>;
    }
    const option = this.byTag.get(input[this.key]);
    if (!option) {
      const expected = [...this.byTag.keys()].map((v) => `'${String(v)}'`).join(' | ');
      issues.push({ path: [this.key], message: `Invalid discriminator value. Expected ${expected}` });
      return input as Infer<O>;
    }
    return option.run(input, issues) as Infer<O>;
  }
}

// ---- the constructors -----------------------------------------------------------------------

export const string = (): StringSchema => new StringSchema();
export const url = (): Schema<string> => new UrlSchema();
export const number = (): NumberSchema => new NumberSchema(false);
/** A number from any value as Number() reads it (environment variables). */
export const coercedNumber = (): NumberSchema => new NumberSchema(true);
export const boolean = (): Schema<boolean> => new BooleanSchema();
export const unknown = (): Schema<unknown> => new UnknownSchema();
export const literal = <const V extends string | number>(value: V): OneOf<V> => new OneOf([value]);
export const oneOf = <const V extends string | number>(values: readonly V[], message?: string): OneOf<V> => new OneOf(values, message);
export const array = <T>(item: Schema<T>): ArraySchema<T> => new ArraySchema(item);
export const tuple = <const S extends readonly Schema<unknown>[]>(items: S): Schema<TupleOut<S>> => new TupleSchema(items);
export const record = <T>(value: Schema<T>): Schema<Record<string, T>> => new RecordSchema(value);
export const object = <S extends Shape>(shape: S): ObjectSchema<S> => new ObjectSchema(shape, false);
export const tagged = <const K extends string, O extends ObjectSchema<Shape>>(key: K, options: readonly O[]): Schema<Infer<O>> => new Tagged(key, options);
