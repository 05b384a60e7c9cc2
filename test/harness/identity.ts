// Workload certificates for test pods, as cert-manager or SPIRE would provide them: a folder
// per pod with tls.crt, tls.key and ca.crt (TSMESH_TLS_DIR), signed by one embedded CA.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createCA, type CA } from '../../injector/ca/index.ts';
import { createCsr, generateP256, privateKeyToPem } from '../../src/identity/x509.ts';
import { spiffeIdOf } from '../../src/identity/spiffe.ts';

export { createCA, type CA };

export async function writeWorkloadIdentity(ca: CA, dir: string, who: { namespace: string; serviceAccount: string }): Promise<string> {
  const keys = await generateP256();
  const spiffeId = spiffeIdOf({ trustDomain: ca.trustDomain, ...who });
  const issued = await ca.issue(await createCsr(keys, [spiffeId]), who);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'tls.key'), await privateKeyToPem(keys.privateKey));
  await writeFile(join(dir, 'tls.crt'), issued.certChain.join(''));
  await writeFile(join(dir, 'ca.crt'), issued.trustAnchors.join(''));
  return dir;
}
