// Helpers shared by the capture tests: a recording DriverOutput, bounded waits, ffprobe.

import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { TestContext } from 'node:test';
import type { DriverOutput, Frame } from '../../runtime/engine/api.js';

export const run = promisify(execFile);

/** Poll `pred` until it holds; fail with `what` after `ms` (a bound, not a speed assertion). */
export async function waitFor(pred: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export async function tempDir(t: TestContext, prefix = 'capture-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

export interface Recorded extends DriverOutput {
  frames: Array<Frame & { track: string }>;
  mimes: Array<{ track: string; mime: string }>;
}

export function recordingOutput(): Recorded {
  const r: Recorded = {
    frames: [],
    mimes: [],
    setMime: (track, mime) => r.mimes.push({ track, mime }),
    write: (track, frame) => r.frames.push({ ...frame, track }),
  };
  return r;
}

/** ffprobe a raw H.264 (or MJPEG) file: decoded frames and size. */
export async function probe(file: string, format = 'h264'): Promise<{ frames: number; width: number; height: number }> {
  const { stdout } = await run('ffprobe', ['-v', 'error', '-f', format, '-count_frames', '-select_streams', 'v:0', '-show_entries', 'stream=nb_read_frames,width,height', '-of', 'json', file], { timeout: 60_000 });
  const s = (JSON.parse(stdout) as { streams: Array<{ nb_read_frames: string; width: number; height: number }> }).streams[0]!;
  return { frames: Number(s.nb_read_frames), width: s.width, height: s.height };
}

/** Process ids in the process group / children of this test process whose command matches. */
export async function childPids(pattern: RegExp): Promise<number[]> {
  const { stdout } = await run('ps', ['-eo', 'pid,ppid,args', '--no-headers']);
  const out: number[] = [];
  for (const line of stdout.split('\n')) {
    const m = /^\s*(\d+)\s+(\d+)\s+(.*)$/.exec(line);
    if (m && pattern.test(m[3]!) && !/\bps -eo\b/.test(m[3]!)) out.push(Number(m[1]));
  }
  return out;
}
