// The HTTP access line is serialized by src/log/access.ts, not by pino's generic path: it must be
// the very line pino would have written (same fields, order, escaping, level/time/bindings), and
// strings from the request must stay valid JSON whatever bytes they hold.
import { test, mock } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { createLogger, type Logger } from './log.ts';
import { logHttp, num, type HttpAccess } from './access.ts';

const base: HttpAccess = {
  direction: 'outbound',
  method: 'GET',
  authority: 'pod-service',
  path: '/hello',
  protocol: 'HTTP/1.1',
  status: 200,
  duration_ms: 1.234,
  upstream: '10.0.0.2:8080',
  upstream_service: 'pod-service.default',
  upstream_pod: 'pod-a',
  bytes_in: 12,
  bytes_out: 345,
  client: '127.0.0.1',
  peer: undefined,
  error: undefined,
  attempts: 1,
  upstream_ms: 0.5,
  grpc_status: undefined,
  route_parent: undefined,
  route: undefined,
  trace_id: undefined,
  span_id: undefined,
};

// request strings as a client could send them (HTTP/2 paths are decoded as latin1; control
// characters reach the log through HTTP/2 and through the authority)
const PATHS = [
  '/q?a="quoted"&b=\'single\'',
  '/back\\slash\\\\two',
  '/ctl\u0000\u0001\u0007\b\t\n\u000b\f\r\u001b\u001f\u007f-end',
  '/non-ascii/\u00c3\u00a9/é/日本/😀',
  '/long/' + 'x"\\'.repeat(60), // longer than 100 characters: pino's other escaping path
  '',
];

const cases: HttpAccess[] = [
  base,
  ...PATHS.map((path) => ({ ...base, path, authority: `a"b\\c\u0001é:${path.length}` })),
  { ...base, direction: 'inbound', peer: null, attempts: undefined, upstream_ms: undefined, upstream_service: undefined, upstream_pod: undefined, error: 'upstream-reset', status: 0 },
  { ...base, direction: 'inbound', peer: 'spiffe://cluster.local/ns/default/sa/pod-b', protocol: 'HTTP/2', grpc_status: 14, trace_id: 'a'.repeat(32), span_id: 'b'.repeat(16) },
  { ...base, route_parent: 'pod-service.default', route: null, client: undefined, upstream: undefined },
  { ...base, route_parent: 'pod-service.default', route: 'HTTPRoute/default/split', duration_ms: Number.NaN, upstream_ms: Number.POSITIVE_INFINITY },
];

/** A logger as the sidecar makes it (src/log/log.ts), writing into `lines`, and its access child. */
function sidecarLogger(lines: string[], make: (dest: NodeJS.WritableStream) => Logger = (destination) => createLogger({ name: 'tsmesh-proxy/pod-b', destination })): Logger {
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      cb();
    },
  });
  return make(destination).child({ component: 'access' });
}

test('the access line is byte for byte the line pino writes, for every kind of request string', () => {
  mock.timers.enable({ apis: ['Date'], now: Date.UTC(2026, 11, 7, 6, 53, 12, 7) });
  try {
    for (const a of cases) {
      const ours: string[] = [];
      const theirs: string[] = [];
      logHttp(sidecarLogger(ours), a);
      sidecarLogger(theirs).child({ type: 'access', kind: 'http' }).info({ ...a }, `${a.direction} ${a.method} ${a.authority}${a.path} ${a.status}`);
      assert.equal(ours.length, 1);
      assert.equal(ours[0], theirs[0], `path ${JSON.stringify(a.path)}`);
      const parsed = JSON.parse(ours[0]!) as Record<string, unknown>;
      assert.equal(parsed['path'], a.path, 'the path round-trips');
      assert.equal(parsed['authority'], a.authority);
      assert.equal(parsed['time'], '2026-12-07T06:53:12.007Z');
    }
  } finally {
    mock.timers.reset();
  }
});

test('the time is pino\'s ISO time at every millisecond of a second, and across seconds', () => {
  const ours: string[] = [];
  const log = sidecarLogger(ours);
  const times = [Date.UTC(2026, 11, 7, 6, 53, 12, 0), Date.UTC(2026, 11, 7, 6, 53, 12, 9), Date.UTC(2026, 11, 7, 6, 53, 12, 99), Date.UTC(2026, 11, 7, 6, 53, 12, 999), Date.UTC(2026, 11, 7, 6, 53, 13, 10), Date.UTC(2026, 11, 31, 23, 59, 59, 999), Date.UTC(2027, 0, 1)];
  for (const now of times) {
    mock.timers.enable({ apis: ['Date'], now });
    try {
      logHttp(log, base);
    } finally {
      mock.timers.reset();
    }
  }
  assert.deepEqual(
    ours.map((l) => (JSON.parse(l) as { time: string }).time),
    times.map((t) => new Date(t).toISOString()),
  );
});

test('a lone surrogate in the path still gives valid JSON (escaped)', () => {
  const ours: string[] = [];
  logHttp(sidecarLogger(ours), { ...base, path: '/half-\ud800-pair' });
  assert.match(ours[0]!, /"path":"\/half-\\ud800-pair"/);
  assert.equal((JSON.parse(ours[0]!) as { path: string }).path, '/half-\ud800-pair');
});

test('a logger the line cannot be reproduced for (a mixin) keeps pino\'s path; levels above info write nothing', () => {
  const lines: string[] = [];
  const log = sidecarLogger(lines, (destination) => pino({ mixin: () => ({ extra: 1 }) }, destination));
  logHttp(log, base);
  assert.equal((JSON.parse(lines[0]!) as { extra: number; path: string }).extra, 1);
  const quiet: string[] = [];
  const warn = sidecarLogger(quiet);
  warn.level = 'warn';
  logHttp(warn, base);
  assert.deepEqual(quiet, []);
});

test('numbers are written as String(n) writes them: integers, ms rounded to 3 decimals, and anything else', () => {
  const values = [0, -0, 1, 7, 200, 999, 1000, 0.001, 0.01, 0.1, 0.5, 0.123, 1.5, 1.05, 1.005, 12.34, 999999999.999, 1e9, 1e9 + 0.5, 123456789.001, 0.0001, 1 / 3, -1.5, 2 ** 53, 1e21, 1e-7, Number.MAX_VALUE];
  let seed = 17;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  for (let i = 0; i < 200_000; i++) {
    const ms = random() * (i % 3 === 0 ? 10 : i % 3 === 1 ? 10_000 : 1e9);
    values.push(Math.round(ms * 1000) / 1000, Math.round(ms), ms);
  }
  for (const v of values) assert.equal(num(v), String(v), `${v}`);
  assert.equal(num(Number.NaN), 'null');
  assert.equal(num(Number.POSITIVE_INFINITY), 'null');
});
