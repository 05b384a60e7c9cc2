// One benchmark at a time on a machine: the cases listen on fixed loopback addresses, and two
// runs at once would also measure each other. `benchLock` waits while another run (bench/run.ts,
// bench/profile.ts) holds the lock, then holds it until this process exits. The lock is a
// folder (mkdir is atomic) with the holder's PID; a holder that died leaves a stale lock, which
// is taken over.
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { sleep } from './procs.ts';

const LOCK = join(tmpdir(), 'tsmesh-bench.lock');

function holder(): number | undefined {
  try {
    const pid = Number(readFileSync(join(LOCK, 'pid'), 'utf8'));
    process.kill(pid, 0);
    return pid;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM' ? -1 : undefined;
  }
}

/** Waits until no other benchmark runs, then takes the lock (released when this process exits). */
export async function benchLock(say: (text: string) => void): Promise<void> {
  let told = false;
  for (;;) {
    try {
      mkdirSync(LOCK);
      writeFileSync(join(LOCK, 'pid'), String(process.pid));
      process.once('exit', () => rmSync(LOCK, { recursive: true, force: true }));
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const pid = holder();
    if (pid === undefined) {
      await sleep(200); // the holder may be writing its PID; if not, it is gone
      if (holder() === undefined) rmSync(LOCK, { recursive: true, force: true });
      continue;
    }
    if (!told) say(`another benchmark runs (PID ${pid}, lock ${LOCK}): waiting for it to finish`);
    told = true;
    await sleep(2000);
  }
}
