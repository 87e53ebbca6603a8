// Thermal step-down on running cameras: a fixture sysfs tree heats up → the governor caps every
// video track through the engine → the real testpattern ffmpeg restarts at the lower fps/bitrate
// inside the same driver run (one track, the consumer continues at a keyframe) → it cools down →
// the cap is lifted and the configured rate comes back. Passthrough sources are counted unserved.

import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { capForLevel, createThermalGovernor, governedTracks } from '../../board/thermal-governor.js';
import { createThermalMonitor } from '../../board/thermal.js';
import { PROFILES, profileFor } from '../../board/profiles.js';
import { testPatternDriverSchema, TestPatternDriver } from '../../drivers/camera/testpattern.js';
import type { EncodingCap, Frame, SourceDriver, TrackRef } from '../../runtime/engine/api.js';
import { Engine } from '../../runtime/engine/engine.js';
import { DriverSupervisor } from '../../runtime/supervisor.js';
import { silentLogger } from '../../runtime/log.js';
import { setZone, TREES, writeTree } from './fixtures.js';

const run = promisify(execFile);

async function waitFor(pred: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** The frame rate x264 wrote into the SPS (VUI timing), as ffprobe reads it. */
async function encodedRate(dir: string, name: string, frames: Frame[]): Promise<{ rate: string; frames: number }> {
  const file = join(dir, name);
  await writeFile(file, Buffer.concat(frames.map((f) => f.data)));
  const { stdout } = await run('ffprobe', ['-v', 'error', '-f', 'h264', '-count_frames', '-select_streams', 'v:0', '-show_entries', 'stream=r_frame_rate,nb_read_frames', '-of', 'json', file]);
  const s = (JSON.parse(stdout) as { streams: Array<{ r_frame_rate: string; nb_read_frames: string }> }).streams[0]!;
  return { rate: s.r_frame_rate, frames: Number(s.nb_read_frames) };
}

test('capForLevel: the profile step applied to the configured fps/bitrate; null at level 0', () => {
  const steps = PROFILES.pi4.thermal.steps;
  assert.equal(capForLevel(0, steps[0], { fps: 30, bitrateKbps: 4000 }), null);
  assert.deepEqual(capForLevel(1, steps[1], { fps: 30, bitrateKbps: 4000 }), { fps: 22, bitrateBps: 3_000_000 });
  assert.deepEqual(capForLevel(2, steps[2], { fps: 30, bitrateKbps: 4000 }), { fps: 15, bitrateBps: 2_000_000 });
  assert.deepEqual(capForLevel(3, steps[3], { fps: 2, bitrateKbps: 100 }), { fps: 1, bitrateBps: 64_000 }, 'floors: 1 fps, 64 kbit/s');
  const tracks = governedTracks([
    { channel: 'c', source: 'front', driver: { kind: 'testpattern', track: 'video', fps: 25, bitrateKbps: 1500 } },
    { channel: 'c', source: 'mast', driver: { kind: 'rtsp' } },
    { channel: 'c', source: 'still', driver: { kind: 'testpattern', codec: 'jpeg', fps: 5, bitrateKbps: 100 } },
    { channel: 'c', source: 'gps', driver: { kind: 'gps' } },
  ]);
  assert.deepEqual(tracks.map((t) => `${t.ref.source}/${t.ref.track}@${t.fps}/${t.bitrateKbps}`), ['front/video@25/1500', 'mast/video@30/4000']);
});

test('governor: every video track is asked on each level change; unserved (passthrough) counted; close stops it', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'thermal-gov-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  await writeTree(root, TREES.pi4!);
  const mon = createThermalMonitor({ profile: profileFor({ id: 'pi4', memMb: 3793 }), root, autoStart: false });
  t.after(() => mon.close());
  const asked: Array<{ ref: TrackRef; by: string; cap: EncodingCap | null }> = [];
  const engine = { requestEncodingCap: (ref: TrackRef, by: string, cap: EncodingCap | null) => (asked.push({ ref, by, cap }), ref.source === 'front') };
  const gov = createThermalGovernor({ thermal: mon, engine, tracks: [
    { ref: { channel: 'c', source: 'front', track: 'video' }, fps: 30, bitrateKbps: 2000 },
    { ref: { channel: 'c', source: 'mast', track: 'video' }, fps: 30, bitrateKbps: 4000 },
  ] });
  await mon.sample();
  assert.equal(asked.length, 0, 'cool: nothing asked');
  await setZone(root, 0, 'cpu-thermal', 83_000);
  await mon.sample();
  assert.deepEqual(asked.map((a) => [a.ref.source, a.by, a.cap]), [['front', 'thermal', { fps: 7, bitrateBps: 700_000 }], ['mast', 'thermal', { fps: 7, bitrateBps: 1_400_000 }]]);
  assert.deepEqual({ served: gov.stats().served, unserved: gov.stats().unserved, level: gov.stats().level }, { served: 1, unserved: 1, level: 3 });
  await setZone(root, 0, 'cpu-thermal', 40_000);
  await mon.sample();
  assert.deepEqual(asked.slice(2).map((a) => a.cap), [null, null], 'back to level 0: caps lifted');
  gov.close();
  gov.close();
  await setZone(root, 0, 'cpu-thermal', 90_000);
  await mon.sample();
  assert.equal(asked.length, 4, 'closed: no more requests');
  // a robot that boots hot is capped at construction
  const hot = createThermalGovernor({ thermal: mon, engine, tracks: [{ ref: { channel: 'c', source: 'front', track: 'video' }, fps: 30, bitrateKbps: 2000 }] });
  assert.equal(asked.length, 5);
  hot.close();
});

