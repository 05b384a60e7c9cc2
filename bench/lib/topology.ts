// Where everything listens. All on loopback, one 127.x address per "pod" (Linux routes the whole
// 127.0.0.0/8 to lo), the ports of the contract (DESIGN.md, Ports).
export const topology = {
  /** The upstream app of pod-a: the same for every case. */
  app: { host: '127.0.0.10', port: 8080 },
  /** The server-side pod (runs the app) and the client-side pod (runs the load generator). */
  podA: { name: 'pod-a', ip: '127.0.0.10', labels: { app: 'web-app' } },
  podB: { name: 'pod-b', ip: '127.0.0.11', labels: { app: 'client' } },
  namespace: 'default',
  service: { name: 'pod-service', port: 80, targetPort: 8080 },
  outboundPort: 15001,
  inboundPort: 15006,
  adminPort: 15020,
} as const;

/** The request authority every case sends (the service name, as an app in pod-b would). */
export const AUTHORITY = topology.service.name;

/** Where the load generator sends in a proxied case: pod-b's outbound listener. */
export const pairUrl = `http://${topology.podB.ip}:${topology.outboundPort}/`;
export const directUrl = `http://${topology.app.host}:${topology.app.port}/`;
