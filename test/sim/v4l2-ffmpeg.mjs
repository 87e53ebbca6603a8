#!/usr/bin/env node
// Stand-in for `ffmpeg -f v4l2 … -i /dev/videoN …` on a machine with no camera: checks the device
// and format against a simulated device table, then runs the real ffmpeg with a live test source in
// place of the device, so the driver gets real H.264 / MJPEG bytes on stdout exactly as it would.
//
// FAKE_V4L2_DEVICES  JSON {"/dev/video0": {"h264": ["1280x720"], "mjpeg": ["640x480"], "yuyv422": ["640x480"]}}
// FAKE_V4L2_UNPLUG_AFTER_MS  after this, behave like an unplugged camera (ENODEV, exit 1)
// REAL_FFMPEG  the real binary (default /usr/bin/ffmpeg)
import { spawn } from 'node:child_process';

const argv = process.argv.slice(2);
const devices = JSON.parse(process.env.FAKE_V4L2_DEVICES ?? '{}');
const real = process.env.REAL_FFMPEG ?? '/usr/bin/ffmpeg';
const tag = '[video4linux2,v4l2 @ 0x55d0c0ffee00]';

const iIdx = argv.indexOf('-i');
const fIdx = argv.indexOf('-f');
if (iIdx < 0 || fIdx < 0 || fIdx > iIdx || argv[fIdx + 1] !== 'v4l2') {
  // not a capture: behave as the real ffmpeg
  const p = spawn(real, argv, { stdio: 'inherit' });
  p.on('exit', (c, s) => process.exit(c ?? (s ? 1 : 0)));
} else {
  const opt = (name, def) => {
    const k = argv.indexOf(name);
    return k >= 0 && k < iIdx ? argv[k + 1] : def;
  };
  const device = argv[iIdx + 1];
  const fmt = opt('-input_format', 'yuyv422');
  const size = opt('-video_size', '640x480');
  const rate = opt('-framerate', '30');
  const dev = devices[device];
  if (!dev) {
    process.stderr.write(`${tag} Cannot open video device ${device}: No such file or directory\n${device}: No such file or directory\n`);
    process.exit(1);
  }
  if (!dev[fmt]) {
    process.stderr.write(`${tag} Cannot find a proper format for codec '${fmt === 'h264' ? 'h264' : fmt === 'mjpeg' ? 'mjpeg' : 'rawvideo'}' (id 27), pixel format 'none' (id -1).\n${device}: Invalid argument\n`);
    process.exit(1);
  }
  const [w, h] = dev[fmt].includes(size) ? size.split('x') : dev[fmt][0].split('x');
  if (!dev[fmt].includes(size)) process.stderr.write(`${tag} The V4L2 driver changed the video from ${size} to ${w}x${h}\n`);
  // input options are everything from the first -f v4l2 to the device
  const pre = argv.slice(0, argv.indexOf('-f'));
  let post = argv.slice(iIdx + 2);
  const src = ['-re', '-f', 'lavfi', '-i', `testsrc2=size=${w}x${h}:rate=${rate}`];
  const cv = post.indexOf('-c:v');
  if (cv >= 0 && post[cv + 1] === 'copy') {
    // what the camera itself would have produced
    const cam = fmt === 'h264'
      ? ['-pix_fmt', 'yuv420p', '-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-profile:v', 'main', '-g', String(rate), '-bf', '0']
      : ['-pix_fmt', 'yuvj422p', '-c:v', 'mjpeg', '-q:v', '6'];
    post = [...post.slice(0, cv), ...cam, ...post.slice(cv + 2)];
  }
  const child = spawn(real, [...pre.filter((a) => a !== '-fflags' && a !== 'nobuffer'), ...src, ...post], { stdio: ['ignore', 'inherit', 'inherit'] });
  const unplug = Number(process.env.FAKE_V4L2_UNPLUG_AFTER_MS ?? 0);
  let unplugged = false;
  if (unplug > 0) {
    setTimeout(() => {
      unplugged = true;
      child.kill('SIGKILL');
    }, unplug).unref();
  }
  for (const s of ['SIGTERM', 'SIGINT']) process.on(s, () => child.kill(s));
  child.on('exit', (c, s) => {
    if (unplugged) {
      process.stderr.write(`${tag} ioctl(VIDIOC_DQBUF): No such device\n${device}: No such device\n`);
      process.exit(1);
    }
    process.exit(c ?? (s ? 255 : 0));
  });
}
