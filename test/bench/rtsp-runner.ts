// A capture bench helper, run as its own plain `node` process (bundled by capture.bench.ts with
// esbuild, as the compiled runtime runs on a robot — no tsx loader in the measured process):
// pulls one RTSP URL with our driver for `ms` milliseconds and prints "first <ms>" at the first
// access unit and "frames <n>" at the end.
//   node rtsp-runner.mjs <url> <native|ffmpeg> <ms>

import { createRtspDriver } from '../../drivers/camera/rtsp.js';

const [url, client, ms] = process.argv.slice(2);
const drv = createRtspDriver({ kind: 'rtsp', url: url ?? '', client: client === 'ffmpeg' ? 'ffmpeg' : 'native', transport: 'tcp' });
const ac = new AbortController();
let frames = 0;
const t0 = performance.now();
const run = drv.run(
  {
    setMime() {},
    write: () => {
      if (frames++ === 0) process.stdout.write(`first ${Math.round(performance.now() - t0)}\n`);
    },
  },
  ac.signal,
);
const timer = setTimeout(() => ac.abort(), Number(ms ?? 10_000));
process.on('SIGTERM', () => ac.abort());
await run.catch((e: Error) => process.stdout.write(`error ${e.message}\n`));
clearTimeout(timer);
process.stdout.write(`frames ${frames}\n`);
