// A throwaway CA and one certificate per pod, made with openssl into the run's temp folder.
// Each pod's folder has cert-manager's names (tls.crt, tls.key, ca.crt), the layout that
// TSMESH_TLS_DIR reads, so nginx and the tsmesh sidecars use the same files.
import { execFile } from 'node:child_process';
import { mkdir, writeFile, copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BenchError } from './errors.ts';

const run = promisify(execFile);

export interface PodCert {
  readonly dir: string;
  readonly cert: string;
  readonly key: string;
  readonly ca: string;
  /** The DNS name in the certificate (nginx verifies names, not SPIFFE URIs). */
  readonly dnsName: string;
  readonly spiffeId: string;
}

async function openssl(args: string[]): Promise<void> {
  try {
    await run('openssl', args);
  } catch (err) {
    throw new BenchError('BENCH_CERTS', `openssl ${args[0]} failed: ${(err as { stderr?: string }).stderr ?? (err as Error).message}`, { cause: err });
  }
}

const ecKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

/** Makes a CA in `root`/ca and a leaf per pod in `root`/<pod> (P-256, one day, SPIFFE URI + DNS SAN). */
export async function makeCerts(root: string, pods: readonly string[], namespace = 'default', trustDomain = 'cluster.local'): Promise<Map<string, PodCert>> {
  const caDir = join(root, 'ca');
  await mkdir(caDir, { recursive: true });
  const caCert = join(caDir, 'ca.crt');
  const caKey = join(caDir, 'ca.key');
  await openssl([
    'req', '-x509', ...ecKey, '-keyout', caKey, '-out', caCert, '-days', '1', '-subj', '/O=tsmesh-bench/CN=tsmesh bench CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  const out = new Map<string, PodCert>();
  for (const pod of pods) {
    const dir = join(root, pod);
    await mkdir(dir, { recursive: true });
    const dnsName = `${pod}.${namespace}.svc`;
    const spiffeId = `spiffe://${trustDomain}/ns/${namespace}/sa/${pod}`;
    const ext = join(dir, 'ext.cnf');
    await writeFile(
      ext,
      [
        `subjectAltName=URI:${spiffeId},DNS:${dnsName}`,
        'basicConstraints=critical,CA:FALSE',
        'keyUsage=critical,digitalSignature',
        'extendedKeyUsage=serverAuth,clientAuth',
      ].join('\n') + '\n',
    );
    const key = join(dir, 'tls.key');
    const csr = join(dir, 'tls.csr');
    const cert = join(dir, 'tls.crt');
    await openssl(['req', ...ecKey, '-keyout', key, '-out', csr, '-subj', `/O=tsmesh-bench/CN=${pod}`]);
    await openssl(['x509', '-req', '-in', csr, '-CA', caCert, '-CAkey', caKey, '-set_serial', String(Date.now() + out.size), '-days', '1', '-extfile', ext, '-out', cert]);
    const ca = join(dir, 'ca.crt');
    await copyFile(caCert, ca);
    out.set(pod, { dir, cert, key, ca, dnsName, spiffeId });
  }
  return out;
}
