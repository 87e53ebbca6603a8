#!/usr/bin/env node
// Stand-in for rpicam-vid (rpicam-apps) on a machine with no Pi camera: the same options and error
// texts for what the driver uses, and real H.264 (Annex-B, SPS/PPS inline before each IDR when
// --inline) on stdout, encoded by the real ffmpeg from a live test source.
//
// FAKE_RPICAM_CAMERAS   number of attached cameras (default 1; 0 = "no cameras available")
// FAKE_RPICAM_EXIT_AFTER_MS  after this, die like a camera whose ribbon came loose
// REAL_FFMPEG  default /usr/bin/ffmpeg
import { spawn } from 'node:child_process';

const args = process.argv.slice(2);
const flags = new Set(['-n', '--nopreview', '--inline', '--flush', '--hflip', '--vflip', '--list-cameras', '-v', '--verbose']);
const valued = new Set(['-t', '--timeout', '--codec', '--width', '--height', '--framerate', '--bitrate', '-b', '--intra', '-g',
  '--profile', '--level', '--camera', '--rotation', '-o', '--output', '--denoise']);
const o = {};
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (flags.has(a)) o[a.replace(/^-+/, '')] = true;
  else if (valued.has(a)) {
    if (i + 1 >= args.length) fail(`the required argument for option '${a}' is missing`);
    o[a.replace(/^-+/, '')] = args[++i];
  } else fail(`unrecognised option '${a}'`);
}
function fail(msg) {
  process.stderr.write(`ERROR: *** ${msg} ***\n`);
  process.exit(255);
}
const cameras = Number(process.env.FAKE_RPICAM_CAMERAS ?? 1);
const ts = () => `[0:00:0${Math.floor(Math.random() * 9)}.${String(Date.now() % 1000).padStart(3, '0')}]`;
process.stderr.write(`${ts()} [${process.pid}]  INFO Camera camera_manager.cpp:297 libcamera v0.1.0+52-a858d20b\n`);
if (o['list-cameras']) {
  if (cameras === 0) {
    process.stdout.write('No cameras available!\n');
  } else {
    process.stdout.write('Available cameras\n-----------------\n');
    for (let c = 0; c < cameras; c++) {
      process.stdout.write(`${c} : imx708 [4608x2592 10-bit RGGB] (/base/soc/i2c0mux/i2c@${c}/imx708@1a)\n    Modes: 'SRGGB10_CSI2P' : 1536x864 [120.13 fps - (768, 432)/3072x1728 crop]\n                             2304x1296 [56.03 fps - (0, 0)/4608x2592 crop]\n`);
    }
  }
  process.exit(0);
}
const cam = Number(o.camera ?? 0);
if (cameras === 0 || cam >= cameras) fail('no cameras available');
if ((o.codec ?? 'h264') !== 'h264') fail(`unrecognised codec ${o.codec}`);
const out = o.o ?? o.output;
if (out !== '-') fail('this stand-in only writes to stdout (-o -)');
const w = Number(o.width ?? 640);
const h = Number(o.height ?? 480);
const fps = Number(o.framerate ?? 30);
const intra = Number(o.intra ?? o.g ?? 60);
const bitrate = Number(o.bitrate ?? o.b ?? 0);
const timeoutMs = Number(o.t ?? o.timeout ?? 5000);
if (!(w > 0 && h > 0 && fps > 0 && intra > 0)) fail('bad size/framerate/intra');
const profile = o.profile ?? 'baseline';
if (!['baseline', 'main', 'high'].includes(profile)) fail(`no such profile ${profile}`);
process.stderr.write(`${ts()} [${process.pid}]  INFO RPI pisp.cpp:1179 Sensor: /base/soc/i2c0mux/i2c@${cam}/imx708@1a - Selected sensor format: 2304x1296-SBGGR10_1X10\n`);
const ff = [
  '-hide_banner', '-loglevel', 'error', '-nostdin', '-re', '-f', 'lavfi', '-i', `testsrc2=size=${w}x${h}:rate=${fps}`,
  ...(timeoutMs > 0 ? ['-t', String(timeoutMs / 1000)] : []),
  ...(o.hflip ? ['-vf', 'hflip'] : []),
  '-pix_fmt', 'yuv420p', '-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-profile:v', profile,
  '-g', String(intra), '-keyint_min', String(intra), '-sc_threshold', '0', '-bf', '0',
  ...(bitrate > 0 ? ['-b:v', String(bitrate)] : []),
  ...(o.inline ? ['-x264-params', 'repeat-headers=1'] : []),
  '-f', 'h264', 'pipe:1',
];
const child = spawn(process.env.REAL_FFMPEG ?? '/usr/bin/ffmpeg', ff, { stdio: ['ignore', 'inherit', 'inherit'] });
const dieAfter = Number(process.env.FAKE_RPICAM_EXIT_AFTER_MS ?? 0);
let died = false;
if (dieAfter > 0) setTimeout(() => { died = true; child.kill('SIGKILL'); }, dieAfter).unref();
for (const s of ['SIGTERM', 'SIGINT']) process.on(s, () => child.kill(s));
child.on('exit', (c) => {
  if (died) {
    process.stderr.write(`${ts()} [${process.pid}] ERROR V4L2 v4l2_videodevice.cpp:1906 /dev/video4[14:cap]: Dequeue timer of 1000000.00us has expired!\n${ts()} [${process.pid}] ERROR RPI pipeline_base.cpp:1364 Camera frontend has timed out!\nERROR: *** failed to dequeue buffer ***\n`);
    process.exit(255);
  }
  process.exit(c ?? 0);
});
