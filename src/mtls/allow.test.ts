import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compileAllowList } from './allow.ts';
import { xfccValue } from './xfcc.ts';
import { podAnnotations, readAnnotations } from '../config/annotations.ts';

const TD = 'cluster.local';
const id = (ns: string, sa: string, td = TD) => `spiffe://${td}/ns/${ns}/sa/${sa}`;

test('an empty allow list admits whoever the mTLS mode let in, identified or not', () => {
  const allow = compileAllowList([], TD);
  assert.deepEqual(allow.check(id('a', 'b')), { allowed: true });
  assert.deepEqual(allow.check(null), { allowed: true });
});

test('entries: full SPIFFE IDs, ns/NS/sa/SA and ns/NS, with trust-domain awareness', () => {
  const allow = compileAllowList(['spiffe://partner.example/ns/billing/sa/api', 'ns/default/sa/pod-b', 'ns/monitoring'], TD);
  const yes = [id('billing', 'api', 'partner.example'), id('billing', 'api', 'PARTNER.example'), id('default', 'pod-b'), id('monitoring', 'prometheus'), id('monitoring', 'grafana')];
  const no = [
    id('billing', 'api'), // the full ID names another trust domain
    id('default', 'pod-b', 'partner.example'), // ns/ forms mean our own trust domain only
    id('monitoring', 'x', 'evil.example'),
    id('default', 'pod-c'),
    id('default', 'Pod-B'), // paths are case-sensitive
    id('monitoring-2', 'x'), // no prefix matching
    'spiffe://cluster.local/ns/default/sa/pod-b/extra',
    'spiffe://cluster.local/ns/default',
  ];
  for (const p of yes) assert.deepEqual(allow.check(p), { allowed: true }, p);
  for (const p of no) assert.equal(allow.check(p).allowed, false, p);
  const denied = allow.check(id('default', 'pod-c'));
  assert.equal(denied.allowed, false);
  assert.match((denied as { reason: string }).reason, /spiffe:\/\/cluster.local\/ns\/default\/sa\/pod-c is not allowed to call this workload; allowed: spiffe:\/\/partner.example\/ns\/billing\/sa\/api, ns\/default\/sa\/pod-b, ns\/monitoring/);
  const anon = allow.check(null);
  assert.equal(anon.allowed, false);
  assert.match((anon as { reason: string }).reason, /no verified identity/);
});

test('the list works on what the annotation parser gives, and refuses malformed entries', () => {
  const { values, problems } = readAnnotations(podAnnotations, { 'tsmesh.io/allow': ' ns/shop/sa/cart , ns/ops ' });
  assert.deepEqual(problems, []);
  const allow = compileAllowList(values.allow, 'Cluster.Local');
  assert.equal(allow.check(id('shop', 'cart')).allowed, true);
  assert.equal(allow.check(id('ops', 'anything')).allowed, true);
  assert.equal(allow.check(id('shop', 'checkout')).allowed, false);
  assert.throws(() => compileAllowList(['sa/x'], TD), /allow entry "sa\/x" is not/);
  assert.throws(() => compileAllowList(['spiffe://td/ns/a'], TD), /not a SPIFFE ID/);
});

test('x-forwarded-client-cert: By=<own>;URI=<peer>, and no header without an authenticated peer', () => {
  assert.equal(xfccValue(id('default', 'pod-a'), id('default', 'pod-b')), 'By=spiffe://cluster.local/ns/default/sa/pod-a;URI=spiffe://cluster.local/ns/default/sa/pod-b');
  assert.equal(xfccValue(id('default', 'pod-a'), null), undefined);
});
