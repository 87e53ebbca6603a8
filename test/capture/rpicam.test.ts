// rpicam driver: arguments, tool resolution, and runs against the rpicam-vid stand-in
// (test/sim/rpicam-vid.mjs: same options and error texts, real H.264 from ffmpeg). The real camera
// test skips with a reason when no rpicam-vid/libcamera-vid is installed.

import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { simAsset } from '../sim/assets.js';
import { createRpicamDriver, resolveRpicamTool, rpicamArgs, rpicamDriverSchema } from '../../drivers/camera/rpicam.js';
import { nalUnits, nalType } from '../../runtime/engine/h264.js';
import { EdgeError } from '../../runtime/engine/api.js';
import { childPids, probe, recordingOutput, tempDir, waitFor } from './helpers.js';

const STAND_IN = simAsset('rpicam-vid.mjs');

test('rpicam args: size/fps/bitrate/intra from config, inline headers, stdout', () => {
  const a = rpicamArgs(rpicamDriverSchema.parse({ kind: 'rpicam', width: 1920, height: 1080, fps: 30, bitrateKbps: 4000, intraFrames: 15, profile: 'main', vflip: true, rotation: 180, camera: 1 }));
  const v = (k: string) => a[a.indexOf(k) + 1];
  assert.equal(v('--camera'), '1');
  assert.equal(v('-t'), '0');
  assert.equal(v('--codec'), 'h264');
  assert.equal(v('--width'), '1920');
  assert.equal(v('--framerate'), '30');
  assert.equal(v('--bitrate'), '4000000');
  assert.equal(v('--intra'), '15');
  assert.equal(v('--profile'), 'main');
  assert.equal(v('--rotation'), '180');
  assert.ok(a.includes('--inline') && a.includes('--flush') && a.includes('-n') && a.includes('--vflip') && !a.includes('--hflip'));
  assert.deepEqual(a.slice(-2), ['-o', '-']);
  assert.equal(rpicamArgs(rpicamDriverSchema.parse({ kind: 'rpicam', fps: 25 }))[rpicamArgs(rpicamDriverSchema.parse({ kind: 'rpicam', fps: 25 })).indexOf('--intra') + 1], '25', 'default: one IDR a second');
});

test('rpicam tool resolution: rpicam-vid first, libcamera-vid on older images, a typed error otherwise', async (t) => {
  const dir = await tempDir(t, 'rpicam-path-');
  const old = join(dir, 'old');
  const both = join(dir, 'both');
  await mkdir(old);
  await mkdir(both);
  await symlink(STAND_IN, join(old, 'libcamera-vid'));
  await symlink(STAND_IN, join(both, 'libcamera-vid'));
  await symlink(STAND_IN, join(both, 'rpicam-vid'));
  assert.equal(resolveRpicamTool('auto', { searchPath: old }), join(old, 'libcamera-vid'));
  assert.equal(resolveRpicamTool('auto', { searchPath: `${old}:${both}` }), join(both, 'rpicam-vid'));
  assert.throws(() => resolveRpicamTool('rpicam-vid', { searchPath: old }), (e: unknown) => e instanceof EdgeError && e.code === 'RPICAM_NOT_FOUND');
  await writeFile(join(dir, 'notexec'), 'x');
  assert.throws(() => resolveRpicamTool('auto', { toolPath: join(dir, 'notexec') }), (e: unknown) => e instanceof EdgeError && e.code === 'RPICAM_NOT_FOUND');
});

test('rpicam stand-in: inline SPS/PPS before every IDR at the intra period, MIME from SPS, decodable', async (t) => {
  const dir = await tempDir(t, 'rpicam-');
  // A size/rate no other test uses, so the orphan check below sees only this test's processes.
  const drv = createRpicamDriver({ kind: 'rpicam', width: 336, height: 240, fps: 25, intraFrames: 10, bitrateKbps: 800 }, { toolPath: STAND_IN });
  const out = recordingOutput();
  const ac = new AbortController();
  const running = drv.run(out, ac.signal);
  await waitFor(() => out.frames.length >= 31, 15_000, '31 frames');
  ac.abort();
  await running;
  const keys = out.frames.map((f, i) => (f.key ? i : -1)).filter((i) => i >= 0);
  assert.deepEqual(keys.slice(0, 4), [0, 10, 20, 30]);
  for (const i of keys) {
    const types = nalUnits(out.frames[i]!.data).map(nalType);
    assert.ok(types.indexOf(7) >= 0 && types.indexOf(7) < types.indexOf(5), `SPS before IDR in frame ${i}: ${types}`);
  }
  assert.match(out.mimes.at(-1)!.mime, /^video\/h264;width=336;height=240;framerate=25;codecs=avc1\.42/);
  const file = join(dir, 'a.h264');
  await writeFile(file, Buffer.concat(out.frames.map((f) => f.data)));
  assert.equal((await probe(file)).frames, out.frames.length);
  // The group was SIGKILLed; give the kernel a moment to reap before declaring an orphan.
  let left = await childPids(/testsrc2=size=336x240:rate=25 /);
  for (let i = 0; i < 30 && left.length > 0; i++) {
    await new Promise((r) => setTimeout(r, 100));
    left = await childPids(/testsrc2=size=336x240:rate=25 /);
  }
  assert.deepEqual(left, [], 'no process left behind');
});

