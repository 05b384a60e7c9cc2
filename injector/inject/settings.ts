// The injector's settings: what it puts into pods (image, control plane, trace endpoint) and
// where it runs. Read from the injector's own environment; defaults spelled out here once.
// `tsmesh inject` reads the same variables, so the CLI renders what the webhook would.
import { z } from 'zod';
import { ConfigError } from '../../src/errors/errors.ts';
import { isTrustDomain } from '../../src/identity/spiffe.ts';
import pkg from '../../package.json' with { type: 'json' };

export const VERSION: string = pkg.version;
/** The image this repo's Dockerfile builds, tagged with the package version. */
export const DEFAULT_IMAGE = `ghcr.io/tsmesh/tsmesh:${VERSION}`;
export const DEFAULT_CONTROL_PLANE_NAMESPACE = 'tsmesh-system';
export const DEFAULT_TRUST_DOMAIN = 'cluster.local';

export interface InjectorSettings {
  /** The sidecar and init image. */
  readonly image: string;
  readonly imagePullPolicy: 'Always' | 'IfNotPresent' | 'Never';
  /** TSMESH_CONTROL_PLANE given to the sidecar. */
  readonly controlPlane: string;
  /** OTEL_EXPORTER_OTLP_ENDPOINT given to the sidecar; empty = not set. */
  readonly otlpEndpoint: string;
  /** The control plane's own namespace: never injected. */
  readonly controlPlaneNamespace: string;
  /** SPIFFE trust domain: the CA issues in it; sidecars get it as TSMESH_TRUST_DOMAIN when not the default. */
  readonly trustDomain: string;
  /** Recorded in the status annotation. */
  readonly version: string;
}

const envSchema = z.object({
  TSMESH_PROXY_IMAGE: z.string().regex(/^\S+$/, 'must be an image reference without spaces').default(DEFAULT_IMAGE),
  TSMESH_PROXY_IMAGE_PULL_POLICY: z.enum(['Always', 'IfNotPresent', 'Never']).default('IfNotPresent'),
  TSMESH_PROXY_CONTROL_PLANE: z.url().optional(),
  TSMESH_PROXY_OTLP_ENDPOINT: z.union([z.url(), z.literal('none')]).default('http://jaeger.tsmesh-system.svc:4318'),
  TSMESH_NAMESPACE: z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'must be a namespace name').default(DEFAULT_CONTROL_PLANE_NAMESPACE),
  TSMESH_TRUST_DOMAIN: z.string().refine(isTrustDomain, 'must be a trust domain (lower-case letters, digits, ".", "-", "_")').default(DEFAULT_TRUST_DOMAIN),
});

/** Names of the variables, for help texts and docs. */
export const INJECTOR_ENV = Object.keys(envSchema.shape);

export function injectorSettingsFromEnv(env: NodeJS.ProcessEnv = process.env): InjectorSettings {
  const present = Object.fromEntries(Object.entries(env).filter(([k, v]) => INJECTOR_ENV.includes(k) && v !== undefined && v !== ''));
  const r = envSchema.safeParse(present);
  if (!r.success) {
    throw new ConfigError('environment', r.error.issues.map((i) => `${i.path.join('.')}=${JSON.stringify(present[String(i.path[0])] ?? '')}: ${i.message}`));
  }
  const e = r.data;
  return {
    image: e.TSMESH_PROXY_IMAGE,
    imagePullPolicy: e.TSMESH_PROXY_IMAGE_PULL_POLICY,
    controlPlane: e.TSMESH_PROXY_CONTROL_PLANE ?? `https://tsmesh-injector.${e.TSMESH_NAMESPACE}.svc:8443`,
    otlpEndpoint: e.TSMESH_PROXY_OTLP_ENDPOINT === 'none' ? '' : e.TSMESH_PROXY_OTLP_ENDPOINT,
    controlPlaneNamespace: e.TSMESH_NAMESPACE,
    trustDomain: e.TSMESH_TRUST_DOMAIN,
    version: VERSION,
  };
}

export const defaultInjectorSettings = (): InjectorSettings => injectorSettingsFromEnv({});
