// V4L2 driver: argument building per mode, and runs against a stand-in ffmpeg (test/sim/v4l2-ffmpeg.mjs)
// that checks the device/format like the v4l2 demuxer and writes real H.264/MJPEG made by ffmpeg.
// The real-device test skips with a reason when no /dev/video* exists.

import test from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { simAsset } from '../sim/assets.js';
import { createV4l2Driver, v4l2Args, v4l2DriverSchema, V4L2_DEVICE_RE } from '../../drivers/camera/v4l2.js';
import { EdgeError } from '../../runtime/engine/api.js';
import { childPids, probe, recordingOutput, tempDir, waitFor } from './helpers.js';

const STAND_IN = simAsset('v4l2-ffmpeg.mjs');
const DEVICES = { '/dev/video0': { h264: ['640x480', '1280x720'], mjpeg: ['640x480'], yuyv422: ['320x240'] }, '/dev/v4l/by-id/usb-Cam_0001-video-index0': { mjpeg: ['320x240'] } };

function withEnv(t: { after: (fn: () => void) => void }, vars: Record<string, string>): void {
  const old: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(vars)) {
    old[k] = process.env[k];
    process.env[k] = v;
  }
  t.after(() => {
    for (const [k, v] of Object.entries(old)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });
}

test('V4L2 args: passthrough copies, MJPEG as JPEG, raw encoded with the board encoder or libx264', () => {
  const h264 = v4l2Args(v4l2DriverSchema.parse({ kind: 'v4l2', inputFormat: 'h264', width: 1920, height: 1080, fps: 30 }));
  assert.deepEqual(h264.slice(h264.indexOf('-f'), h264.indexOf('-i') + 2), ['-f', 'v4l2', '-input_format', 'h264', '-video_size', '1920x1080', '-framerate', '30', '-i', '/dev/video0']);
  assert.equal(h264[h264.indexOf('-c:v') + 1], 'copy');
  assert.equal(h264.at(-1), 'pipe:1');
  const jpeg = v4l2Args(v4l2DriverSchema.parse({ kind: 'v4l2', inputFormat: 'mjpeg', output: 'jpeg' }));
  assert.deepEqual(jpeg.slice(-5), ['-c:v', 'copy', '-f', 'mjpeg', 'pipe:1']);
  const m2m = v4l2Args(v4l2DriverSchema.parse({ kind: 'v4l2', inputFormat: 'mjpeg', output: 'h264', encoder: 'auto', fps: 15, keyintSeconds: 2 }), 'h264_v4l2m2m');
  assert.equal(m2m[m2m.indexOf('-c:v') + 1], 'h264_v4l2m2m');
  assert.equal(m2m[m2m.indexOf('-g') + 1], '30');
  const x264 = v4l2Args(v4l2DriverSchema.parse({ kind: 'v4l2', inputFormat: 'yuyv422', encoder: 'auto' }));
  assert.equal(x264[x264.indexOf('-c:v') + 1], 'libx264');
  assert.ok(x264.includes('zerolatency') && x264.includes('repeat-headers=1'));
  for (const bad of ['/dev/../etc/passwd', '-i', '/dev/video0 -f', '/dev/sda', '/dev/v4l/by-id/../../x', 'video0']) assert.equal(V4L2_DEVICE_RE.test(bad), false, bad);
  assert.ok(V4L2_DEVICE_RE.test('/dev/v4l/by-id/usb-046d_HD_Pro_Webcam_C920_ABC123-video-index0'));
  assert.ok(V4L2_DEVICE_RE.test('/dev/v4l/by-path/platform-fd500000.pcie-pci-0000:01:00.0-usb-0:1.3:1.0-video-index0'));
  assert.throws(() => createV4l2Driver({ kind: 'v4l2', inputFormat: 'yuyv422', output: 'jpeg' }, { ffmpegPath: STAND_IN }), (e: unknown) => e instanceof EdgeError && e.code === 'CONFIG_INVALID');
});

