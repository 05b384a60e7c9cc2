import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readiness } from './readiness.ts';

test('ready only when not draining, the registry loaded and no certificate awaited; every reason listed', () => {
  assert.deepEqual(readiness({ draining: false, registryLoaded: true, awaitingCertificate: false }), { ok: true, reasons: [] });
  assert.deepEqual(readiness({ draining: true, registryLoaded: false, awaitingCertificate: true }), {
    ok: false,
    reasons: ['draining', 'registry not loaded', 'no workload certificate yet'],
  });
  assert.deepEqual(readiness({ draining: false, registryLoaded: false, awaitingCertificate: false }), { ok: false, reasons: ['registry not loaded'] });
});
