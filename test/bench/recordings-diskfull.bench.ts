// Recordings on a full disk (issue 15): a real 32 MiB tmpfs, the shipped free-space policy, one
// 1080p30 4 Mbit/s H.264 track and two 50 Hz JSON sensors published in real time through the real
// Engine and recording service. Two kinds of disk-full event, 3 of each:
//  - freed by someone else: a ballast file fills the disk to ENOSPC, stays 2 s, is removed —
//    measured from its removal to the recorder unpaused and to its first frame accepted;
//  - freed by retention: the ballast stays; retention deletes old segments (unsynced, counted).
//    Before each, enough is recorded (1.5 × the resume level in closed 2 s segments) for retention
//    to free the disk alone. Measured from the disk full to the resume level free, the recorder
//    unpaused and a frame accepted; whether the recorder paused at all (the once-a-second watch
//    often frees the disk before the next fragment is written).
// Lost frames per event are the recorder's own counted drops (disk-full + the wait for a keyframe
// after resuming), per track. The floor for "time back": the policy's 1 s free-space watch plus the
// source's GOP (1 s: the test source cannot make a keyframe on request).
import fs from 'node:fs';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { recordingsConfigSchema } from '../../recordings/config.js';
import { createRecordingService, type RecordingService } from '../../recordings/service.js';
import { silentLog } from '../../recordings/log.js';
import { fillUntilFull, h264Units, mountTmpfs, newEngine, paceVideo } from '../recordings/helpers.js';
import { captureClockUs } from '../../runtime/engine/api.js';
import { round, type BenchRow } from './harness.js';

const EVENTS = 3;

async function until(cond: () => boolean, what: string, ms = 60_000): Promise<number> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
  return performance.now();
}

