import { test } from 'node:test';
import assert from 'node:assert/strict';
import { requestAccount, type RequestAccountInput } from './account.ts';
import type { AccessLine } from './mesh.ts';

const line = (direction: 'inbound' | 'outbound', path: string, more: Partial<AccessLine> = {}): AccessLine => ({ type: 'access', direction, path, status: 200, duration_ms: 1.5, ...more });

const input = (more: Partial<RequestAccountInput> = {}): RequestAccountInput => ({
  n: 1,
  url: 'http://pod-service/?request=1',
  reply: { status: 200, body: '{"message":"Hello from pod-a"}\n', ms: 3.25, client: 'curl' },
  outbound: [line('outbound', '/?request=2', { upstream_pod: 'pod-a' }), line('outbound', '/?request=1', { duration_ms: 2.5, upstream_pod: 'pod-a', upstream: '10.77.0.10:8080' })],
  inbound: [line('inbound', '/?request=1', { duration_ms: 1.25, upstream: '10.77.0.10:8080' })],
  appMs: 0.5,
  entry: { from: 'pod-b app -> iptables', where: '10.96.0.10:80 -> outbound 127.0.0.1:15001' },
  podAIP: '10.77.0.10',
  ...more,
});

test('an account names the answer, the client and each hop with its own access line and time', () => {
  const { lines, ok } = requestAccount(input());
  assert.equal(ok, true);
  assert.equal(lines[1], 'Request 1: pod-b  GET http://pod-service/?request=1  ->  200 "Hello from pod-a"  (3.25 ms at the client, curl)');
  assert.match(lines[2]!, /^ {2}1\. pod-b app -> iptables +-> pod-b sidecar +10\.96\.0\.10:80 -> outbound 127\.0\.0\.1:15001 +2\.50 ms {2}chose endpoint pod-a \(10\.77\.0\.10:8080\) of pod-service$/);
  assert.match(lines[3]!, /^ {2}2\. pod-b sidecar +-> pod-a sidecar +inbound {2}10\.77\.0\.10:15006 +1\.25 ms {2}mesh hop/);
  assert.match(lines[4]!, /^ {2}3\. pod-a sidecar +-> pod-a app +10\.77\.0\.10:8080 +0\.50 ms {2}app time$/);
  // the columns line up
  const hops = lines.slice(2, 5);
  assert.equal(new Set(hops.map((l) => l.indexOf('-> pod-'))).size, 1, lines.join('\n'));
  assert.equal(new Set(hops.map((l) => l.indexOf(' ms '))).size, 1, lines.join('\n'));
  assert.equal(lines[5], '  mTLS: none (the mesh hop was plaintext)');
});

test('with mTLS the account names both identities: the caller as pod-a verified it, pod-a as its app was told', () => {
  const { lines } = requestAccount(
    input({
      reply: { status: 200, body: JSON.stringify({ message: 'Hello from pod-a', sawClientCert: 'By=spiffe://td/ns/default/sa/pod-a;URI=spiffe://td/ns/default/sa/pod-b' }), ms: 1, client: 'curl' },
      inbound: [line('inbound', '/?request=1', { peer: 'spiffe://td/ns/default/sa/pod-b' })],
    }),
  );
  assert.equal(lines[5], "  mTLS: pod-b is spiffe://td/ns/default/sa/pod-b (verified by pod-a's sidecar), pod-a is spiffe://td/ns/default/sa/pod-a (verified by pod-b's sidecar)");
});

test('a request that missed a sidecar is not ok, and the account says which line is missing', () => {
  const { lines, ok } = requestAccount(input({ inbound: [] }));
  assert.equal(ok, false);
  assert.match(lines[3]!, /inbound {2}10\.77\.0\.10:15006 +\? +mesh hop/);
  assert.ok(lines.includes("  (no inbound access line from pod-a's sidecar)"));

  const bypassed = requestAccount(input({ outbound: [] }));
  assert.equal(bypassed.ok, false);
  assert.ok(bypassed.lines.some((l) => l.includes('did not go through it')));
});

test('an answer from another pod, or no answer at all, is not ok', () => {
  assert.equal(requestAccount(input({ outbound: [line('outbound', '/?request=1', { upstream_pod: 'pod-c' })] })).ok, false);
  const none = requestAccount(input({ reply: { status: 0, body: '', ms: 10, client: 'curl', error: 'Connection refused' } }));
  assert.equal(none.ok, false);
  assert.match(none.lines[1]!, /-> {2}--- no answer: Connection refused/);
  const text = requestAccount(input({ reply: { status: 503, body: 'upstream down', ms: 1, client: 'curl' } }));
  assert.equal(text.ok, false);
  assert.match(text.lines[1]!, /-> {2}503 "upstream down"/);
});
