// node:http keep-alive agents, one per destination (a meshed endpoint's pool is also keyed by
// the app port its preamble names), for WebSocket upgrades forwarded by http-proxy; ordinary
// HTTP/1.1 requests use the raw-socket core's pools (src/http1/client.ts). Idle connections are closed before the usual 5 s
// keep-alive timeout of app servers, to avoid reusing a connection the server is closing.
import type { AgentOptions } from 'node:http';
import { Agent } from '../http/node-http.ts';
import type { Duplex } from 'node:stream';
import { APP_IDLE_MS, MESH_IDLE_MS, poolKey, type Destination, type Dialer } from './dial.ts';

class DestinationAgent extends Agent {
  readonly #dialer: Dialer;
  readonly #dest: Destination;
  #retired = false;
  constructor(dialer: Dialer, dest: Destination, options: AgentOptions) {
    super(options);
    this.#dialer = dialer;
    this.#dest = dest;
  }
  override createConnection(): Duplex {
    return this.#dialer.dial(this.#dest);
  }
  override keepSocketAlive(socket: Parameters<Agent['keepSocketAlive']>[0]): boolean {
    return !this.#retired && (super.keepSocketAlive(socket) as unknown) !== false;
  }
  /** Drains: requests in flight finish, then their connections close; idle ones close now. */
  retire(): void {
    this.#retired = true;
    for (const sockets of Object.values(this.freeSockets)) for (const s of sockets ?? []) s.destroy();
  }
}

export class ConnectionPools {
  readonly #agents = new Map<string, DestinationAgent>();
  readonly #dialer: Dialer;
  readonly #meshIdleMs: number;
  readonly #appIdleMs: number;

  constructor(dialer: Dialer, options: { meshIdleMs?: number; appIdleMs?: number } = {}) {
    this.#dialer = dialer;
    this.#meshIdleMs = options.meshIdleMs ?? MESH_IDLE_MS;
    this.#appIdleMs = options.appIdleMs ?? APP_IDLE_MS;
  }

  agentFor(dest: Destination): Agent {
    const key = poolKey(dest);
    let agent = this.#agents.get(key);
    if (!agent) {
      agent = new DestinationAgent(this.#dialer, dest, {
        keepAlive: true,
        maxFreeSockets: 64,
        scheduling: 'lifo',
        timeout: dest.meshed ? this.#meshIdleMs : this.#appIdleMs,
      });
      this.#agents.set(key, agent);
    }
    return agent;
  }

  /** Drains the pools of destinations no longer in use (endpoints that left the registry). */
  retain(keep: (dest: { ip: string; port: number }) => boolean): void {
    for (const [key, agent] of this.#agents) {
      const [, ip, port] = /^[mp]:(?:[^@]*@)?(.*):(\d+)$/.exec(key) ?? [];
      if (ip && !keep({ ip, port: Number(port) })) {
        agent.retire();
        this.#agents.delete(key);
      }
    }
  }

  close(): void {
    for (const agent of this.#agents.values()) agent.destroy();
    this.#agents.clear();
  }
}
