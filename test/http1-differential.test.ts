// Differential check of the raw-socket path's HTTP/1.1 request parser against llhttp (Node's
// own parser, strict, as node:http's server runs it): a short seeded run of fuzz/http1-diff.ts.
// For every input, both parsers accept each message with the same method, target, version,
// headers and body framing, or ours refuses it. The 10-minute run is recorded in
// bench/RESULTS.md ("Soak and fuzz runs").
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compare, llhttp, ours, run } from '../fuzz/http1-diff.ts';

test('the comparison sees what each parser read (pipelined messages, chunked framing, refusals)', () => {
  const pipelined = Buffer.from('POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;e=1\r\nabc\r\n0\r\nT: 1\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n', 'latin1');
  for (const reading of [ours(pipelined), llhttp(pipelined)]) {
    assert.deepEqual(reading.messages.map((m) => [m.method, m.target, m.bodyBytes]), [['POST', '/a', 3], ['GET', '/b', 0]]);
    assert.equal(reading.refused, false);
  }
  assert.equal(compare(pipelined), undefined);
  const smuggle = Buffer.from('POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 'latin1');
  assert.equal(llhttp(smuggle).refused, true);
  assert.equal(ours(smuggle).refused, true);
});

test('seeded differential run: ours never accepts what llhttp refuses or reads differently', () => {
  for (const seed of [1, 2]) {
    const r = run(seed, (n) => n >= 6000);
    assert.equal(r.finding, undefined, r.finding && `seed ${seed} input ${r.finding.n}: ${r.finding.why}\n${JSON.stringify(r.finding.input.toString('latin1'))}`);
    assert.ok(r.bothAccepted > r.inputs / 4, `most inputs are compared message by message (${r.bothAccepted} of ${r.inputs})`);
  }
});
