// A serving certificate from files (tls.crt, tls.key: cert-manager's and kubernetes.io/tls
// names), re-read when they change. Kubernetes updates a mounted Secret by swapping a symlink,
// so the files are polled by content rather than watched by inode.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import type { TlsPair } from './server.ts';

export async function readTlsDir(dir: string): Promise<TlsPair> {
  const [cert, key] = await Promise.all([readFile(join(dir, 'tls.crt'), 'utf8'), readFile(join(dir, 'tls.key'), 'utf8')]);
  let x: X509Certificate;
  try {
    x = new X509Certificate(cert);
  } catch (err) {
    throw new Error(`${join(dir, 'tls.crt')} is not a PEM certificate`, { cause: err });
  }
  let match: boolean;
  try {
    match = x.checkPrivateKey(createPrivateKey(key));
  } catch (err) {
    throw new Error(`${join(dir, 'tls.key')} is not a PEM private key`, { cause: err });
  }
  if (!match) throw new Error(`${join(dir, 'tls.key')} does not match ${join(dir, 'tls.crt')}`);
  return { cert, key };
}

/** Polls `dir` every `intervalMs`; calls `onChange` with each new valid pair, `onError` otherwise. */
export function watchTlsDir(
  dir: string,
  current: TlsPair,
  onChange: (tls: TlsPair) => void,
  onError: (err: Error) => void,
  intervalMs = 5000,
): { stop(): void; check(): Promise<void> } {
  let last = current.cert + current.key;
  let lastError = '';
  const check = async (): Promise<void> => {
    try {
      const pair = await readTlsDir(dir);
      lastError = '';
      if (pair.cert + pair.key === last) return;
      last = pair.cert + pair.key;
      onChange(pair);
    } catch (err) {
      // Mid-update (new cert, old key) is normal for a moment: report each distinct error once.
      if ((err as Error).message !== lastError) onError(err as Error);
      lastError = (err as Error).message;
    }
  };
  const timer = setInterval(() => void check(), intervalMs);
  timer.unref();
  return { stop: () => clearInterval(timer), check };
}
