// Fixtures for the recordings tests: real H.264 from the real ffmpeg, split into access units by
// the drivers' splitter, published through the real Engine; ffprobe to check what is on disk.
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { AnnexBSplitter, type AccessUnit } from '../../runtime/engine/h264.js';
import { Engine } from '../../runtime/engine/engine.js';
import { captureClockUs } from '../../runtime/engine/api.js';
import { createRecordingService } from '../../recordings/service.js';
import { recordingsConfigSchema, type RecordingsConfig } from '../../recordings/config.js';
import { IndexDb, type SegmentRow } from '../../recordings/index-db.js';

export const FFMPEG = '/usr/bin/ffmpeg';
export const FFPROBE = '/usr/bin/ffprobe';

export async function tempDir(t: TestContext, prefix = 'rec-'): Promise<string> {
  const d = await fs.promises.mkdtemp(path.join(os.tmpdir(), prefix));
  t.after(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

const h264Cache = new Map<string, AccessUnit[]>();

/** Real H.264 access units (Annex B, SPS/PPS before every IDR, GOP = fps frames). */
export function h264Units(opts: { width?: number; height?: number; fps?: number; seconds?: number; bitrate?: string } = {}): AccessUnit[] {
  const w = opts.width ?? 320;
  const h = opts.height ?? 180;
  const fps = opts.fps ?? 30;
  const secs = opts.seconds ?? 4;
  const key = `${w}x${h}@${fps}x${secs}:${opts.bitrate ?? ''}`;
  const cached = h264Cache.get(key);
  if (cached) return cached;
  const args = ['-v', 'error', '-f', 'lavfi', '-i', `testsrc2=size=${w}x${h}:rate=${fps}`, '-t', String(secs), '-c:v', 'libx264', '-preset', 'ultrafast', '-g', String(fps), '-bf', '0'];
  if (opts.bitrate) args.push('-b:v', opts.bitrate, '-maxrate', opts.bitrate, '-bufsize', opts.bitrate);
  args.push('-x264-params', 'repeat-headers=1', '-f', 'h264', '-');
  const buf = execFileSync(FFMPEG, args, { maxBuffer: 512 * 1024 * 1024 });
  const sp = new AnnexBSplitter();
  const aus = [...sp.push(buf), ...sp.flush()];
  h264Cache.set(key, aus);
  return aus;
}

export function newEngine(): Engine {
  return new Engine({
    memoryCeilingBytes: 256 * 1024 * 1024,
    consumerQueueBytes: 16 * 1024 * 1024,
    gopCacheBytes: 8 * 1024 * 1024,
    trackLingerMs: 60_000,
    instantChannelTtlMs: 3_600_000,
    maxInstantChannels: 16,
  });
}

export function config(root: string, over: Record<string, unknown> = {}): RecordingsConfig {
  return recordingsConfigSchema.parse({ root, retention: { minFreeBytes: 0 }, ...over });
}

export interface ProbeResult {
  codec: string;
  width: number;
  height: number;
  frames: number;
}

/** Decode every frame with the real ffprobe; rejects with ffprobe's stderr on a decode error. */
export function ffprobeFrames(file: string): Promise<ProbeResult> {
  return new Promise((resolve, reject) => {
    execFile(
      FFPROBE,
      ['-v', 'error', '-count_frames', '-select_streams', 'v:0', '-show_entries', 'stream=codec_name,width,height,nb_read_frames', '-of', 'json', file],
      { timeout: 60_000 },
      (err, stdout, stderr) => {
        if (err) return reject(new Error(`ffprobe ${file}: ${err.message} ${stderr}`));
        if (stderr.trim()) return reject(new Error(`ffprobe ${file} reported: ${stderr.trim().slice(0, 500)}`));
        const s = (JSON.parse(stdout) as { streams: Array<{ codec_name: string; width: number; height: number; nb_read_frames: string }> }).streams[0];
        if (!s) return reject(new Error(`ffprobe ${file}: no video stream`));
        resolve({ codec: s.codec_name, width: s.width, height: s.height, frames: Number(s.nb_read_frames) });
      },
    );
  });
}

/** Wait for a condition with a bound; fails with the message on timeout. */
export async function waitFor(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export function listFiles(root: string): string[] {
  const out: string[] = [];
  const walk = (d: string, rel: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(path.join(d, e.name), r);
      else out.push(r);
    }
  };
  walk(root, '');
  return out.sort();
}

/** Record `seconds` of real video (+ a 10 Hz text track) into root with 2 s segments, then close. */
export async function recordFixture(root: string, seconds = 5, opts: { width?: number; height?: number } = {}): Promise<{ video: number; data: number }> {
  const engine = newEngine();
  engine.addStaticChannel({ id: 'robot' });
  const svc = createRecordingService({ config: config(root, { segmentDurationMs: 2000, fragmentDurationMs: 500 }), source: engine });
  await svc.start();
  const cam = engine.publisher({ channel: 'robot', source: 'base', track: 'cam' }, { label: 't' });
  cam.setMime('video/h264');
  const gps = engine.publisher({ channel: 'robot', source: 'base', track: 'gps' }, { label: 't' });
  gps.setMime('text/plain');
  svc.discover();
  const aus = h264Units({ seconds, width: opts.width, height: opts.height });
  const t0 = captureClockUs();
  const w0 = Date.now();
  let d = 0;
  for (let i = 0; i < aus.length; i++) {
    const ts = t0 + Math.round((i * 1e6) / 30);
    const wallclock = w0 + (ts - t0) / 1000;
    cam.write({ ts, wallclock, key: aus[i]!.key, data: aus[i]!.data });
    if (i % 3 === 0) (gps.write({ ts, wallclock, key: true, data: Buffer.from(`$GPGGA,${i}`) }), d++);
    await svc.settled();
  }
  await svc.close();
  return { video: aus.length, data: d };
}

/** A real size-limited filesystem (a tmpfs the test mounts): the shared helper. */
export { smallFs as mountTmpfs } from '../support/tmpfs.js';

/** Write zeros into `file` until the filesystem says ENOSPC (or `maxBytes`); returns the bytes written. */
export function fillUntilFull(file: string, maxBytes = Number.MAX_SAFE_INTEGER): number {
  const fd = fs.openSync(file, 'a');
  const chunk = Buffer.alloc(64 * 1024);
  let n = 0;
  try {
    while (n < maxBytes) {
      try {
        n += fs.writeSync(fd, chunk, 0, Math.min(chunk.length, maxBytes - n));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOSPC') break;
        throw err;
      }
    }
  } finally {
    fs.closeSync(fd);
  }
  return n;
}

/** Per-track accounting: every frame read is on disk, pending, or dropped with a reason. */
export function assertAccounted(st: { track: string; framesIn: number; framesWritten: number; framesPending: number; drops: Record<string, number> }): void {
  const dropped = Object.values(st.drops).reduce((a, b) => a + b, 0);
  assert.equal(st.framesIn, st.framesWritten + st.framesPending + dropped, `${st.track}: in ${st.framesIn} = written ${st.framesWritten} + pending ${st.framesPending} + dropped ${dropped} ${JSON.stringify(st.drops)}`);
}

/**
 * Decode a video file with the real ffmpeg (`-v error`, every frame, and a stream copy whose muxer
 * checks DTS order) and read its packets' DTS (seconds) with ffprobe: rejects on any error output
 * or a DTS that does not increase; returns the frame count and the DTS.
 */
export async function decodeStrict(file: string): Promise<{ frames: number; dts: number[] }> {
  const run = (cmd: string, args: string[]) =>
    new Promise<{ stdout: string; stderr: string }>((resolve, reject) => {
      execFile(cmd, args, { timeout: 120_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => (err ? reject(new Error(`${cmd} ${file}: ${err.message} ${stderr}`)) : resolve({ stdout, stderr })));
    });
  // the copy goes to MPEG-TS (90 kHz, finer than the MP4's 57.6 kHz ticks): its muxer rejects any
  // DTS that does not increase; the decode keeps the file's own time base (not 1/frame rate, which
  // would fold any frames closer than a frame interval onto one tick)
  const dec = await run(FFMPEG, ['-v', 'warning', '-nostdin', '-i', file, '-map', '0:v:0', '-c', 'copy', '-f', 'mpegts', '-y', '/dev/null', '-map', '0:v:0', '-enc_time_base', '-1', '-f', 'null', '-']);
  if (dec.stderr.trim()) throw new Error(`ffmpeg -v warning ${file}: ${dec.stderr.trim().slice(0, 500)}`);
  const pk = await run(FFPROBE, ['-v', 'error', '-select_streams', 'v:0', '-show_entries', 'packet=dts_time', '-of', 'csv=p=0', file]);
  if (pk.stderr.trim()) throw new Error(`ffprobe ${file}: ${pk.stderr.trim().slice(0, 500)}`);
  const dts = pk.stdout.split('\n').map((l) => l.trim().replace(/,$/, '')).filter((l) => l !== '').map(Number);
  for (let i = 1; i < dts.length; i++) if (!(dts[i]! > dts[i - 1]!)) throw new Error(`${file}: dts not increasing at packet ${i}: ${dts[i - 1]} → ${dts[i]}`);
  const p = await ffprobeFrames(file);
  return { frames: p.frames, dts };
}

/**
 * Publish real H.264 (looped) at `speed` × real time on the capture clock the engine uses; the
 * wallclock follows the same media time. stop() resolves once the timer is cleared; `frames` is
 * what was published.
 */
export function paceVideo(pub: { write(f: { ts: number; wallclock: number; key: boolean; data: Buffer }): void }, aus: AccessUnit[], opts: { fps?: number; speed?: number } = {}) {
  const fps = opts.fps ?? 30;
  const speed = opts.speed ?? 1;
  const t0 = captureClockUs();
  const w0 = Date.now();
  const start = performance.now();
  const st = { frames: 0, bytes: 0 };
  const timer = setInterval(() => {
    const due = Math.floor(((performance.now() - start) * speed * fps) / 1000);
    // a stalled event loop must not turn into one giant burst: at most one second of media per tick
    for (let n = 0; st.frames < due && n < fps; n++) {
      const i = st.frames;
      const au = aus[i % aus.length]!;
      const ts = t0 + Math.round((i * 1e6) / fps);
      pub.write({ ts, wallclock: w0 + (ts - t0) / 1000, key: au.key, data: au.data });
      st.frames++;
      st.bytes += au.data.length;
    }
  }, 10);
  return {
    st,
    stop: () => clearInterval(timer),
  };
}

/** Every row of the index under root, read through a read-only connection (no recovery). */
export function indexRows(root: string): SegmentRow[] {
  const db = IndexDb.openReader(path.join(root, 'index.db'));
  try {
    return db.all();
  } finally {
    db.close();
  }
}

/** The direct children of a process, from /proc (empty when it is gone). */
export function childrenOf(pid: number): number[] {
  const out: number[] = [];
  try {
    for (const task of fs.readdirSync(`/proc/${pid}/task`)) {
      const c = fs.readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim();
      if (c) out.push(...c.split(/\s+/).map(Number));
    }
  } catch {
    /* gone */
  }
  return out;
}

/** Every process under `pid` (children, grandchildren…). */
export function descendantsOf(pid: number): number[] {
  const out: number[] = [];
  for (const c of childrenOf(pid)) out.push(c, ...descendantsOf(c));
  return out;
}

/** An engine with channel `robot`, a started recording service on root, and a publisher on robot/base/cam (video/h264). */
export async function camRecording(t: { after: (fn: () => unknown) => void }, root: string, over: Record<string, unknown> = {}) {
  const engine = newEngine();
  engine.addStaticChannel({ id: 'robot' });
  const svc = createRecordingService({ config: config(root, over), source: engine });
  t.after(() => svc.close());
  await svc.start();
  const cam = engine.publisher({ channel: 'robot', source: 'base', track: 'cam' }, { label: 'test' });
  cam.setMime('video/h264');
  svc.discover();
  return { engine, svc, cam };
}
