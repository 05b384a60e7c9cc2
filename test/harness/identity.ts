// Workload certificates for test pods: see src/localcluster/identity.ts.
export { createCA, writeWorkloadIdentity, type CA } from '../../src/localcluster/identity.ts';
