// A process that records, for the kill -9 test: real Engine + recording service, fed with real
// H.264 access units (a file made by ffmpeg) and a 50 Hz JSON track, faster than real time.
// argv: root h264File counterFile
// stdout: `recovered <json>` after start-up recovery; then waits for `go` on stdin.
// The counter file holds (u32 video frames, u32 data records) handed to the recorder, rewritten
// after each frame: the page cache survives SIGKILL, so the parent reads the exact count.
import fs from 'node:fs';
import readline from 'node:readline';
import { AnnexBSplitter } from '../../runtime/engine/h264.js';
import { captureClockUs } from '../../runtime/engine/api.js';
import { recordingsConfigSchema } from '../../recordings/config.js';
import { createRecordingService } from '../../recordings/service.js';
import { newEngine } from './helpers.js';

const [root, h264File, counterFile] = process.argv.slice(2) as [string, string, string];
const sp = new AnnexBSplitter();
const aus = [...sp.push(fs.readFileSync(h264File)), ...sp.flush()];
const engine = newEngine();
engine.addStaticChannel({ id: 'robot' });
const svc = createRecordingService({
  config: recordingsConfigSchema.parse({ root, segmentDurationMs: 4000, fragmentDurationMs: 1000, retention: { minFreeBytes: 0 }, discoverMs: 60_000 }),
  source: engine,
});
await svc.start();
process.stdout.write(`recovered ${JSON.stringify({ run: svc.runId, ...svc.stats().recovery })}\n`);
const rl = readline.createInterface({ input: process.stdin });
await new Promise<void>((resolve) => rl.once('line', () => resolve()));

const cam = engine.publisher({ channel: 'robot', source: 'base', track: 'cam' }, { label: 'child' });
cam.setMime('video/h264');
const imu = engine.publisher({ channel: 'robot', source: 'base', track: 'imu' }, { label: 'child' });
imu.setMime('application/json');
svc.discover();
const fd = fs.openSync(counterFile, 'w');
const counter = Buffer.alloc(8);
const t0 = captureClockUs();
const w0 = Date.now();
let v = 0;
let d = 0;
for (let i = 0; ; i++) {
  const au = aus[i % aus.length]!;
  const ts = t0 + Math.round((i * 1e6) / 30);
  cam.write({ ts, wallclock: w0 + (ts - t0) / 1000, key: au.key, data: au.data });
  while (t0 + d * 20_000 < ts + 33_333) {
    const its = t0 + d * 20_000;
    imu.write({ ts: its, wallclock: w0 + (its - t0) / 1000, key: true, data: Buffer.from(`{"n":${d}}`) });
    d++;
  }
  await svc.settled();
  v = i + 1;
  counter.writeUInt32LE(v, 0);
  counter.writeUInt32LE(d, 4);
  fs.writeSync(fd, counter, 0, 8, 0);
  // ~6x real time: fast enough for many segments per run, slow enough to be a real recording
  if (i % 6 === 5) await new Promise((r) => setTimeout(r, 5));
}
