// Parsers for annotation and environment values. Each returns the typed value or throws an
// Error whose message says what is wrong (the caller adds the key).
import { isIP } from 'node:net';

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Go-style durations as Kubernetes users write them: 250ms, 10s, 1m30s, 1h. Milliseconds. */
export function parseDuration(text: string): number {
  const s = text.trim();
  if (s === '0') return 0;
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/y;
  let total = 0;
  let pos = 0;
  while (pos < s.length) {
    re.lastIndex = pos;
    const m = re.exec(s);
    if (!m) throw new Error(`"${text}" is not a duration (use e.g. 500ms, 10s, 1m30s)`);
    total += Number(m[1]) * DURATION_UNITS[m[2]!]!;
    pos = re.lastIndex;
  }
  if (s.length === 0) throw new Error('empty duration');
  return Math.round(total);
}

export function parseBool(text: string): boolean {
  const s = text.trim().toLowerCase();
  if (s === 'true') return true;
  if (s === 'false') return false;
  throw new Error(`"${text}" is not "true" or "false"`);
}

export function parseIntIn(text: string, min: number, max: number): number {
  const s = text.trim();
  if (!/^\d+$/.test(s)) throw new Error(`"${text}" is not a whole number`);
  const n = Number(s);
  if (n < min || n > max) throw new Error(`${n} is outside ${min}..${max}`);
  return n;
}

export function parseRatio(text: string): number {
  const s = text.trim();
  if (!/^(\d+(\.\d*)?|\.\d+)$/.test(s)) throw new Error(`"${text}" is not a number between 0 and 1`);
  const n = Number(s);
  if (n < 0 || n > 1) throw new Error(`${n} is outside 0..1`);
  return n;
}

/** "20%" or "0.2" -> 0.2 */
export function parsePercent(text: string): number {
  const s = text.trim();
  if (s.endsWith('%')) {
    const n = Number(s.slice(0, -1));
    if (!Number.isFinite(n) || s.length === 1 || n < 0 || n > 100) throw new Error(`"${text}" is not a percentage 0%..100%`);
    return n / 100;
  }
  return parseRatio(s);
}

export function parseList(text: string): string[] {
  return text.split(',').map((x) => x.trim()).filter((x) => x.length > 0);
}

export function parsePortList(text: string): number[] {
  const ports = parseList(text).map((p) => {
    const range = /^(\d+)-(\d+)$/.exec(p);
    if (range) throw new Error(`port ranges are not supported ("${p}"); list the ports`);
    try {
      return parseIntIn(p, 1, 65535);
    } catch {
      throw new Error(`"${p}" is not a port (1..65535)`);
    }
  });
  return [...new Set(ports)].sort((a, b) => a - b);
}

export function parseCidrList(text: string): string[] {
  return parseList(text).map((c) => {
    const [addr, len, extra] = c.split('/');
    const family = addr ? isIP(addr) : 0;
    const max = family === 6 ? 128 : 32;
    if (!family || extra !== undefined || (len !== undefined && !(/^\d+$/.test(len) && Number(len) <= max))) {
      throw new Error(`"${c}" is not a CIDR (e.g. 10.0.0.0/8 or fd00::/8)`);
    }
    return len === undefined ? `${addr}/${max}` : c;
  });
}

export function parseEnum<T extends string>(values: readonly T[]) {
  return (text: string): T => {
    const s = text.trim() as T;
    if (!values.includes(s)) throw new Error(`"${text}" is not one of ${values.join(', ')}`);
    return s;
  };
}

/** Kubernetes resource quantities, e.g. 50m, 0.5, 64Mi, 1G. Returned as written. */
export function parseQuantity(text: string): string {
  const s = text.trim();
  if (!/^(\d+(\.\d+)?|\.\d+)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$/.test(s)) throw new Error(`"${text}" is not a Kubernetes quantity (e.g. 50m, 64Mi)`);
  return s;
}
