import { test } from 'node:test';
import assert from 'node:assert/strict';
import { hasIpv6, hasNetAdmin } from './apply.ts';

void test('hasNetAdmin reads bit 12 of CapEff', () => {
  assert.equal(hasNetAdmin('Name:\tnode\nCapEff:\t000001ffffffffff\n'), true);
  assert.equal(hasNetAdmin('CapEff:\t0000000000001000\n'), true);
  assert.equal(hasNetAdmin('CapEff:\t00000000a80425fb\n'), false); // Docker's default set: no NET_ADMIN
  assert.equal(hasNetAdmin('CapEff:\t0000000000000000\n'), false);
});

void test('hasIpv6 counts global and unique-local addresses, not loopback or link-local', () => {
  const lo = '00000000000000000000000000000001 01 80 10 80       lo';
  const linkLocal = 'fe80000000000000a8c1abfffe123456 02 40 20 80     eth0';
  const ula = 'fd770000000000000000000000000010 02 40 00 80     eth0';
  assert.equal(hasIpv6([lo, linkLocal].join('\n')), false);
  assert.equal(hasIpv6([lo, linkLocal, ula].join('\n')), true);
  assert.equal(hasIpv6(''), false);
});
