// ONVIF camera driver against a simulated ONVIF Profile S device (test/sim/onvif-device.ts: SOAP
// over HTTP, WS-UsernameToken digest, a camera clock hours off) whose GetStreamUri points at a real
// RTSP camera (gst-rtsp-server, digest auth): GetProfiles → GetStreamUri → RTSP → access units.

import test from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createOnvifDriver, resolveOnvifStream, onvifDriverSchema } from '../../drivers/camera/onvif.js';
import { EdgeError } from '../../runtime/engine/api.js';
import { startOnvifCameraSim as startOnvifSim } from '../sim/onvif-camera.js';
import { startRtspCamera } from '../sim/rtsp-camera.js';
import { probe, recordingOutput, tempDir, waitFor } from './helpers.js';

const USER = 'operator';
const PASS = 'Cam3ra!pass';

test('ONVIF: profiles → stream URI → RTSP frames; PTZ service offered; no password in stats', async (t) => {
  const dir = await tempDir(t, 'onvif-');
  const cam = await startRtspCamera({ user: USER, password: PASS });
  t.after(() => cam.stop());
  const sim = await startOnvifSim({
    username: USER,
    password: PASS,
    clockOffsetMs: 3 * 3600_000, // the camera's clock is 3 h ahead: UsernameToken must use device time
    profiles: [
      { token: 'Profile_1', name: 'mainStream', width: 320, height: 240, fps: 25, streamUri: `${cam.url}?channel=1&subtype=0`, ptz: true },
      { token: 'Profile_2', name: 'subStream', width: 176, height: 144, fps: 10, streamUri: `${cam.url}?channel=1&subtype=1` },
    ],
  });
  t.after(() => sim.close());
  const drv = createOnvifDriver({ kind: 'onvif', host: '127.0.0.1', port: sim.port, username: USER, password: PASS });
  const out = recordingOutput();
  const ac = new AbortController();
  const running = drv.run(out, ac.signal);
  await waitFor(() => out.frames.length >= 25, 20_000, '25 frames through ONVIF → RTSP');
  ac.abort();
  await running;
  assert.equal(out.frames[0]!.key, true);
  assert.match(out.mimes.at(-1)!.mime, /^video\/h264;width=320;height=240;framerate=25;/);
  const file = join(dir, 'a.h264');
  await writeFile(file, Buffer.concat(out.frames.map((f) => f.data)));
  assert.equal((await probe(file)).frames, out.frames.length);

  assert.equal(drv.stream!.profileToken, 'Profile_1');
  assert.equal(drv.stream!.streamUri, `${cam.url}?channel=1&subtype=0`);
  const ptz = drv.ptzOptions('mast');
  assert.equal(ptz.xaddr, `http://127.0.0.1:${sim.port}/onvif/ptz_service`);
  assert.equal(ptz.profileToken, 'Profile_1');
  assert.equal(ptz.hostname, '127.0.0.1');
  const st = JSON.stringify(drv.stats());
  assert.ok(!st.includes(PASS), 'no password in stats');
  assert.ok(sim.requests.some((r) => r.op === 'GetProfiles' && r.authenticated));
  assert.ok(sim.requests.some((r) => r.op === 'GetStreamUri' && r.authenticated));
  assert.equal(sim.authFailures, 0);
});

test('ONVIF: a named profile is used; a missing one, wrong credentials and a dead host give typed errors', async (t) => {
  const sim = await startOnvifSim({
    username: USER,
    password: PASS,
    profiles: [
      { token: 'main', name: 'main', width: 640, height: 480, fps: 30, streamUri: 'rtsp://127.0.0.1:1/main' },
      { token: 'sub', name: 'sub', width: 320, height: 240, fps: 15, streamUri: 'rtsp://127.0.0.1:1/sub' },
    ],
  });
  t.after(() => sim.close());
  const base = { kind: 'onvif' as const, host: '127.0.0.1', port: sim.port, username: USER, password: PASS };
  const sub = await resolveOnvifStream(onvifDriverSchema.parse({ ...base, profileToken: 'sub' }));
  assert.deepEqual([sub.profileToken, sub.streamUri, sub.width, sub.height, sub.fps, sub.ptzXAddr], ['sub', 'rtsp://127.0.0.1:1/sub', 320, 240, 15, null]);
  await assert.rejects(resolveOnvifStream(onvifDriverSchema.parse({ ...base, profileToken: 'nope' })), (e: unknown) => e instanceof EdgeError && e.code === 'ONVIF_NO_PROFILE' && /main, sub/.test(e.message));
  const wrong = 'wrong-pass-42';
  await assert.rejects(resolveOnvifStream(onvifDriverSchema.parse({ ...base, password: wrong })), (e: unknown) => e instanceof EdgeError && e.code === 'ONVIF_AUTH_FAILED' && !e.message.includes(wrong));
  assert.ok(sim.authFailures >= 1);
  await assert.rejects(resolveOnvifStream(onvifDriverSchema.parse({ ...base, port: 1, soapTimeoutMs: 1000 })), (e: unknown) => e instanceof EdgeError && e.code === 'ONVIF_CONNECT_FAILED');
  // the driver surfaces the resolve failure as its run's error and counts it
  const drv = createOnvifDriver({ ...base, password: wrong });
  await assert.rejects(drv.run(recordingOutput(), new AbortController().signal), (e: unknown) => e instanceof EdgeError && e.code === 'ONVIF_AUTH_FAILED');
  assert.equal(drv.stats().resolveFailures, 1);
  assert.throws(() => createOnvifDriver({ ...base, username: 'a<b>' }), (e: unknown) => e instanceof EdgeError && e.code === 'CONFIG_INVALID');
});
