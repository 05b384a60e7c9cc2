// Debian's nginx, run with our own config and a temp prefix: the upstream app (a fixed 1 KB
// body) and the reference proxy pair, plain or with mTLS between the two proxies.
// One worker process (plus nginx's idle master) to compare fairly with a single-process Node
// proxy; keep-alive connection pools to the next hop, as a sidecar keeps them.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { PodCert } from './certs.ts';
import { startProcess, waitListening, assertPortFree, type Proc } from './procs.ts';
import { topology } from './topology.ts';

export const NGINX = '/usr/sbin/nginx';
export const NGINX_WORKERS = 1;

function common(dir: string, body: string): string {
  const user = process.getuid?.() === 0 ? 'user root;\n' : '';
  return `${user}worker_processes ${NGINX_WORKERS};
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/tmp-body;
  proxy_temp_path ${dir}/tmp-proxy;
  fastcgi_temp_path ${dir}/tmp-fastcgi;
  uwsgi_temp_path ${dir}/tmp-uwsgi;
  scgi_temp_path ${dir}/tmp-scgi;
  # No limit on requests per connection (Node's default), so no reconnects mid-run.
  keepalive_requests 1000000;
  keepalive_timeout 75s;
${body}
}
`;
}

/** The app: answers every request (GET or POST, the body is read and discarded) with 200 and `body`. */
export function appConf(dir: string, body: string, listen: Hop = topology.app): string {
  return common(
    dir,
    `  server {
    listen ${listen.host}:${listen.port};
    location / { default_type application/octet-stream; return 200 "${body}"; }
  }`,
  );
}

export interface Hop {
  host: string;
  port: number;
}

/**
 * One proxy of the pair: listens on `listen`, forwards to `next` over a keep-alive pool.
 * `serverTls`: terminate mTLS (require a client certificate signed by the CA).
 * `clientTls`: originate mTLS to `next` (present our certificate, verify the peer's name).
 */
export function proxyConf(dir: string, listen: Hop, next: Hop, tls: { serverTls?: PodCert; clientTls?: { own: PodCert; peerName: string } } = {}): string {
  const s = tls.serverTls;
  const c = tls.clientTls;
  const serverTls = s
    ? `    ssl_certificate ${s.cert};
    ssl_certificate_key ${s.key};
    ssl_client_certificate ${s.ca};
    ssl_verify_client on;
    ssl_protocols TLSv1.3;
    ssl_session_cache shared:bench:1m;
`
    : '';
  const clientTls = c
    ? `      proxy_ssl_certificate ${c.own.cert};
      proxy_ssl_certificate_key ${c.own.key};
      proxy_ssl_trusted_certificate ${c.own.ca};
      proxy_ssl_verify on;
      proxy_ssl_name ${c.peerName};
      proxy_ssl_server_name on;
      proxy_ssl_protocols TLSv1.3;
      proxy_ssl_session_reuse on;
`
    : '';
  return common(
    dir,
    `  upstream next_hop {
    server ${next.host}:${next.port};
    keepalive 32;
    keepalive_requests 1000000;
  }
  server {
    listen ${listen.host}:${listen.port}${s ? ' ssl' : ''};
${serverTls}    location / {
      proxy_pass ${c ? 'https' : 'http'}://next_hop;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
${clientTls}    }
  }`,
  );
}

/** Writes `conf` into `dir`, starts nginx on it and waits until it listens on `listen`. */
export async function startNginx(name: string, dir: string, conf: string, listen: Hop): Promise<Proc> {
  await mkdir(dir, { recursive: true });
  const file = join(dir, 'nginx.conf');
  await writeFile(file, conf);
  await assertPortFree(listen.host, listen.port);
  const proc = startProcess(name, NGINX, ['-p', `${dir}/`, '-c', file, '-g', 'daemon off;'], { logFile: join(dir, 'stderr.log') });
  await waitListening(proc, listen.host, listen.port);
  return proc;
}
