// `tsmesh init`: installs the nat-table rules that send the pod's TCP traffic to the sidecar
// (run by the `tsmesh-init` init container, with NET_ADMIN and NET_RAW). Settings come from
// the defaults, then the pod's annotations (downward-API file), then the flags, which win.
import { parseArgs } from 'node:util';
import { readFile } from 'node:fs/promises';
import { pino } from 'pino';
import type { Command } from './command.ts';
import { UsageError } from '../errors/errors.ts';
import { parsePodInfo } from '../config/podinfo.ts';
import { podAnnotations, readAnnotations, formatProblem } from '../config/annotations.ts';
import { parseCidrList, parseIntIn, parsePortList } from '../config/parse.ts';
import { createLogger, type Logger } from '../log/log.ts';
import { DEFAULT_OPTIONS, renderRules, type Family, type InterceptOptions } from '../netfilter/rules.ts';
import { applyRules, checkNetAdmin, podHasIpv6, systemIptables, type Iptables } from '../netfilter/apply.ts';
import { InitError } from '../netfilter/errors.ts';

export const DEFAULT_ANNOTATIONS_FILE = '/etc/tsmesh/podinfo/annotations';

const help = `Usage: tsmesh init [options]

Installs the nat-table rules (iptables, and ip6tables where the pod has IPv6) that send the
pod's TCP traffic to the sidecar. Running it again leaves the same rules.

Options:
  --dry-run                      print the rules as iptables-restore input; change nothing
  --uninstall                    remove the rules
  --outbound-port PORT           outbound listener (default ${DEFAULT_OPTIONS.outboundPort})
  --inbound-port PORT            inbound listener (default ${DEFAULT_OPTIONS.inboundPort})
  --admin-port PORT              admin port, never redirected (default ${DEFAULT_OPTIONS.adminPort})
  --proxy-uid UID                the sidecar's UID, never redirected (default ${DEFAULT_OPTIONS.proxyUid})
  --inbound-ports LIST|*         inbound ports to redirect (default *: all; "" = none)
  --exclude-inbound-ports LIST   inbound ports not redirected
  --exclude-outbound-ports LIST  outbound ports not redirected
  --exclude-outbound-cidrs LIST  outbound CIDRs not redirected (IPv4 and IPv6)
  --ipv6 auto|true|false         also ip6tables (default auto: when the pod has a global IPv6 address)
  --annotations FILE             the pod's annotations (default $TSMESH_ANNOTATIONS or
                                 ${DEFAULT_ANNOTATIONS_FILE}); tsmesh.io/exclude-outbound-ports,
                                 exclude-inbound-ports and exclude-outbound-cidrs are read from it;
                                 flags win over annotations

Exit status: 0 done, 1 failed (the message names an error code), 2 bad usage.
`;

export interface InitArgs {
  readonly dryRun: boolean;
  readonly uninstall: boolean;
  readonly ipv6: 'auto' | boolean;
  readonly annotationsFile: string;
  /** the values the flags set; unset ones come from annotations or defaults */
  readonly flags: Partial<InterceptOptions>;
}

function flagValue<T>(name: string, value: string, parse: (v: string) => T): T {
  try {
    return parse(value);
  } catch (err) {
    throw new UsageError(`--${name}: ${(err as Error).message}`);
  }
}

