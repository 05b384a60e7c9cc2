// The nat-table rules that send a pod's TCP traffic to its sidecar, as iptables-restore
// input. Pure: options in, text out, so the rules are unit-tested and shown by
// `tsmesh init --dry-run` exactly as they are applied. See docs/interception.md.
//
//   PREROUTING -> TSMESH_INBOUND  -> (admin, inbound listener, excluded ports: RETURN)
//                                 -> TSMESH_IN_REDIRECT -> REDIRECT to the inbound port
//   OUTPUT     -> TSMESH_OUTBOUND -> (the proxy's UID, loopback, excluded ports/CIDRs: RETURN)
//                                 -> TSMESH_REDIRECT    -> REDIRECT to the outbound port
//
// Traffic from the app to its own pod IP leaves through `lo` and meets only the OUTPUT
// chain (the nat table sees a connection once, at its first packet), so it is redirected to
// the outbound listener like a call to any other pod: the sidecar sends it to its own
// inbound port and inbound policy applies. The proxy's own connections (UID) are never
// redirected, so nothing is redirected twice and there is no loop.
import { isIP } from 'node:net';

export const CHAIN_PREFIX = 'TSMESH_';
export const CHAINS = {
  inbound: 'TSMESH_INBOUND',
  inRedirect: 'TSMESH_IN_REDIRECT',
  outbound: 'TSMESH_OUTBOUND',
  redirect: 'TSMESH_REDIRECT',
} as const;

export interface InterceptOptions {
  /** the sidecar's outbound capture listener */
  readonly outboundPort: number;
  /** the sidecar's inbound capture listener */
  readonly inboundPort: number;
  /** the sidecar's admin port: reachable from outside, never redirected */
  readonly adminPort: number;
  /** the UID the sidecar runs as: its traffic is never redirected */
  readonly proxyUid: number;
  /** inbound ports redirected to the sidecar: 'all' or a list ([] = no inbound interception) */
  readonly inboundPorts: 'all' | readonly number[];
  readonly excludeInboundPorts: readonly number[];
  readonly excludeOutboundPorts: readonly number[];
  /** CIDRs of either family; each family's rules take their own */
  readonly excludeOutboundCidrs: readonly string[];
}

/** The contract's values (DESIGN.md, Ports): spelled out once. */
export const DEFAULT_OPTIONS: InterceptOptions = {
  outboundPort: 15001,
  inboundPort: 15006,
  adminPort: 15020,
  proxyUid: 1337,
  inboundPorts: 'all',
  excludeInboundPorts: [],
  excludeOutboundPorts: [],
  excludeOutboundCidrs: [],
};

export type Family = 4 | 6;

const LOOPBACK: Record<Family, string> = { 4: '127.0.0.0/8', 6: '::1/128' };

function cidrFamily(cidr: string): Family | 0 {
  const family = isIP(cidr.split('/')[0] ?? '');
  return family === 4 || family === 6 ? family : 0;
}

const sorted = (ports: Iterable<number>) => [...new Set(ports)].sort((a, b) => a - b);

/**
 * The rules for one address family, as iptables-restore input for the nat table. Applied
 * with `--noflush` (see planRestore), it replaces tsmesh's own chains and leaves every other
 * rule alone.
 */
