// Applying the rules: iptables-save to read what is installed, one iptables-restore
// --noflush transaction to change it (see planRestore), per address family.
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { InitError } from './errors.ts';
import { installedState, planRestore, renderRules, type Family, type InstalledState, type InterceptOptions } from './rules.ts';

/** The two iptables tools of a family, behind an interface so the CLI can be tested end to end. */
export interface Iptables {
  save(family: Family): Promise<string>;
  restore(family: Family, input: string): Promise<void>;
}

const tool = (family: Family, what: 'save' | 'restore') => `ip${family === 6 ? '6' : ''}tables-${what}`;

function run(command: string, args: string[], input: string | undefined, env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') reject(new InitError('TSMESH_INIT_IPTABLES_MISSING', `${command} not found on PATH: install iptables (nf_tables or legacy) in the init image`, { cause: err }));
      else reject(new InitError('TSMESH_INIT_IPTABLES_FAILED', `cannot run ${command}: ${err.message}`, { cause: err }));
    });
    child.stdin.on('error', () => {}); // a tool that exits early closes its stdin; its exit status says why
    child.on('close', (code) => {
      if (code === 0) return resolve(stdout);
      const detail = stderr.trim() || `exit status ${code}`;
      if (/permission denied|operation not permitted|you must be root/i.test(detail)) {
        reject(new InitError('TSMESH_INIT_NO_NET_ADMIN', `${command} was refused (${detail}): the init container needs the NET_ADMIN and NET_RAW capabilities`));
      } else {
        reject(new InitError('TSMESH_INIT_IPTABLES_FAILED', `${command} ${args.join(' ')} failed: ${detail}`));
      }
    });
    child.stdin.end(input ?? '');
  });
}

export function systemIptables(env: NodeJS.ProcessEnv = process.env): Iptables {
  return {
    save: (family) => run(tool(family, 'save'), ['-t', 'nat'], undefined, env),
    restore: async (family, input) => {
      await run(tool(family, 'restore'), ['--noflush'], input, env);
    },
  };
}

/** CAP_NET_ADMIN (bit 12) in the effective set of /proc/self/status's CapEff line. */
export function hasNetAdmin(procStatus: string): boolean {
  const hex = /^CapEff:\s*([0-9a-f]+)/im.exec(procStatus)?.[1];
  if (hex === undefined) return true; // cannot tell: let iptables answer
  return (BigInt(`0x${hex}`) & (1n << 12n)) !== 0n;
}

export async function checkNetAdmin(): Promise<void> {
  let status: string;
  try {
    status = await readFile('/proc/self/status', 'utf8');
  } catch {
    return;
  }
  if (!hasNetAdmin(status)) {
    throw new InitError('TSMESH_INIT_NO_NET_ADMIN', 'this process lacks the NET_ADMIN capability: give the init container capabilities NET_ADMIN and NET_RAW');
  }
}

/**
 * Whether the pod has IPv6 to intercept: a global or unique-local address (scope 0 in
 * /proc/net/if_inet6) on an interface other than lo. Link-local addresses alone do not count.
 */
export function hasIpv6(ifInet6: string): boolean {
  return ifInet6.split('\n').some((line) => {
    const [, , , scope, , name] = line.trim().split(/\s+/);
    return scope === '00' && name !== undefined && name !== 'lo';
  });
}

export async function podHasIpv6(): Promise<boolean> {
  try {
    return hasIpv6(await readFile('/proc/net/if_inet6', 'utf8'));
  } catch {
    return false; // IPv6 disabled in the kernel
  }
}

export interface ApplyResult {
  readonly family: Family;
  readonly before: InstalledState;
  readonly input: string;
}

/** Installs (or with `options` null, removes) the rules for each family. */
export async function applyRules(iptables: Iptables, options: InterceptOptions | null, families: readonly Family[]): Promise<ApplyResult[]> {
  const results: ApplyResult[] = [];
  for (const family of families) {
    const before = installedState(await iptables.save(family));
    const input = planRestore(before, options ? renderRules(options, family) : null);
    await iptables.restore(family, input);
    results.push({ family, before, input });
  }
  return results;
}
