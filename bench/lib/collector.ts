// A stand-in OTLP/HTTP collector for the bench: the sidecars export spans to it as a deployed
// sidecar exports to Jaeger (OTEL_EXPORTER_OTLP_ENDPOINT, http/protobuf, POST /v1/traces). It
// reads each body and answers 200 with an empty ExportTraceServiceResponse; it does not decode
// (test/harness/otlp-receiver.ts does, for the tests): on a shared 2-core machine decoding would
// take CPU from the pair being measured. On SIGTERM it prints what it got, one line.
//
// As a script: node bench/lib/collector.ts HOST PORT   (the bench runs it, in a pod's network
// namespace for the netns topology).
import { createServer } from 'node:http';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { startProcess, stopTree, type Proc } from './procs.ts';

export const COLLECTOR_PORT = 4318;
export const COLLECTOR_SCRIPT = join(import.meta.dirname, 'collector.ts');

/** The collector's own line, after it stopped: "N export requests, B bytes". */
export async function stopCollector(proc: Proc): Promise<string> {
  await stopTree(proc);
  const line = /^collector: (.*)$/m.exec(readFileSync(proc.logFile, 'utf8'));
  return line ? line[1]! : 'no report';
}

/** Starts the collector (`prefix`: e.g. `ip netns exec NS`) with its output in `logFile`. */
export function startCollector(node: string, host: string, logFile: string, prefix: readonly string[] = []): Proc {
  const [command, ...args] = [...prefix, node, COLLECTOR_SCRIPT, host, String(COLLECTOR_PORT)];
  return startProcess('OTLP collector (stand-in)', command!, args, { logFile });
}

if (process.argv[1] === COLLECTOR_SCRIPT) {
  const [host = '127.0.0.1', port = String(COLLECTOR_PORT)] = process.argv.slice(2);
  let requests = 0;
  let bytes = 0;
  const server = createServer((req, res) => {
    req.on('data', (c: Buffer) => (bytes += c.length));
    req.on('end', () => {
      requests += 1;
      res.writeHead(200, { 'content-type': 'application/x-protobuf', 'content-length': 0 });
      res.end();
    });
  });
  server.listen(Number(port), host, () => process.stdout.write(`listening on ${host}:${port}\n`));
  process.once('SIGTERM', () => {
    process.stdout.write(`collector: ${requests} export requests, ${(bytes / 1024).toFixed(0)} KiB\n`);
    process.exit(0);
  });
}