test('V4L2 H.264 camera: passthrough access units, keyframe first, MIME from the SPS, decodable', async (t) => {
  withEnv(t, { FAKE_V4L2_DEVICES: JSON.stringify(DEVICES) });
  const dir = await tempDir(t, 'v4l2-');
  const drv = createV4l2Driver({ kind: 'v4l2', device: '/dev/video0', inputFormat: 'h264', width: 640, height: 480, fps: 25 }, { ffmpegPath: STAND_IN });
  const out = recordingOutput();
  const ac = new AbortController();
  const running = drv.run(out, ac.signal);
  await waitFor(() => out.frames.length >= 30, 15_000, '30 frames');
  ac.abort();
  await running;
  assert.equal(out.frames[0]!.key, true);
  assert.match(out.mimes.at(-1)!.mime, /^video\/h264;width=640;height=480;framerate=25;codecs=avc1\.[0-9A-F]{6}$/);
  const file = join(dir, 'a.h264');
  await writeFile(file, Buffer.concat(out.frames.map((f) => f.data)));
  assert.equal((await probe(file)).frames, out.frames.length);
  assert.equal(drv.stats().mode, 'h264-passthrough');
  assert.deepEqual(await childPids(/testsrc2=size=640x480:rate=25/), [], 'no process left behind');
});

test('V4L2 MJPEG camera as a JPEG track: one whole image per frame', async (t) => {
  withEnv(t, { FAKE_V4L2_DEVICES: JSON.stringify(DEVICES) });
  const dir = await tempDir(t, 'v4l2-');
  const drv = createV4l2Driver({ kind: 'v4l2', device: '/dev/v4l/by-id/usb-Cam_0001-video-index0', inputFormat: 'mjpeg', output: 'jpeg', width: 320, height: 240, fps: 15 }, { ffmpegPath: STAND_IN });
  const out = recordingOutput();
  const ac = new AbortController();
  const running = drv.run(out, ac.signal);
  await waitFor(() => out.frames.length >= 10, 15_000, '10 images');
  ac.abort();
  await running;
  assert.equal(out.mimes[0]!.mime, 'image/jpeg;width=320;height=240');
  for (const f of out.frames) {
    assert.equal(f.key, true);
    assert.deepEqual([...f.data.subarray(0, 2)], [0xff, 0xd8]);
    assert.deepEqual([...f.data.subarray(-2)], [0xff, 0xd9]);
  }
  const file = join(dir, 'a.mjpeg');
  await writeFile(file, Buffer.concat(out.frames.map((f) => f.data)));
  const p = await probe(file, 'mjpeg');
  assert.equal(p.frames, out.frames.length);
  assert.equal(p.width, 320);
});

test('V4L2 raw camera encoded to H.264 with libx264 (no hardware encoder here)', async (t) => {
  withEnv(t, { FAKE_V4L2_DEVICES: JSON.stringify(DEVICES) });
  const drv = createV4l2Driver({ kind: 'v4l2', device: '/dev/video0', inputFormat: 'yuyv422', width: 320, height: 240, fps: 20, encoder: 'libx264' }, { ffmpegPath: STAND_IN });
  const out = recordingOutput();
  const ac = new AbortController();
  const running = drv.run(out, ac.signal);
  await waitFor(() => out.frames.length >= 25, 15_000, '25 frames');
  ac.abort();
  await running;
  assert.equal(out.frames[0]!.key, true);
  assert.ok(out.frames.filter((f) => f.key).length >= 2, 'a keyframe every keyintSeconds');
  assert.match(out.mimes.at(-1)!.mime, /width=320;height=240/);
});