const median = (a: number[]) => {
  const s = [...a].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

export async function bench(): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const cleanups: Array<() => unknown> = [];
  const t = { after: (fn: () => unknown) => cleanups.push(fn) } as unknown as TestContext;
  try {
    const root = await mountTmpfs(t, 32 * 1024);
    if (!root) return [{ bench: 'recordings-diskfull', case: 'skipped: cannot mount a tmpfs here (needs root)' }];
    const engine = newEngine();
    cleanups.push(() => engine.close());
    engine.addStaticChannel({ id: 'robot' });
    const svc: RecordingService = createRecordingService({ config: recordingsConfigSchema.parse({ root, segmentDurationMs: 2000 }), source: engine, log: silentLog });
    cleanups.push(() => svc.close());
    await svc.start();
    const cam = engine.publisher({ channel: 'robot', source: 'base', track: 'cam' }, { label: 'bench' });
    cam.setMime('video/h264;width=1920;height=1080');
    const sensors = ['imu', 'odom'].map((track) => {
      const p = engine.publisher({ channel: 'robot', source: 'base', track }, { label: 'bench' });
      p.setMime('application/json');
      return p;
    });
    svc.discover();
    const aus = h264Units({ width: 1920, height: 1080, seconds: 10, bitrate: '4M' });
    const video = paceVideo(cam, aus, { speed: 1 });
    cleanups.push(() => video.stop());
    let n = 0;
    let sensorBytes = 0;
    const t0 = captureClockUs();
    const start = performance.now();
    const sensorTimer = setInterval(() => {
      const due = Math.floor((performance.now() - start) / 20);
      for (; n < due; n++) {
        const ts = t0 + n * 20_000;
        for (const p of sensors) {
          const data = Buffer.from(JSON.stringify({ n, ax: Math.sin(n), ay: Math.cos(n), az: 9.81 }));
          sensorBytes += data.length;
          p.write({ ts, wallclock: Date.now(), key: true, data });
        }
      }
    }, 10);
    cleanups.push(() => clearInterval(sensorTimer));
    const tr = (name: string) => svc.stats().tracks.find((x) => x.track === `robot/base/${name}`)!;
    const lostOf = (name: string) => {
      const d = tr(name).drops;
      return d['disk-full'] + d['wait-keyframe'] + d['write-failed'] + d['closed-empty'];
    };
    // steady recording in real time first: the write cost per media byte with the index's
    // per-second writes (progress rows, flushes) included, as a robot pays it
    const io = () => Number(/^wchar: (\d+)/m.exec(fs.readFileSync('/proc/self/io', 'utf8'))![1]);
    const w0 = io();
    const m0 = video.st.bytes + sensorBytes;
    const s0 = performance.now();
    await until(() => performance.now() - s0 >= 20_000, '20 s of recording', 30_000);
    const steady = { written: io() - w0, media: video.st.bytes + sensorBytes - m0, ms: performance.now() - s0 };
    const ballast = path.join(root, 'ballast');

    const freed: Array<{ unpauseMs: number; firstFrameMs: number; pauseMs: number; video: number; sensor: number }> = [];
    for (let e = 0; e < EVENTS; e++) {
      const v0 = lostOf('cam');
      const s0 = lostOf('imu');
      const events0 = tr('cam').diskFullEvents;
      // someone else takes the space and holds it, whatever retention frees meanwhile
      fillUntilFull(ballast);
      const hold = setInterval(() => fillUntilFull(ballast), 20);
      const paused = await until(() => tr('cam').diskFullEvents > events0, 'the disk-full pause');
      await new Promise((r) => setTimeout(r, 2000));
      clearInterval(hold);
      const accepted0 = tr('cam').framesWritten + tr('cam').framesPending;
      fs.rmSync(ballast);
      const freedAt = performance.now();
      const unpaused = await until(() => !tr('cam').diskFull, 'unpaused');
      const first = await until(() => tr('cam').framesWritten + tr('cam').framesPending > accepted0, 'a frame accepted');
      freed.push({ unpauseMs: unpaused - freedAt, firstFrameMs: first - freedAt, pauseMs: freedAt - paused, video: lostOf('cam') - v0, sensor: lostOf('imu') - s0 });
      await new Promise((r) => setTimeout(r, 3000)); // recording steadily again before the next event
    }
    const byRetention: Array<{ backMs: number; paused: boolean; video: number; sensor: number; unsyncedDeleted: number }> = [];
    const recorded = () => svc.index.all().filter((r) => r.present === 1 && r.state === 'closed').reduce((a, r) => a + r.bytes, 0);
    for (let e = 0; e < EVENTS; e++) {
      await until(() => recorded() >= 1.5 * svc.stats().space!.resumeBytes, 'enough recorded for retention to free', 120_000);
      const v0 = lostOf('cam');
      const s0 = lostOf('imu');
      const u0 = svc.stats().retention!.unsyncedLost;
      const events0 = tr('cam').diskFullEvents;
      const accepted0 = tr('cam').framesWritten + tr('cam').framesPending;
      fillUntilFull(ballast);
      const filled = performance.now();
      const back = await until(
        () => svc.stats().space!.freeBytes >= svc.stats().space!.resumeBytes && !tr('cam').diskFull && tr('cam').framesWritten + tr('cam').framesPending > accepted0,
        'recording with space again, freed by retention',
      );
      byRetention.push({ backMs: back - filled, paused: tr('cam').diskFullEvents > events0, video: lostOf('cam') - v0, sensor: lostOf('imu') - s0, unsyncedDeleted: svc.stats().retention!.unsyncedLost - u0 });
      fs.rmSync(ballast);
    }
    video.stop();
    clearInterval(sensorTimer);
    await svc.settled();
    await svc.close();
    const st = svc.stats();
    const load = (await import('node:os')).loadavg()[0]!;
    rows.push({
      bench: 'recordings-diskfull',
      case: 'steady recording in real time, 20 s (index progress rows and flushes included)',
      media_mb: round(steady.media / 1e6),
      write_amp_syscalls: round(steady.written / steady.media, 3),
      overhead_kb_per_s: round((steady.written - steady.media) / 1024 / (steady.ms / 1000), 1), // container + index
      load_avg_1m: round(load, 2),
    });
    rows.push({
      bench: 'recordings-diskfull',
      case: `freed by another process (ballast removed after 2 s), ${EVENTS} events, 1080p30 4 Mbit/s + 2×50 Hz`,
      free_to_unpaused_ms_median: round(median(freed.map((x) => x.unpauseMs)), 0),
      free_to_unpaused_ms_max: round(Math.max(...freed.map((x) => x.unpauseMs)), 0),
      free_to_first_frame_ms_median: round(median(freed.map((x) => x.firstFrameMs)), 0),
      free_to_first_frame_ms_max: round(Math.max(...freed.map((x) => x.firstFrameMs)), 0),
      lost_video_frames_per_event: round(median(freed.map((x) => x.video)), 0),
      lost_sensor_records_per_event: round(median(freed.map((x) => x.sensor)), 0),
      full_for_ms_median: round(median(freed.map((x) => x.pauseMs)), 0),
      floor_ms: 1000 + 1000,
      load_avg_1m: round(load, 2),
    });
    rows.push({
      bench: 'recordings-diskfull',
      case: `freed by retention (ballast stays; oldest unsynced deleted, counted), ${EVENTS} events`,
      full_to_space_and_recording_ms_median: round(median(byRetention.map((x) => x.backMs)), 0),
      full_to_space_and_recording_ms_max: round(Math.max(...byRetention.map((x) => x.backMs)), 0),
      events_that_paused: byRetention.filter((x) => x.paused).length,
      lost_video_frames_per_event: round(median(byRetention.map((x) => x.video)), 0),
      lost_video_frames_max: Math.max(...byRetention.map((x) => x.video)),
      lost_sensor_records_per_event: round(median(byRetention.map((x) => x.sensor)), 0),
      unsynced_segments_deleted_per_event: round(median(byRetention.map((x) => x.unsyncedDeleted)), 1),
      floor_ms: 1000,
      load_avg_1m: round(load, 2),
    });
    const cs = st.tracks.find((x) => x.track === 'robot/base/cam')!;
    const dropped = Object.values(cs.drops).reduce((a, b) => a + b, 0);
    rows.push({
      bench: 'recordings-diskfull',
      case: 'accounting over the whole run (video): in = written + pending + dropped',
      frames_in: cs.framesIn,
      written: cs.framesWritten,
      dropped,
      uncounted: cs.framesIn - cs.framesWritten - cs.framesPending - dropped,
      disk_full_events: cs.diskFullEvents,
    });
  } finally {
    for (const c of cleanups.reverse()) await c();
  }
  return rows;
}
