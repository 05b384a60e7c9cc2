// Reading certificates with node:crypto (./certificates.ts) agrees with @peculiar/x509 (./x509.ts),
// which the CA builds them with: bundles in order, URI SANs among other names, clear errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readCertificates, certificateUris } from './certificates.ts';
import { parseCertificates, uriSans } from './x509.ts';

/** A self-signed P-256 certificate with `san` as its subjectAltName (openssl syntax), or none. */
function selfSigned(cn: string, san?: string): string {
  return execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', '/dev/null', '-days', '1', '-subj', `/CN=${cn}`, ...(san ? ['-addext', `subjectAltName=${san}`] : [])], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
}

test('a bundle is read in order; URI SANs come out among DNS and IP names, as @peculiar/x509 reads them', () => {
  const bundle = [
    selfSigned('leaf', 'DNS:pod-a.default.svc,URI:spiffe://cluster.local/ns/default/sa/pod-a,IP:10.0.0.1,URI:https://example.test/a%22b'),
    'junk between blocks\n',
    selfSigned('no-san'),
    selfSigned('two', 'URI:spiffe://cluster.local/ns/a/sa/one,URI:spiffe://cluster.local/ns/a/sa/two'),
  ].join('');
  const certs = readCertificates(bundle);
  assert.deepEqual(certs.map((c) => c.subject), ['CN=leaf', 'CN=no-san', 'CN=two']);
  assert.deepEqual(certs.map(certificateUris), [['spiffe://cluster.local/ns/default/sa/pod-a', 'https://example.test/a%22b'], [], ['spiffe://cluster.local/ns/a/sa/one', 'spiffe://cluster.local/ns/a/sa/two']]);
  assert.deepEqual(certs.map(certificateUris), parseCertificates(bundle).map(uriSans));
});

test('no certificate, or one that is not DER inside, is a clear error', () => {
  assert.throws(() => readCertificates('-----BEGIN PRIVATE KEY-----\nMIG\n-----END PRIVATE KEY-----\n'), /no "CERTIFICATE" PEM block found/);
  assert.throws(() => readCertificates('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n'), /certificate 1 cannot be read/);
});
