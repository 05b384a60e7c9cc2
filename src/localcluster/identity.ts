// Workload certificates for a mesh on one machine (the demo, tests, the benchmark), as
// cert-manager or SPIRE would provide them in a cluster: one embedded CA, and a folder per pod
// with tls.crt, tls.key and ca.crt for the sidecar's TSMESH_TLS_DIR.
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createCA, type CA } from '../../injector/ca/index.ts';
import { createCsr, generateP256, privateKeyToPem } from '../identity/x509.ts';
import { spiffeIdOf } from '../identity/spiffe.ts';

export { createCA, type CA };

/**
 * Issues `who`'s certificate into `dir` (created, readable by the sidecar's user: these are
 * throwaway local credentials). Returns the folder.
 */
export async function writeWorkloadIdentity(ca: CA, dir: string, who: { namespace: string; serviceAccount: string }): Promise<string> {
  const keys = await generateP256();
  const spiffeId = spiffeIdOf({ trustDomain: ca.trustDomain, ...who });
  const issued = await ca.issue(await createCsr(keys, [spiffeId]), who);
  await mkdir(dir, { recursive: true });
  await chmod(dir, 0o755);
  await writeFile(join(dir, 'tls.key'), await privateKeyToPem(keys.privateKey), { mode: 0o644 });
  await writeFile(join(dir, 'tls.crt'), issued.certChain.join(''), { mode: 0o644 });
  await writeFile(join(dir, 'ca.crt'), issued.trustAnchors.join(''), { mode: 0o644 });
  return dir;
}