test('V4L2 errors: a missing device and an unplug mid-stream give typed errors with the stderr tail', async (t) => {
  withEnv(t, { FAKE_V4L2_DEVICES: JSON.stringify(DEVICES) });
  const missing = createV4l2Driver({ kind: 'v4l2', device: '/dev/video7' }, { ffmpegPath: STAND_IN });
  await assert.rejects(missing.run(recordingOutput(), new AbortController().signal), (e: unknown) => e instanceof EdgeError && e.code === 'V4L2_NOT_FOUND' && /Cannot open video device \/dev\/video7/.test(e.message));
  const wrongFmt = createV4l2Driver({ kind: 'v4l2', device: '/dev/v4l/by-id/usb-Cam_0001-video-index0', inputFormat: 'h264' }, { ffmpegPath: STAND_IN });
  await assert.rejects(wrongFmt.run(recordingOutput(), new AbortController().signal), (e: unknown) => e instanceof EdgeError && /Cannot find a proper format/.test(e.message));
  withEnv(t, { FAKE_V4L2_UNPLUG_AFTER_MS: '1500' });
  const unplug = createV4l2Driver({ kind: 'v4l2', device: '/dev/video0', inputFormat: 'h264', width: 640, height: 480, fps: 25 }, { ffmpegPath: STAND_IN });
  const out = recordingOutput();
  await assert.rejects(unplug.run(out, new AbortController().signal), (e: unknown) => e instanceof EdgeError && e.code === 'V4L2_DEVICE_LOST');
  assert.ok(out.frames.length > 0, 'frames flowed before the unplug');
  assert.equal(unplug.stats().lastErrorCode, 'V4L2_DEVICE_LOST');
});

test('V4L2 on a real camera', async (t) => {
  const devs = existsSync('/dev') ? readdirSync('/dev').filter((d) => /^video\d+$/.test(d)) : [];
  if (devs.length === 0) {
    t.skip('no /dev/video* on this machine: the real-device run needs a USB/CSI camera');
    return;
  }
  const drv = createV4l2Driver({ kind: 'v4l2', device: `/dev/${devs[0]}`, inputFormat: 'mjpeg', output: 'jpeg', width: 640, height: 480, fps: 15 });
  const out = recordingOutput();
  const ac = new AbortController();
  const running = drv.run(out, ac.signal).catch((e: unknown) => e);
  await waitFor(() => out.frames.length >= 5 || drv.stats().running === false, 15_000, 'frames from the real camera');
  ac.abort();
  const res = await running;
  assert.ok(out.frames.length >= 5, `no frames: ${String(res)}`);
});

test('V4L2 encoding cap: an encoding camera restarts its encoder at the capped fps/bitrate; a passthrough camera refuses', async (t) => {
  const raw = v4l2DriverSchema.parse({ kind: 'v4l2', inputFormat: 'yuyv422', fps: 30, bitrateKbps: 2000, keyintSeconds: 1 });
  const capped = v4l2Args(raw, 'libx264', 10);
  assert.equal(capped[capped.indexOf('-r') + 1], '10', 'frames dropped before the encoder');
  assert.equal(capped[capped.indexOf('-framerate') + 1], '30', 'the camera keeps its mode');
  assert.equal(capped[capped.indexOf('-g') + 1], '10', 'GOP in capped frames');
  assert.ok(!v4l2Args(raw, 'libx264').includes('-r'));
  const passthrough = createV4l2Driver({ kind: 'v4l2', inputFormat: 'h264' }, { ffmpegPath: STAND_IN });
  assert.equal(passthrough.setEncodingCap('thermal', { fps: 10 }), false, 'H.264 passthrough cannot re-encode');

  withEnv(t, { FAKE_V4L2_DEVICES: JSON.stringify(DEVICES) });
  const drv = createV4l2Driver({ kind: 'v4l2', device: '/dev/video0', inputFormat: 'yuyv422', width: 320, height: 240, fps: 20, bitrateKbps: 800, encoder: 'libx264' }, { ffmpegPath: STAND_IN });
  const out = recordingOutput();
  const ac = new AbortController();
  const running = drv.run(out, ac.signal);
  t.after(() => ac.abort());
  await waitFor(() => out.frames.length >= 10, 15_000, '10 frames at 20 fps');
  assert.equal(drv.setEncodingCap('thermal', { fps: 10, bitrateBps: 400_000 }), true);
  await waitFor(() => /framerate=10;/.test(out.mimes.at(-1)?.mime ?? ''), 15_000, 'the MIME at 10 fps');
  const from = out.frames.length;
  await waitFor(() => out.frames.length >= from + 5, 15_000, 'frames from the capped encoder');
  const st = drv.stats();
  assert.equal(st.restartsForCap, 1);
  assert.equal(st.encodeFps, 10);
  assert.equal(st.encodeBitrateKbps, 400);
  assert.equal(st.starts, 2, 'two encoder children');
  ac.abort();
  await running;
});
