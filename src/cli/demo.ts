// `tsmesh demo` (and `npm start`): DESIGN.md's example mesh on this machine, a few requests
// from pod-b to http://pod-service/, and an account of what happened to each.
import { parseArgs } from 'node:util';
import type { Command } from './command.ts';
import { UsageError } from '../errors/errors.ts';
import { startLoopbackMesh, type AccessLine, type LoopbackMesh } from '../demo/loopback.ts';
import { get } from '../demo/client.ts';

const help = `Usage: tsmesh demo [--requests N] [--keep]

Runs a small mesh on this machine and shows what it does: pod-a (a web app on 8080) behind
Service pod-service (port 80 -> 8080), pod-b (a client), each with its tsmesh sidecar, and a
registry file in place of the Kubernetes API. pod-b calls http://pod-service/ a few times;
the demo shows which pod answered, through which hops, and how long each took.

  --requests N   how many requests pod-b sends [3]
  --keep         leave the mesh running (Ctrl-C to stop) so you can call it yourself
`;

const ms = (n: number | undefined) => (n === undefined ? '    ?   ' : `${n.toFixed(2).padStart(6)} ms`);

async function waitFor<T>(find: () => T | undefined, timeoutMs = 2000): Promise<T | undefined> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = find();
    if (v !== undefined || Date.now() > end) return v;
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function account(mesh: LoopbackMesh, n: number): Promise<boolean> {
  const path = `/?request=${n}`;
  const { a: POD_A, b: POD_B } = mesh.pods;
  const reply = await get(mesh.sidecars.b.outboundURL, `http://pod-service${path}`, POD_B.ip);
  const out = await waitFor(() => mesh.sidecars.b.access.find((l: AccessLine) => l.path === path));
  const inn = await waitFor(() => mesh.sidecars.a.access.find((l: AccessLine) => l.path === path));
  let answer = reply.body.trim();
  try {
    answer = (JSON.parse(answer) as { message: string }).message;
  } catch {
    /* shown as it is */
  }
  console.log(`\nRequest ${n}: pod-b  GET http://pod-service${path}  ->  ${reply.status} "${answer}"  (${reply.ms.toFixed(2)} ms at the client)`);
  console.log(`  1. pod-b app      -> pod-b sidecar   outbound ${mesh.sidecars.b.outboundURL.slice(7)}   ${ms(out?.duration_ms)}  chose endpoint ${out?.upstream_pod ?? '?'} (${out?.upstream ?? '?'}) of pod-service`);
  console.log(`  2. pod-b sidecar  -> pod-a sidecar   inbound  ${POD_A.ip}:15006   ${ms(inn?.duration_ms)}  mesh hop, target port 8080`);
  console.log(`  3. pod-a sidecar  -> pod-a app       ${inn?.upstream ?? '?'}   ${ms(mesh.appTimes.get(path))}  app time`);
  return reply.status === 200 && out !== undefined && inn !== undefined;
}

const command: Command = {
  summary: 'run a small local mesh and show what it does',
  help,
  async run(argv) {
    let values;
    try {
      ({ values } = parseArgs({ args: argv, options: { requests: { type: 'string', default: '3' }, keep: { type: 'boolean', default: false } } }));
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
    const requests = Number(values.requests);
    if (!Number.isInteger(requests) || requests < 1 || requests > 100) throw new UsageError('--requests must be a whole number from 1 to 100');

    console.log('tsmesh demo: pod-b calls pod-service, which selects pod-a, through both sidecars.');
    const mesh = await startLoopbackMesh({ logLevel: 'info' });
    const { a: POD_A, b: POD_B } = mesh.pods;
    console.log(`mode: loopback: pods are addresses on this machine (pod-a ${POD_A.ip}, pod-b ${POD_B.ip}); the client uses its sidecar as HTTP proxy.`);
    console.log('      (Transparent interception with iptables in network namespaces comes with `tsmesh init`.)');
    console.log(`started pod-a's app on ${POD_A.ip}:8080 and a sidecar for each pod (registry: ${mesh.dir}/registry.yaml)`);
    console.log('Each hop\'s time includes the hops below it (from the sidecars\' access logs).');
    let ok = true;
    try {
      for (let n = 1; n <= requests; n++) ok = (await account(mesh, n)) && ok;
      console.log(`\n${ok ? 'Every request' : 'Not every request'} went pod-b -> its sidecar -> pod-a's sidecar -> pod-a's app and back.`);
      if (values.keep) {
        console.log(`\nThe mesh keeps running. Try:\n  curl -x ${mesh.sidecars.b.outboundURL} http://pod-service/\n  curl ${mesh.sidecars.b.adminURL}/config\n  curl ${mesh.sidecars.a.adminURL}/metrics\nCtrl-C stops it.`);
        await new Promise<void>((resolve) => {
          process.once('SIGINT', resolve);
          process.once('SIGTERM', resolve);
        });
      }
    } finally {
      await mesh.close();
    }
    return ok ? 0 : 1;
  },
};
export default command;
