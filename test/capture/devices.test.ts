// `moth-edge devices`: parsers on captured v4l2-ctl and ffmpeg output, and the listing over a
// fixture sysfs/dev tree with the v4l2-ctl stand-in (no camera exists on this machine).

import test from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { simAsset } from '../sim/assets.js';
import { listV4l2Devices, parseFfmpegFormats, parseV4l2Formats, parseV4l2Info, runDevicesCli, suggestConfig } from '../../drivers/camera/devices.js';
import { tempDir } from './helpers.js';

const V4L2CTL = simAsset('v4l2-ctl.mjs');

const C920 = `Driver Info:
	Driver name      : uvcvideo
	Card type        : HD Pro Webcam C920
	Bus info         : usb-0000:01:00.0-1.3
	Driver version   : 6.1.21
	Capabilities     : 0x84a00001
		Video Capture
		Metadata Capture
		Streaming
		Extended Pix Format
		Device Capabilities
	Device Caps      : 0x04200001
		Video Capture
		Streaming
		Extended Pix Format
Media Driver Info:
	Driver name      : uvcvideo
	Model            : HD Pro Webcam C920
ioctl: VIDIOC_ENUM_FMT
	Type: Video Capture

	[0]: 'YUYV' (YUYV 4:2:2)
		Size: Discrete 640x480
			Interval: Discrete 0.033s (30.000 fps)
			Interval: Discrete 0.067s (15.000 fps)
		Size: Discrete 1920x1080
			Interval: Discrete 0.200s (5.000 fps)
	[1]: 'H264' (H.264, compressed)
		Size: Discrete 1280x720
			Interval: Discrete 0.033s (30.000 fps)
		Size: Discrete 1920x1080
			Interval: Discrete 0.033s (30.000 fps)
			Interval: Discrete 0.042s (24.000 fps)
	[2]: 'MJPG' (Motion-JPEG, compressed)
		Size: Discrete 1920x1080
			Interval: Discrete 0.033s (30.000 fps)
`;

const C920_META = `Driver Info:
	Driver name      : uvcvideo
	Card type        : HD Pro Webcam C920
	Bus info         : usb-0000:01:00.0-1.3
	Device Caps      : 0x04a00000
		Metadata Capture
		Streaming
		Extended Pix Format
ioctl: VIDIOC_ENUM_FMT
	Type: Video Capture

`;

const UNICAM = `Driver Info:
	Driver name      : unicam
	Card type        : unicam
	Bus info         : platform:fe801000.csi
	Device Caps      : 0x05200001
		Video Capture
		Read/Write
		Streaming
ioctl: VIDIOC_ENUM_FMT
	Type: Video Capture

	[0]: 'pBAA' (10-bit Bayer BGBG/GRGR Packed)
		Size: Stepwise 16x16 - 16376x16376 with step 1/1
	[1]: 'YUYV' (YUYV 4:2:2)
		Size: Stepwise 16x16 - 16376x16376 with step 1/1
`;

const FFMPEG_LIST = `[video4linux2,v4l2 @ 0x5581f0a7c840] Raw       :     yuyv422 :           YUYV 4:2:2 : 640x480 160x90 1920x1080
[video4linux2,v4l2 @ 0x5581f0a7c840] Compressed:        h264 :                H.264 : 1280x720 1920x1080
[video4linux2,v4l2 @ 0x5581f0a7c840] Compressed:       mjpeg :          Motion-JPEG : 1920x1080
[video4linux2,v4l2 @ 0x5581f0a7c840] Raw       :     yuv420p : Planar YUV 4:2:0 : {32-2592, 2}x{32-1944, 2}
/dev/video0: Immediate exit requested
`;

test('devices: v4l2-ctl and ffmpeg listings parse into formats, sizes, rates and inputFormat', () => {
  const info = parseV4l2Info(C920);
  assert.deepEqual(info, { driver: 'uvcvideo', card: 'HD Pro Webcam C920', bus: 'usb-0000:01:00.0-1.3', deviceCaps: ['Video Capture', 'Streaming', 'Extended Pix Format'] });
  const f = parseV4l2Formats(C920);
  assert.deepEqual(f.map((x) => [x.fourcc, x.inputFormat, x.compressed]), [['YUYV', 'yuyv422', false], ['H264', 'h264', true], ['MJPG', 'mjpeg', true]]);
  assert.deepEqual(f[1]!.sizes, [{ width: 1280, height: 720, fps: [30] }, { width: 1920, height: 1080, fps: [30, 24] }]);
  assert.equal(f[1]!.description, 'H.264');
  const u = parseV4l2Formats(UNICAM);
  assert.deepEqual(u[1]!.range, { minWidth: 16, minHeight: 16, maxWidth: 16376, maxHeight: 16376 });
  assert.equal(u[0]!.inputFormat, undefined);
  const ff = parseFfmpegFormats(FFMPEG_LIST);
  assert.deepEqual(ff.map((x) => [x.fourcc, x.inputFormat]), [['yuyv422', 'yuyv422'], ['h264', 'h264'], ['mjpeg', 'mjpeg'], ['yuv420p', undefined]]);
  assert.deepEqual(ff[1]!.sizes.map((s) => `${s.width}x${s.height}`), ['1280x720', '1920x1080']);
  assert.deepEqual(ff[3]!.range, { minWidth: 32, maxWidth: 2592, minHeight: 32, maxHeight: 1944 });
  fc.assert(
    fc.property(fc.string({ maxLength: 500 }), (s) => {
      parseV4l2Info(s);
      parseV4l2Formats(s);
      parseFfmpegFormats(s);
    }),
    { numRuns: 1000 },
  );
});