export function renderRules(options: InterceptOptions, family: Family): string {
  const o = options;
  const { inbound, inRedirect, outbound, redirect } = CHAINS;
  // ports on the pod that are never redirected inbound
  const inboundSkip = sorted([o.adminPort, o.inboundPort, ...o.excludeInboundPorts]);
  const lines: string[] = [
    `# tsmesh interception rules, IPv${family}: apply with ip${family === 6 ? '6' : ''}tables-restore --noflush`,
    '*nat',
    `:${inbound} - [0:0]`,
    `:${inRedirect} - [0:0]`,
    `:${outbound} - [0:0]`,
    `:${redirect} - [0:0]`,
    '# the redirect targets: the sidecar listeners',
    `-A ${inRedirect} -p tcp -j REDIRECT --to-ports ${o.inboundPort}`,
    `-A ${redirect} -p tcp -j REDIRECT --to-ports ${o.outboundPort}`,
    '# inbound: TCP arriving at the pod',
    `-A PREROUTING -p tcp -j ${inbound}`,
  ];
  if (o.inboundPorts === 'all') {
    lines.push(`# admin and inbound listener (sidecar to sidecar), then excluded ports: not redirected`);
    for (const port of inboundSkip) lines.push(`-A ${inbound} -p tcp --dport ${port} -j RETURN`);
    lines.push(`-A ${inbound} -p tcp -j ${inRedirect}`);
  } else {
    const ports = sorted(o.inboundPorts).filter((p) => !inboundSkip.includes(p));
    lines.push(ports.length ? '# only these ports are redirected' : '# no inbound port is redirected');
    for (const port of ports) lines.push(`-A ${inbound} -p tcp --dport ${port} -j ${inRedirect}`);
  }
  lines.push(
    '# outbound: TCP the pod opens',
    `-A OUTPUT -p tcp -j ${outbound}`,
    '# the proxy itself, then loopback destinations: not redirected',
    `-A ${outbound} -m owner --uid-owner ${o.proxyUid} -j RETURN`,
    `-A ${outbound} -d ${LOOPBACK[family]} -j RETURN`,
  );
  const ports = sorted(o.excludeOutboundPorts);
  const cidrs = o.excludeOutboundCidrs.filter((c) => cidrFamily(c) === family);
  if (ports.length || cidrs.length) lines.push('# excluded ports and CIDRs: not redirected');
  for (const port of ports) lines.push(`-A ${outbound} -p tcp --dport ${port} -j RETURN`);
  for (const cidr of cidrs) lines.push(`-A ${outbound} -d ${cidr} -j RETURN`);
  lines.push('# everything else, including the pod\'s own IP: to the outbound listener', `-A ${outbound} -j ${redirect}`, 'COMMIT', '');
  return lines.join('\n');
}

/** What iptables-save shows of tsmesh in a nat table: its chains and the jumps into them. */
export interface InstalledState {
  readonly chains: readonly string[];
  /** rules in other chains that jump to a tsmesh chain, as `-A CHAIN ...` lines */
  readonly jumps: readonly string[];
}

/** Reads tsmesh's chains and jumps from `iptables-save -t nat` output. */
export function installedState(save: string): InstalledState {
  const chains: string[] = [];
  const jumps: string[] = [];
  let inNat = false;
  for (const raw of save.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('*')) inNat = line === '*nat';
    if (!inNat) continue;
    const chain = /^:(\S+)/.exec(line)?.[1];
    if (chain?.startsWith(CHAIN_PREFIX)) chains.push(chain);
    const rule = /^-A (\S+) .*-j (\S+)/.exec(line);
    if (rule && !rule[1]!.startsWith(CHAIN_PREFIX) && rule[2]!.startsWith(CHAIN_PREFIX)) jumps.push(line);
  }
  return { chains, jumps };
}

/**
 * The iptables-restore --noflush input that turns the installed state into `desired`
 * (renderRules output), or removes tsmesh when `desired` is null, in one transaction:
 * tsmesh's chains are flushed (declaring a chain in restore input flushes it), the jumps
 * into them deleted (except those already there as wanted, which keep their place) and
 * chains no longer wanted removed, then the desired rules added.
 * Running it again gives the same rules, never duplicates.
 */
export function planRestore(installed: InstalledState, desired: string | null): string {
  const body = desired === null ? [] : desired.split('\n').filter((l) => l.trim() !== '' && l !== '*nat' && l !== 'COMMIT');
  const declared = (l: string) => /^:(\S+)/.exec(l)?.[1];
  const wanted = body.map(declared).filter((c): c is string => c !== undefined);
  const unwanted = installed.chains.filter((c) => !wanted.includes(c));
  // A jump from a built-in chain that is already there as wanted stays where it is (so a second
  // run changes nothing); any other jump into tsmesh's chains is deleted.
  const kept = new Set<string>();
  const deleted: string[] = [];
  for (const jump of installed.jumps) {
    if (body.includes(jump) && !kept.has(jump)) kept.add(jump);
    else deleted.push(jump);
  }
  const lines = ['*nat'];
  // first every chain of tsmesh, old and new, is declared, which flushes it
  for (const chain of [...wanted, ...unwanted]) lines.push(`:${chain} - [0:0]`);
  for (const jump of deleted) lines.push(jump.replace(/^-A /, '-D '));
  for (const chain of unwanted) lines.push(`-X ${chain}`);
  lines.push(...body.filter((l) => declared(l) === undefined && !kept.has(l)), 'COMMIT', '');
  return lines.join('\n');
}
