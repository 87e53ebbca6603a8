import assert from 'node:assert/strict';
import { test } from 'node:test';
import { testPatternDriverSchema, TestPatternDriver, testPatternArgs } from '../../drivers/camera/testpattern.js';
import { SimulatedSensorDriver, simulatedSensorSchema } from '../../drivers/sensor/simulated.js';
import type { Frame } from '../../runtime/engine/api.js';
import { run, tempDir, writeFile } from '../support/app.js';

async function collectFrames(d: { run: TestPatternDriver['run'] }, n: number): Promise<{ frames: Frame[]; mimes: string[] }> {
  const frames: Frame[] = [];
  const mimes: string[] = [];
  const ac = new AbortController();
  const done = d.run(
    {
      setMime: (_t, m) => mimes.push(m),
      write: (_t, f) => {
        frames.push(f);
        if (frames.length >= n) ac.abort();
      },
    },
    ac.signal,
  );
  await done;
  return { frames, mimes };
}

test('JPEG mode: whole JPEG images that ffprobe decodes at the configured size, monotonic capture clock', async (t) => {
  const { dir, cleanup } = tempDir();
  t.after(cleanup);
  const d = new TestPatternDriver(testPatternDriverSchema.parse({ kind: 'testpattern', codec: 'jpeg', width: 320, height: 180, fps: 15 }));
  const { frames, mimes } = await collectFrames(d, 5);
  assert.equal(mimes[0], 'image/jpeg;width=320;height=180');
  for (let i = 1; i < frames.length; i++) assert.ok(frames[i]!.ts > frames[i - 1]!.ts);
  const f = writeFile(dir, 'x.jpg', frames[4]!.data);
  const { stdout } = await run('ffprobe', ['-v', 'error', '-show_entries', 'stream=codec_name,width,height', '-of', 'csv=p=0', f]);
  assert.equal(stdout.trim(), 'mjpeg,320,180');
});

test('ffmpeg arguments come only from validated numbers and enums', () => {
  assert.throws(() => testPatternDriverSchema.parse({ kind: 'testpattern', width: '1280;rm -rf /' }));
  assert.throws(() => testPatternDriverSchema.parse({ kind: 'testpattern', pattern: 'testsrc2,drawtext=textfile=/etc/shadow' }));
  assert.throws(() => testPatternDriverSchema.parse({ kind: 'testpattern', track: '../x' }));
  const args = testPatternArgs(testPatternDriverSchema.parse({ kind: 'testpattern', width: 640, height: 480, fps: 25, keyintSeconds: 2 }));
  assert.ok(args.includes('testsrc2=size=640x480:rate=25'));
  assert.equal(args[args.indexOf('-g') + 1], '50');
});

test('simulated sensor: the configured rate, deterministic sequential records', async () => {
  const d = new SimulatedSensorDriver(simulatedSensorSchema.parse({ kind: 'simulated', sensor: 'odometry', rateHz: 200 }));
  const { frames } = await collectFrames(d as unknown as TestPatternDriver, 40);
  const recs = frames.map((f) => JSON.parse(f.data.toString()) as { seq: number; x: number });
  recs.forEach((r, i) => assert.equal(r.seq, i));
  assert.ok(frames.every((f) => f.key));
  assert.throws(() => simulatedSensorSchema.parse({ kind: 'simulated', rateHz: 5000 }));
});