test('moth-edge devices: sysfs + by-id links + v4l2-ctl; metadata nodes marked; a config suggested', async (t) => {
  const root = await tempDir(t, 'devices-');
  const sys = join(root, 'sys');
  const dev = join(root, 'dev');
  const out = join(root, 'v4l2ctl');
  for (const [n, name] of [['video0', 'HD Pro Webcam C920'], ['video1', 'HD Pro Webcam C920'], ['video2', 'unicam-image'], ['video9', 'broken']] as const) {
    await mkdir(join(sys, 'class', 'video4linux', n), { recursive: true });
    await writeFile(join(sys, 'class', 'video4linux', n, 'name'), `${name}\n`);
  }
  await mkdir(join(dev, 'v4l', 'by-id'), { recursive: true });
  await mkdir(join(dev, 'v4l', 'by-path'), { recursive: true });
  await symlink('../../video0', join(dev, 'v4l', 'by-id', 'usb-046d_HD_Pro_Webcam_C920_8A1B2C3D-video-index0'));
  await symlink('../../video1', join(dev, 'v4l', 'by-id', 'usb-046d_HD_Pro_Webcam_C920_8A1B2C3D-video-index1'));
  await symlink('../../video0', join(dev, 'v4l', 'by-path', 'platform-fd500000.pcie-pci-0000:01:00.0-usb-0:1.3:1.0-video-index0'));
  await mkdir(out);
  await writeFile(join(out, 'video0.txt'), C920);
  await writeFile(join(out, 'video1.txt'), C920_META);
  await writeFile(join(out, 'video2.txt'), UNICAM);
  const old = process.env.FAKE_V4L2CTL_DIR;
  process.env.FAKE_V4L2CTL_DIR = out;
  t.after(() => {
    if (old === undefined) delete process.env.FAKE_V4L2CTL_DIR;
    else process.env.FAKE_V4L2CTL_DIR = old;
  });
  const deps = { sysRoot: sys, devRoot: dev, v4l2ctl: V4L2CTL };
  const list = await listV4l2Devices(deps);
  assert.deepEqual(list.map((d) => [d.path, d.capture, d.source]), [['/dev/video0', true, 'v4l2-ctl'], ['/dev/video1', false, 'v4l2-ctl'], ['/dev/video2', true, 'v4l2-ctl'], ['/dev/video9', true, 'sysfs']]);
  assert.deepEqual(list[0]!.byId, ['/dev/v4l/by-id/usb-046d_HD_Pro_Webcam_C920_8A1B2C3D-video-index0']);
  assert.equal(list[0]!.byPath.length, 1);
  assert.match(list[3]!.error ?? '', /Cannot open device \/dev\/video9/);
  assert.deepEqual(suggestConfig(list[0]!), { kind: 'v4l2', device: '/dev/v4l/by-id/usb-046d_HD_Pro_Webcam_C920_8A1B2C3D-video-index0', inputFormat: 'h264', width: 1920, height: 1080, fps: 30 });
  assert.equal(suggestConfig(list[1]!), null, 'a metadata node is no camera');

  let text = '';
  const io = { out: (s: string) => void (text += s), err: (s: string) => void (text += s) };
  assert.equal(await runDevicesCli([], io, deps), 0);
  assert.match(text, /^\/dev\/video0 {2}HD Pro Webcam C920 {2}\(uvcvideo, usb-0000:01:00.0-1.3\)$/m);
  assert.match(text, /H264 {5}H\.264 {2}→ inputFormat "h264"\n {6}1280x720@30 1920x1080@30/);
  assert.match(text, /^\/dev\/video1 .*\[not a capture node\]$/m);
  assert.match(text, /16x16 … 16376x16376/);
  let json = '';
  assert.equal(await runDevicesCli(['--json'], { out: (s) => void (json += s), err: () => {} }, deps), 0);
  assert.equal((JSON.parse(json) as Array<{ suggested: unknown }>)[0]!.suggested !== null, true);
  assert.equal(await runDevicesCli(['--bogus'], { out: () => {}, err: () => {} }, deps), 2);
  let none = '';
  assert.equal(await runDevicesCli([], { out: (s) => void (none += s), err: () => {} }, { sysRoot: join(root, 'nothing'), devRoot: dev }), 0);
  assert.match(none, /no V4L2 devices/);
});

test('moth-edge devices on this machine', async (t) => {
  const list = await listV4l2Devices();
  if (list.length === 0) {
    t.skip('no /sys/class/video4linux devices here: nothing real to list');
    return;
  }
  assert.ok(list.every((d) => d.path.startsWith('/dev/video')));
});
