import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EncoderCapLoop, type CappedSettings } from '../../drivers/camera/encoding-cap.js';

/** Runs the loop with a fake encoder child that records its settings and runs until aborted. */
function start(loop: EncoderCapLoop) {
  const ac = new AbortController();
  const children: CappedSettings[] = [];
  let childStarted: () => void = () => {};
  const started = () => new Promise<void>((r) => (childStarted = r));
  let next = started();
  const done = loop.run(ac.signal, (s, signal) => {
    children.push(s);
    childStarted();
    return new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
  });
  return {
    children,
    /** Resolves when the next child starts. */
    nextChild: async () => {
      await next;
      next = started();
    },
    stop: async () => {
      ac.abort();
      await done;
    },
  };
}

test('encoder caps: a cap that changes nothing is a no-op; re-capping inside the minimum run restarts once, when the window ends', async () => {
  const loop = new EncoderCapLoop({ fps: 30, bitrateKbps: 4000 }, 60_000);
  const r = start(loop);
  await r.nextChild();
  assert.deepEqual(r.children, [{ fps: 30, bitrateKbps: 4000 }]);
  loop.set('uplink', { bitrateBps: 8_000_000 }); // above the configured bitrate: never raises
  assert.equal(loop.capNoops, 1);
  // A moving uplink estimate re-caps every second: none of these may restart the encoder now.
  for (let i = 0; i < 10; i++) loop.set('uplink', { bitrateBps: 1_000_000 + i * 10_000 });
  assert.equal(loop.restartsForCap, 0, 'no restart inside the minimum run');
  assert.equal(r.children.length, 1);
  await r.stop(); // the pending restart timer goes with the run
  assert.equal(r.children.length, 1);
});

test('encoder caps: outside the minimum run a changed cap restarts the encoder with the capped settings; lifting it restores them', async () => {
  const loop = new EncoderCapLoop({ fps: 30, bitrateKbps: 4000 }, 0);
  const r = start(loop);
  await r.nextChild();
  loop.set('thermal', { fps: 15 });
  await r.nextChild();
  loop.set('uplink', { bitrateBps: 1_500_000 });
  await r.nextChild();
  loop.set('thermal', null);
  await r.nextChild();
  assert.deepEqual(r.children, [
    { fps: 30, bitrateKbps: 4000 },
    { fps: 15, bitrateKbps: 4000 },
    { fps: 15, bitrateKbps: 1500 },
    { fps: 30, bitrateKbps: 1500 },
  ]);
  assert.equal(loop.restartsForCap, 3);
  await r.stop();
});