export function parseInitArgs(argv: string[], env: NodeJS.ProcessEnv = process.env): InitArgs {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        'dry-run': { type: 'boolean' },
        uninstall: { type: 'boolean' },
        'outbound-port': { type: 'string' },
        'inbound-port': { type: 'string' },
        'admin-port': { type: 'string' },
        'proxy-uid': { type: 'string' },
        'inbound-ports': { type: 'string' },
        'exclude-inbound-ports': { type: 'string' },
        'exclude-outbound-ports': { type: 'string' },
        'exclude-outbound-cidrs': { type: 'string' },
        ipv6: { type: 'string' },
        annotations: { type: 'string' },
      },
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const v = parsed.values;
  const port = (v: string) => parseIntIn(v, 1, 65535);
  const flags: { -readonly [K in keyof InterceptOptions]?: InterceptOptions[K] } = {};
  if (v['outbound-port'] !== undefined) flags.outboundPort = flagValue('outbound-port', v['outbound-port'], port);
  if (v['inbound-port'] !== undefined) flags.inboundPort = flagValue('inbound-port', v['inbound-port'], port);
  if (v['admin-port'] !== undefined) flags.adminPort = flagValue('admin-port', v['admin-port'], port);
  if (v['proxy-uid'] !== undefined) flags.proxyUid = flagValue('proxy-uid', v['proxy-uid'], (x) => parseIntIn(x, 0, 2 ** 32 - 2));
  if (v['inbound-ports'] !== undefined) {
    const text = v['inbound-ports'];
    flags.inboundPorts = text.trim() === '*' ? 'all' : flagValue('inbound-ports', text, parsePortList);
  }
  if (v['exclude-inbound-ports'] !== undefined) flags.excludeInboundPorts = flagValue('exclude-inbound-ports', v['exclude-inbound-ports'], parsePortList);
  if (v['exclude-outbound-ports'] !== undefined) flags.excludeOutboundPorts = flagValue('exclude-outbound-ports', v['exclude-outbound-ports'], parsePortList);
  if (v['exclude-outbound-cidrs'] !== undefined) flags.excludeOutboundCidrs = flagValue('exclude-outbound-cidrs', v['exclude-outbound-cidrs'], parseCidrList);
  const ports = [flags.outboundPort ?? DEFAULT_OPTIONS.outboundPort, flags.inboundPort ?? DEFAULT_OPTIONS.inboundPort, flags.adminPort ?? DEFAULT_OPTIONS.adminPort];
  if (new Set(ports).size !== 3) throw new UsageError(`--outbound-port, --inbound-port and --admin-port must differ (got ${ports.join(', ')})`);
  let ipv6: 'auto' | boolean = 'auto';
  if (v.ipv6 !== undefined) {
    if (!['auto', 'true', 'false'].includes(v.ipv6)) throw new UsageError(`--ipv6: "${v.ipv6}" is not auto, true or false`);
    ipv6 = v.ipv6 === 'auto' ? 'auto' : v.ipv6 === 'true';
  }
  return {
    dryRun: v['dry-run'] ?? false,
    uninstall: v.uninstall ?? false,
    ipv6,
    annotationsFile: v.annotations ?? env.TSMESH_ANNOTATIONS ?? DEFAULT_ANNOTATIONS_FILE,
    flags,
  };
}

/** defaults <- pod annotations <- flags. Bad annotation values are logged and their default stays. */
export function resolveOptions(annotations: Readonly<Record<string, string>> | undefined, flags: Partial<InterceptOptions>, log?: Logger): InterceptOptions {
  const { values, problems } = readAnnotations(podAnnotations, annotations);
  for (const p of problems) log?.warn({ key: p.key, value: p.value }, formatProblem(p));
  const fromAnnotations: Partial<InterceptOptions> = {
    excludeInboundPorts: values['exclude-inbound-ports'],
    excludeOutboundPorts: values['exclude-outbound-ports'],
    excludeOutboundCidrs: values['exclude-outbound-cidrs'],
  };
  return { ...DEFAULT_OPTIONS, ...fromAnnotations, ...flags };
}

async function readAnnotationsFile(path: string, log: Logger): Promise<Record<string, string> | undefined> {
  try {
    return parsePodInfo(await readFile(path, 'utf8'));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') log.debug({ path }, 'no annotations file; using flags and defaults');
    else log.warn({ path, err: (err as Error).message }, 'cannot read the annotations file; using flags and defaults');
    return undefined;
  }
}

export interface InitDeps {
  readonly iptables?: Iptables;
  readonly stdout?: NodeJS.WritableStream;
  readonly log?: Logger;
  readonly env?: NodeJS.ProcessEnv;
}

export async function runInit(argv: string[], deps: InitDeps = {}): Promise<number> {
  const env = deps.env ?? process.env;
  const args = parseInitArgs(argv, env);
  const stdout = deps.stdout ?? process.stdout;
  // logs go to stderr: stdout carries the --dry-run rules
  const log = deps.log ?? createLogger({ name: 'tsmesh-init', destination: pino.destination({ fd: 2, sync: true }) as unknown as NodeJS.WritableStream });
  const options = resolveOptions(await readAnnotationsFile(args.annotationsFile, log), args.flags, log);
  const ipv6 = args.ipv6 === 'auto' ? await podHasIpv6() : args.ipv6;
  const families: Family[] = ipv6 ? [4, 6] : [4];

  if (args.dryRun) {
    if (args.uninstall) {
      stdout.write('# --uninstall --dry-run: would delete the chains TSMESH_* and the jumps into them\n');
      return 0;
    }
    stdout.write(families.map((f) => renderRules(options, f)).join('\n'));
    return 0;
  }
  try {
    await checkNetAdmin();
    const iptables = deps.iptables ?? systemIptables(env);
    const results = await applyRules(iptables, args.uninstall ? null : options, families);
    for (const r of results) {
      log.info({ family: `IPv${r.family}`, replaced: r.before.chains.length > 0 }, args.uninstall ? 'interception rules removed' : 'interception rules installed');
    }
    return 0;
  } catch (err) {
    if (!(err instanceof InitError)) throw err;
    log.error({ code: err.code }, err.message);
    process.stderr.write(`tsmesh init: ${err.code}: ${err.message}\n`);
    return 1;
  }
}

const command: Command = {
  summary: "install the iptables rules that send the pod's traffic to the sidecar",
  help,
  run: (argv) => runInit(argv),
};
export default command;