test('thermal step-down on a running testpattern camera: hot → ffmpeg restarts at the capped fps, one track, keyframe first; cool → restored', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'thermal-cam-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  await writeTree(root, TREES.pi4!); // 72 / 78 / 82 °C, steps 0.75 / 0.5 / 0.25
  const mon = createThermalMonitor({ profile: profileFor({ id: 'pi4', memMb: 3793 }), root, autoStart: false });
  t.after(() => mon.close());
  const engine = new Engine({ memoryCeilingBytes: 64 << 20, consumerQueueBytes: 16 << 20, gopCacheBytes: 4 << 20, trackLingerMs: 30_000, instantChannelTtlMs: 3_600_000, maxInstantChannels: 4 });
  t.after(() => engine.close());
  const CHAN = 'thermalchan0000000001';
  engine.addStaticChannel({ id: CHAN });
  const cfg = testPatternDriverSchema.parse({ kind: 'testpattern', width: 320, height: 240, fps: 20, bitrateKbps: 600, keyintSeconds: 0.5 });
  const drv = new TestPatternDriver(cfg);
  // a passthrough camera on the same robot: no setEncodingCap at all
  const passthrough: SourceDriver = { kind: 'rtsp', describe: () => [{ track: 'video', mime: 'video/h264' }], run: (_o, s) => new Promise((r) => s.addEventListener('abort', () => r(), { once: true })), stats: () => ({}) };
  const sup = new DriverSupervisor('front', drv, engine, CHAN, 'front', { restartInitialMs: 100, restartMaxMs: 500, healthyAfterMs: 5000, log: silentLogger(), random: () => 0 });
  const sup2 = new DriverSupervisor('mast', passthrough, engine, CHAN, 'mast', { restartInitialMs: 100, restartMaxMs: 500, healthyAfterMs: 5000, log: silentLogger(), random: () => 0 });
  const got: Array<{ frame: Frame; mime: string | undefined }> = [];
  const consumer = engine.subscribe({ channel: CHAN, source: 'front', track: 'video' }, { label: 'test' });
  let closedReason: string | null = null;
  consumer.onClose((r) => (closedReason = r));
  const drain = () => {
    for (let it = consumer.next(); it; it = consumer.next()) if (it.type === 'frame') got.push({ frame: it.frame, mime: it.mime });
  };
  consumer.onReadable(drain);
  sup.start();
  sup2.start();
  t.after(() => sup.close());
  t.after(() => sup2.close());
  const gov = createThermalGovernor({ thermal: mon, engine, tracks: governedTracks([
    { channel: CHAN, source: 'front', driver: cfg },
    { channel: CHAN, source: 'mast', driver: { kind: 'rtsp' } },
  ]) });
  t.after(() => gov.close());
  const dir = await mkdtemp(join(tmpdir(), 'thermal-frames-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const mimeHas = (re: RegExp) => () => got.length > 0 && re.test(got.at(-1)!.mime ?? '');

  await mon.sample();
  await waitFor(() => got.length >= 15 && mimeHas(/framerate=20;/)(), 20_000, 'frames at the configured 20 fps');
  const cool = got.length;

  // heat up past hotC: level 2 → 10 fps, 300 kbit/s
  await setZone(root, 0, 'cpu-thermal', 79_000);
  assert.equal((await mon.sample()).level, 2);
  await waitFor(() => got.slice(cool).some((g) => /framerate=10;/.test(g.mime ?? '')), 15_000, 'the MIME at the capped rate');
  const hotStart = cool + got.slice(cool).findIndex((g) => /framerate=10;/.test(g.mime ?? ''));
  await waitFor(() => got.length >= hotStart + 12, 15_000, 'frames at the capped rate');
  const hot = got.length;
  assert.equal(got[hotStart]!.frame.key, true, 'the restarted encoder begins with a keyframe');
  const st = drv.stats() as Record<string, unknown>;
  assert.equal(st.restartsForCap, 1);
  assert.equal(st.encodeFps, 10);
  assert.equal(st.encodeBitrateKbps, 300);
  assert.equal(sup.stats().restarts, 0, 'not a failure: the supervisor saw one run');
  assert.equal(closedReason, null, 'the consumer stayed subscribed: one track');

  // cool down below warmC - hysteresis: level 0 → cap lifted, 20 fps again
  await setZone(root, 0, 'cpu-thermal', 60_000);
  assert.equal((await mon.sample()).level, 0);
  await waitFor(() => got.slice(hot).some((g) => /framerate=20;/.test(g.mime ?? '')), 15_000, 'the MIME back at 20 fps');
  const backStart = hot + got.slice(hot).findIndex((g) => /framerate=20;/.test(g.mime ?? ''));
  await waitFor(() => got.length >= backStart + 15, 15_000, 'frames at the restored rate');
  assert.equal(got[backStart]!.frame.key, true);
  assert.equal((drv.stats() as Record<string, unknown>).restartsForCap, 2);

  // What x264 really encoded (VUI timing in the SPS), segment by segment, decodable whole.
  const before = await encodedRate(dir, 'cool.h264', got.slice(0, hotStart).map((g) => g.frame));
  const during = await encodedRate(dir, 'hot.h264', got.slice(hotStart, backStart).map((g) => g.frame));
  const after = await encodedRate(dir, 'back.h264', got.slice(backStart).map((g) => g.frame));
  assert.equal(before.rate, '20/1');
  assert.equal(during.rate, '10/1');
  assert.equal(after.rate, '20/1');
  assert.equal(during.frames, backStart - hotStart, 'the capped segment decodes whole');

  const gs = gov.stats();
  assert.equal(gs.levelChanges, 2);
  assert.equal(gs.served, 2, 'the testpattern took both');
  assert.equal(gs.unserved, 2, 'the passthrough camera could not');
  const tracks = engine.stats().channels.flatMap((c) => c.tracks);
  const byPath = (src: string) => tracks.find((x) => JSON.stringify(x).includes(`"${src}"`) && x.encodingCapRequests > 0);
  assert.deepEqual([byPath('mast')?.encodingCapRequests, byPath('mast')?.encodingCapRequestsUnserved], [2, 2], 'the engine counted the passthrough unserved');
  assert.deepEqual([byPath('front')?.encodingCapRequests, byPath('front')?.encodingCapRequestsUnserved], [2, 0]);
});
