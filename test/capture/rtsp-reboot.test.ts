// Issue 14: an RTSP camera that reboots (5 s without power) is back in the runtime within 2 s of
// its return — with the shipped supervisor and RTSP defaults, in the runtime a user runs (the CLI).
// A camera that went away is retried on the fast ladder (250 ms → 1 s), not the refusal one.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import WebSocket from 'ws';
import { startRtspCamera, type RtspCamera } from '../sim/rtsp-camera.js';
import { freePort, startRuntime } from '../support/runtime-process.js';
import { tempDir, waitFor } from './helpers.js';

const CH = 'ca3e0000000000000000';

test('RTSP camera rebooting for 5 s: frames flow again within 2 s of its return (shipped defaults)', { timeout: 120_000 }, async (t) => {
  const dir = await tempDir(t, 'rtsp-reboot-');
  const port = await freePort();
  let cam: RtspCamera = await startRtspCamera({ port, fps: 25, gop: 25 });
  t.after(() => cam.stop());
  const rt = await startRuntime(t, dir, 'cam.yaml', [
    'server: { port: 0 }',
    'log: { level: warn }',
    'recordings: { enabled: false }',
    'channels:',
    `  - id: ${CH}`,
    '    name: yard',
    '    sources:',
    '      - name: base',
    `        driver: { kind: rtsp, url: "${cam.url}" }`,
  ].join('\n'));
  // A viewer of the local track: it stays subscribed while the camera is away.
  const frames: number[] = [];
  const ws = new WebSocket(`ws://127.0.0.1:${rt.port}/pang/ws/sub?channel=${CH}&source=base&track=video&timeout=3600`);
  t.after(() => ws.terminate());
  ws.on('message', (_d, binary) => {
    if (binary) frames.push(Date.now());
  });
  await waitFor(() => frames.length >= 25, 20_000, 'frames from the camera');

  const reboots: number[] = [];
  for (let i = 0; i < 2; i++) {
    await cam.kill(); // power lost: no RTSP TEARDOWN, the TCP session just ends
    await new Promise((r) => setTimeout(r, 5000));
    cam = await startRtspCamera({ port, fps: 25, gop: 25 });
    const back = Date.now();
    await waitFor(() => frames.some((at) => at > back), 15_000, 'frames again after the reboot');
    reboots.push(frames.find((at) => at > back)! - back);
    await new Promise((r) => setTimeout(r, 3000));
  }
  const st = (await rt.api<{ drivers: Array<{ restarts: number; retries: { refused: number; network: number } }> }>('/api/stats')).drivers[0]!;
  t.diagnostic(`frames again ${reboots.join(', ')} ms after the camera was back; driver restarts ${st.restarts}, retries ${JSON.stringify(st.retries)}`);
  for (const ms of reboots) assert.ok(ms <= 2000, `frames again ${ms} ms after the camera's return (≤ 2000)`);
  assert.equal(st.retries.refused, 0, 'a camera that went away is never treated as a refusal');
  assert.ok(st.retries.network >= 2);
});
