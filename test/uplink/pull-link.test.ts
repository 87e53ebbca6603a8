// Issue 14: a link that mostly receives (egress.pull: an operator's command track coming down)
// must notice a silent path too. Over a real network path (a namespace behind a veth, silenced by
// tc), with the shipped defaults: the puller probes after 3 s without input, finds the path dead
// from the missing acknowledgement, and rejoins within 2 s of the path's return — then the next
// command arrives. Before issue 14 it stayed "connected" through a 50–80 s drop.
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import WebSocket from 'ws';
import { Engine } from '../../runtime/engine/engine.js';
import { PangPuller } from '../../runtime/egress/pang-puller.js';
import { silentLog } from '../../runtime/egress/pang-link.js';
import { egressConfigSchema } from '../../runtime/egress/config.js';
import { skipUnlessCi } from '../support/peer.js';
import { waitFor } from '../egress/helpers.js';
import { createNetnsPath, netnsUnavailable } from './netns.js';

const RELAY_CH = 'c0a0a000000000000000';
const relayMain = fileURLToPath(new URL('../sim/ring-relay-main.js', import.meta.url));

test('a pull-down link notices a silent path within ~10 s and rejoins within 2 s of its return (shipped defaults)', { timeout: 120_000 }, async (t) => {
  const why = await netnsUnavailable();
  if (why) return skipUnlessCi(t, why);
  const path = await createNetnsPath('pl');
  t.after(() => path.close());
  const relay = path.spawn(process.execPath, [relayMain, '--port', '8276', '--channel', RELAY_CH]);
  let ready = false;
  relay.stdout!.on('data', (d: Buffer) => (ready ||= d.toString().includes('"ready"')));
  await waitFor(() => ready, 10_000, 'relay listening');

  const engine = new Engine({ memoryCeilingBytes: 16 * 1024 * 1024, consumerQueueBytes: 1024 * 1024, gopCacheBytes: 1024 * 1024, trackLingerMs: 60_000, instantChannelTtlMs: 60_000, maxInstantChannels: 2 });
  t.after(() => engine.close());
  engine.addStaticChannel({ id: 'r0b0t000000000000000', name: 'robot' });
  const defaults = egressConfigSchema.parse({});
  const puller = new PangPuller({
    name: 'cmd',
    endpoint: { url: `ws://${path.peerAddr}:8276`, channel: RELAY_CH, source: 'operator', track: 'cmd' },
    to: { channel: 'r0b0t000000000000000', source: 'operator', track: 'cmd' },
    engine,
    log: silentLog,
    backoff: defaults.backoff,
    tcp: defaults.link,
  });
  t.after(() => puller.close());
  puller.start();
  await waitFor(() => puller.stats().state === 'connected', 15_000, 'pull session joined');

  // The operator publishes a command now and then (from the host side, through the same path).
  const publish = async (n: number): Promise<void> => {
    const ws = new WebSocket(`ws://${path.peerAddr}:8276/pang/ws/pub?channel=${RELAY_CH}&source=operator&track=cmd`);
    await new Promise<void>((res, rej) => ws.once('open', () => res()).once('error', rej));
    ws.send('application/json', { binary: false });
    ws.send(Buffer.from(JSON.stringify({ n })), { binary: true });
    await new Promise((r) => setTimeout(r, 200));
    ws.terminate();
  };
  await publish(1);
  await waitFor(() => puller.stats().framesIn >= 1, 10_000, 'the first command pulled down');

  await path.blackhole();
  const silentAt = Date.now();
  await waitFor(() => (puller.stats().failures.UPSTREAM_STALLED ?? 0) >= 1, 20_000, () => `the dead path noticed (${JSON.stringify(puller.stats())})`);
  const noticedMs = Date.now() - silentAt;
  assert.ok(noticedMs <= 10_000, `noticed ${noticedMs} ms after the path went silent (≤ 10 s)`);
  assert.ok(puller.stats().idleProbes >= 1, 'it probed the quiet path');
  await new Promise((r) => setTimeout(r, 5000));
  await path.restore();
  const back = Date.now();
  await waitFor(() => puller.sessions >= 2, 10_000, 'a new session open');
  const rejoinMs = Date.now() - back;
  assert.ok(rejoinMs <= 2000, `rejoined ${rejoinMs} ms after the path returned (≤ 2 s)`);
  await publish(2);
  await waitFor(() => puller.stats().framesIn >= 2, 10_000, 'the next command arrives');
  assert.equal(puller.stats().retries.refused, 0, 'a silent path is never a refusal');
  t.diagnostic(`dead path noticed after ${noticedMs} ms; rejoined ${rejoinMs} ms after the return`);
});
