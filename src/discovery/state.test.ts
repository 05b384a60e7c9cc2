// The discovery state without a socket: a sequence of control-plane messages applied, what the
// registry sees, and what the sidecar would tell the control plane.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DiscoveryState } from './state.ts';
import { parseServerMessage } from './protocol.ts';
import { Registry } from '../registry/registry.ts';
import { createLogger } from '../log/log.ts';

const detail = (name: string, clusterIP: string) => ({ service: { name, namespace: 'default', clusterIP, ports: [{ port: 80 }] }, pods: [] });

function setup() {
  const registry = new Registry();
  let now = 1_000_000;
  let outgoing = 0;
  const state = new DiscoveryState({ registry, podIP: '10.0.0.5', log: createLogger({ level: 'silent' }), idleMs: 60_000, onOutgoing: () => outgoing++, now: () => now });
  registry.setOnDemandSource(state.source);
  const apply = (raw: unknown) => state.apply(parseServerMessage(raw));
  const names = () => registry.view.services.map((s) => s.name).sort();
  return { registry, state, apply, names, advance: (ms: number) => (now += ms), outgoing: () => outgoing };
}

test('a snapshot, a service loaded on demand, an idle one dropped, one gone from the index: registry and acks follow', async () => {
  const { registry, state, apply, names, advance, outgoing } = setup();
  apply({
    type: 'snapshot',
    version: 1,
    stream: 's1',
    index: [
      ['default/own', '10.96.0.1', [80], ['10.0.0.5']],
      ['default/other', '10.96.0.2', [80], ['10.0.0.9']],
      ['default/third', null, [80], ['10.0.0.9']],
    ],
    services: {},
  });
  // the services selecting this pod are subscribed at once; the registry is loaded (empty)
  assert.ok(registry.loaded);
  assert.deepEqual(names(), []);
  assert.ok(outgoing() > 0);
  assert.deepEqual(state.ack(), { type: 'ack', version: 1, subscribe: ['default/own'] });
  assert.deepEqual(state.ack(), { type: 'ack', version: 1 }); // told once
  assert.equal(state.indexedServices, 3);

  // lookups by address come from the index
  assert.deepEqual(state.source.servicesAt('10.96.0.2', 80), ['default/other']);
  assert.deepEqual(state.source.servicesAt('10.96.0.2', 81), []);
  assert.deepEqual(state.source.servicesAt('10.0.0.9', 8080), ['default/other', 'default/third']);
  assert.ok(state.source.has('default', 'other'));
  assert.ok(!state.source.has('default', 'nope'));

  // a load waits for the details; an update carrying them ends the wait
  const loaded = state.source.load(['default/other', 'default/nope'], 10_000);
  assert.deepEqual(state.ack(), { type: 'ack', version: 1, subscribe: ['default/other'] });
  apply({ type: 'update', version: 2, services: { 'default/own': detail('own', '10.96.0.1'), 'default/other': detail('other', '10.96.0.2'), 'default/third': detail('third', '10.96.0.3') } });
  await loaded;
  assert.deepEqual(names(), ['other', 'own']); // third was not asked for: left out
  assert.equal(state.subscriptions, 2);

  // unused for idleMs: dropped (not this pod's own service) and the control plane told
  advance(60_000);
  state.sweep();
  assert.deepEqual(names(), ['own']);
  assert.deepEqual(state.ack(), { type: 'ack', version: 2, unsubscribe: ['default/other'] });

  // waiting for a service that leaves the index: the wait ends
  const waiting = state.source.load(['default/third'], 10_000);
  apply({ type: 'update', version: 3, index: { set: [], delete: ['default/third'] } });
  await waiting;
  assert.equal(state.indexedServices, 2);
  assert.deepEqual(state.source.servicesAt('10.0.0.9', 8080), ['default/other']);

  // a new snapshot replaces everything: details it does not carry are gone, wanted ones asked again
  apply({ type: 'snapshot', version: 7, stream: 's2', index: [['default/own', '10.96.0.1', [80], ['10.0.0.5']]], services: {} });
  assert.deepEqual(names(), []);
  assert.equal(state.hello().length, 2); // own and third (third is no longer indexed, still wanted)
  assert.deepEqual(state.ack(), { type: 'ack', version: 7 });
});

test('a bad service detail is refused alone; the previous details stay', () => {
  const { apply, names, state } = setup();
  apply({ type: 'snapshot', version: 1, stream: 's', index: [['default/own', '10.96.0.1', [80], ['10.0.0.5']]], services: {} });
  apply({ type: 'update', version: 2, services: { 'default/own': detail('own', '10.96.0.1') } });
  assert.deepEqual(names(), ['own']);
  apply({ type: 'update', version: 3, services: { 'default/own': { service: { name: 'own' }, pods: [] } } });
  assert.deepEqual(names(), ['own']);
  assert.equal(state.version, 3);
  assert.throws(() => parseServerMessage({ type: 'update' }), /not a discovery message/);
});
