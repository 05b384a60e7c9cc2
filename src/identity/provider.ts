// The sidecar's identity: its certificate chain, private key, trust anchors and SPIFFE ID,
// kept current by a source (the control plane's CA, or files from cert-manager/SPIRE).
// Consumers (src/mtls) read `current()` and listen for 'update'; the admin readiness waits for `ready`.
import { EventEmitter } from 'node:events';
import { createPrivateKey, type X509Certificate } from 'node:crypto';
import { Gauge, type Registry } from 'prom-client';
import type { Logger } from '../log/log.ts';
import type { Clock, Timer } from './clock.ts';
import { parseSpiffeId } from './spiffe.ts';
import { certificateUris, readCertificates } from './certificates.ts';

export interface Identity {
  /** PEM: the leaf, then any intermediates. */
  readonly certChainPem: string;
  /** PEM: the leaf's private key (held in memory only). */
  readonly keyPem: string;
  /** PEM: the roots peers' chains must lead to. */
  readonly trustAnchorsPem: string;
  readonly spiffeId: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

export interface IdentityEvents {
  /** A new identity is in force (the first one too). */
  update: [identity: Identity];
  /** The identity in force has expired and no new one could be had. */
  expired: [identity: Identity];
}

export interface IdentityProvider extends EventEmitter<IdentityEvents> {
  /** The identity in force; throws IdentityNotReadyError before the first one. */
  current(): Identity;
  /** Resolves with the first identity; rejects only if the provider is closed before. */
  readonly ready: Promise<Identity>;
  /** Whether an identity is in force. */
  readonly isReady: boolean;
  close(): void;
}

export class IdentityNotReadyError extends Error {
  override readonly name = 'IdentityNotReadyError';
  readonly code = 'TSMESH_IDENTITY_NOT_READY';
}

/** An identity that fails a check (a bad file set, a bad CA response). */
export class IdentityInvalidError extends Error {
  override readonly name = 'IdentityInvalidError';
  readonly code = 'TSMESH_IDENTITY_INVALID';
}

export const EXPIRY_METRIC = 'tsmesh_certificate_expiry_seconds';

/**
 * Checks a chain + key + trust anchors and makes an Identity of them: the key must match the
 * leaf, the leaf must carry exactly one tsmesh SPIFFE ID, the chain must lead to one of the
 * anchors, and the leaf must be valid at `now`. Throws IdentityInvalidError saying what failed.
 */
export function makeIdentity(input: { certChainPem: string; keyPem: string; trustAnchorsPem: string }, now: number, names = { chain: 'certificate chain', key: 'key', anchors: 'trust anchors' }): Identity {
  const fail = (msg: string, cause?: unknown): never => {
    throw new IdentityInvalidError(msg, cause ? { cause } : undefined);
  };
  let chain: X509Certificate[] = [];
  let anchors: X509Certificate[] = [];
  try {
    chain = readCertificates(input.certChainPem);
  } catch (err) {
    fail(`${names.chain}: ${(err as Error).message}`, err);
  }
  try {
    anchors = readCertificates(input.trustAnchorsPem);
  } catch (err) {
    fail(`${names.anchors}: ${(err as Error).message}`, err);
  }
  const leaf = chain[0]!;
  let key;
  try {
    key = createPrivateKey(input.keyPem);
  } catch (err) {
    fail(`${names.key}: not a readable private key (${(err as Error).message})`, err);
  }
  if (!leaf.checkPrivateKey(key!)) fail(`${names.key} does not match the certificate in ${names.chain}`);
  const ids = certificateUris(leaf).filter((u) => u.toLowerCase().startsWith('spiffe://'));
  if (ids.length !== 1) fail(`${names.chain}: the certificate must carry exactly one SPIFFE ID (URI SAN), found ${ids.length ? ids.join(', ') : 'none'}`);
  if (!parseSpiffeId(ids[0]!)) fail(`${names.chain}: "${ids[0]}" is not a tsmesh SPIFFE ID (spiffe://DOMAIN/ns/NS/sa/SA)`);
  const notBefore = leaf.validFromDate;
  const notAfter = leaf.validToDate;
  if (notAfter.getTime() <= now) fail(`${names.chain}: the certificate expired at ${notAfter.toISOString()}`);
  if (notBefore.getTime() > now + 5 * 60_000) fail(`${names.chain}: the certificate is not valid before ${notBefore.toISOString()}`);
  // The chain, in order, up to an anchor.
  for (let i = 0; i + 1 < chain.length; i++) {
    if (!chain[i]!.checkIssued(chain[i + 1]!) || !chain[i]!.verify(chain[i + 1]!.publicKey)) {
      fail(`${names.chain}: certificate ${i + 1} is not signed by certificate ${i + 2}`);
    }
  }
  const top = chain[chain.length - 1]!;
  const chained = anchors.some((a) => top.fingerprint256 === a.fingerprint256 || (top.checkIssued(a) && top.verify(a.publicKey)));
  if (!chained) fail(`${names.chain}: the certificate does not chain to ${names.anchors}`);
  return {
    certChainPem: input.certChainPem,
    keyPem: input.keyPem,
    trustAnchorsPem: input.trustAnchorsPem,
    spiffeId: ids[0]!,
    notBefore,
    notAfter,
  };
}

/** The state every source shares: the identity in force, `ready`, events, expiry, the gauge. */
export class IdentityState extends EventEmitter<IdentityEvents> implements IdentityProvider {
  readonly ready: Promise<Identity>;
  #current: Identity | undefined;
  #resolve!: (id: Identity) => void;
  #reject!: (err: Error) => void;
  #expiryTimer: Timer | undefined;
  #closed = false;
  protected readonly clock: Clock;
  protected readonly log: Logger | undefined;
  readonly #onClose: () => void;

