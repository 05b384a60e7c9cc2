import { test } from 'node:test';
import assert from 'node:assert/strict';
import { workloadName } from './workload.ts';

test('workload from labels: app.kubernetes.io/name, then app', () => {
  assert.equal(workloadName('pod-a', { 'app.kubernetes.io/name': 'shop', app: 'web-app' }), 'shop');
  assert.equal(workloadName('pod-a', { app: 'web-app' }), 'web-app');
  assert.equal(workloadName('pod-a', { app: '' }), 'pod-a', 'an empty label is no name');
});

test('workload from a generated pod name', () => {
  assert.equal(workloadName('reviews-v1-7d4b9c6f5-x2x9z'), 'reviews-v1', 'Deployment: ReplicaSet hash and pod suffix');
  assert.equal(workloadName('web-0'), 'web', 'StatefulSet ordinal');
  assert.equal(workloadName('db-12'), 'db');
  assert.equal(workloadName('fluentd-x7k2p'), 'fluentd', 'DaemonSet or Job suffix');
  assert.equal(workloadName('pod-a'), 'pod-a', 'a hand-named pod keeps its name');
  assert.equal(workloadName('web-server'), 'web-server', 'a word with vowels is not a generated suffix');
  assert.equal(workloadName(undefined), 'unknown');
  assert.equal(workloadName(''), 'unknown');
});
