// mTLS between sidecars: see mesh-tls.ts (contexts, client and server), peer.ts (the peer's
// SPIFFE ID), allow.ts (tsmesh.io/allow), xfcc.ts (x-forwarded-client-cert).
export { createMeshTls, handOver, admitPeer, PeerIdentityError, PeerRejectedError, MESH_ALPN, type MeshTls, type MeshTlsOptions, type MeshPeer, type InboundTlsMode } from './mesh-tls.ts';
export { peerSpiffeId, spiffeIdOfCertificate, spiffeIdOfPeerCertificate } from './peer.ts';
export { compileAllowList, type AllowList, type AllowDecision } from './allow.ts';
export { xfccValue, XFCC_HEADER } from './xfcc.ts';