  constructor(options: { clock: Clock; log?: Logger; registry?: Registry; onClose?: () => void }) {
    super();
    this.clock = options.clock;
    this.log = options.log;
    this.#onClose = options.onClose ?? (() => {});
    this.ready = new Promise<Identity>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    this.ready.catch(() => {}); // rejection is for awaiting callers only
    if (options.registry) {
      const existing = options.registry.getSingleMetric(EXPIRY_METRIC);
      if (existing) options.registry.removeSingleMetric(EXPIRY_METRIC);
      const secondsLeft = (): number => (this.#current ? (this.#current.notAfter.getTime() - this.clock.now()) / 1000 : 0);
      new Gauge({
        name: EXPIRY_METRIC,
        help: "Seconds until the sidecar's workload certificate expires (negative once expired; 0 before the first one)",
        registers: [options.registry],
        collect() {
          this.set(secondsLeft());
        },
      });
    }
  }

  get isReady(): boolean {
    return this.#current !== undefined;
  }

  get closed(): boolean {
    return this.#closed;
  }

  current(): Identity {
    if (!this.#current) throw new IdentityNotReadyError('the workload identity is not ready yet (no certificate so far)');
    return this.#current;
  }

  /** Peeks without throwing. */
  peek(): Identity | undefined {
    return this.#current;
  }

  /** For sources: puts `identity` in force and tells listeners. */
  install(identity: Identity): void {
    if (this.#closed) return;
    this.#current = identity;
    this.#expiryTimer?.cancel();
    this.#expiryTimer = this.clock.setTimer(() => {
      if (this.#current === identity) {
        this.log?.error({ spiffeId: identity.spiffeId, notAfter: identity.notAfter.toISOString() }, 'the workload certificate has expired and no new one could be had: mTLS peers will refuse it');
        this.emit('expired', identity);
      }
    }, identity.notAfter.getTime() - this.clock.now());
    this.#resolve(identity);
    this.emit('update', identity);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#expiryTimer?.cancel();
    this.#onClose();
    this.#reject(new IdentityNotReadyError('the identity provider was closed'));
  }
}