test('rpicam errors: no camera, and a camera lost mid-stream, give typed errors with the tool\'s stderr', async (t) => {
  const old = process.env.FAKE_RPICAM_CAMERAS;
  process.env.FAKE_RPICAM_CAMERAS = '0';
  t.after(() => {
    if (old === undefined) delete process.env.FAKE_RPICAM_CAMERAS;
    else process.env.FAKE_RPICAM_CAMERAS = old;
    delete process.env.FAKE_RPICAM_EXIT_AFTER_MS;
  });
  const none = createRpicamDriver({ kind: 'rpicam' }, { toolPath: STAND_IN });
  await assert.rejects(none.run(recordingOutput(), new AbortController().signal), (e: unknown) => e instanceof EdgeError && e.code === 'RPICAM_NOT_FOUND' && /no cameras available/.test(e.message));
  process.env.FAKE_RPICAM_CAMERAS = '1';
  process.env.FAKE_RPICAM_EXIT_AFTER_MS = '1500';
  const lost = createRpicamDriver({ kind: 'rpicam', width: 320, height: 240, fps: 25 }, { toolPath: STAND_IN });
  const out = recordingOutput();
  await assert.rejects(lost.run(out, new AbortController().signal), (e: unknown) => e instanceof EdgeError && e.code === 'RPICAM_CAMERA_LOST' && /failed to dequeue buffer/.test(e.message));
  assert.ok(out.frames.length > 0);
});

test('rpicam on a real Raspberry Pi camera', async (t) => {
  let tool: string;
  try {
    tool = resolveRpicamTool('auto');
  } catch {
    t.skip('no rpicam-vid or libcamera-vid on PATH: the real-camera run needs a Raspberry Pi with a CSI camera');
    return;
  }
  const drv = createRpicamDriver({ kind: 'rpicam', width: 640, height: 480, fps: 30 }, { toolPath: tool });
  const out = recordingOutput();
  const ac = new AbortController();
  const running = drv.run(out, ac.signal).catch((e: unknown) => e);
  await waitFor(() => out.frames.length >= 10 || drv.stats().running === false, 15_000, 'frames from the real camera');
  ac.abort();
  const res = await running;
  assert.ok(out.frames.length >= 10, `no frames: ${String(res)}`);
  assert.equal(out.frames[0]!.key, true);
});

test('rpicam encoding cap: rpicam-vid restarts with the capped --framerate/--bitrate, and again when it is lifted', async (t) => {
  const drv = createRpicamDriver({ kind: 'rpicam', width: 320, height: 240, fps: 20, bitrateKbps: 800 }, { toolPath: STAND_IN });
  const out = recordingOutput();
  const ac = new AbortController();
  const running = drv.run(out, ac.signal);
  t.after(() => ac.abort());
  await waitFor(() => out.frames.length >= 10, 15_000, '10 frames at 20 fps');
  assert.equal(drv.setEncodingCap('thermal', { fps: 10, bitrateBps: 300_000 }), true);
  assert.equal(drv.setEncodingCap('uplink', { bitrateBps: 500_000 }), true, 'a higher cap from another caller changes nothing');
  await waitFor(() => /framerate=10;/.test(out.mimes.at(-1)?.mime ?? ''), 15_000, 'the MIME at 10 fps');
  const first = out.frames.length;
  await waitFor(() => out.frames.length >= first + 5, 15_000, 'frames from the capped rpicam-vid');
  const st = drv.stats();
  assert.equal(st.restartsForCap, 1);
  assert.equal(st.encodeBitrateKbps, 300);
  assert.equal(st.capsBy, 'thermal,uplink');
  assert.deepEqual(rpicamArgs(rpicamDriverSchema.parse({ kind: 'rpicam', fps: 10, bitrateKbps: 300 })).filter((a, i, all) => all[i - 1] === '--framerate' || all[i - 1] === '--bitrate'), ['10', '300000']);
  drv.setEncodingCap('thermal', null);
  await waitFor(() => /framerate=20;/.test(out.mimes.at(-1)?.mime ?? ''), 15_000, 'back at 20 fps once the thermal cap is lifted');
  assert.equal(drv.stats().restartsForCap, 2);
  ac.abort();
  await running;
});
