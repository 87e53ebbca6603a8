// Where a segment lives: <root>/<channel>/<source>/<track>/YYYY-MM-DD/HH-MM-SS.mmm.<ext>[.part]
// Pure: no I/O. Times in the path are UTC from the first frame's wallclock.
import type { TrackRef } from '../runtime/engine/api.js';

export const PART_SUFFIX = '.part';
export const VIDEO_EXT = 'mp4';
export const RECORD_EXT = 'rec';

const NAME = /^[A-Za-z0-9_.-]{1,64}$/;

/** Names become folder names: refuse anything that could escape the root or confuse the layout. */
export function safeName(s: string): boolean {
  return NAME.test(s) && s !== '.' && s !== '..';
}

function pad(n: number, w = 2): string {
  return String(n).padStart(w, '0');
}

export function segmentRelPath(ref: TrackRef, wallclockMs: number, ext: string): string {
  const d = new Date(Number.isFinite(wallclockMs) ? wallclockMs : 0);
  const day = `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
  const time = `${pad(d.getUTCHours())}-${pad(d.getUTCMinutes())}-${pad(d.getUTCSeconds())}.${pad(d.getUTCMilliseconds(), 3)}`;
  return `${ref.channel}/${ref.source}/${ref.track}/${day}/${time}.${ext}`;
}

export interface ParsedPath {
  ref: TrackRef;
  wallclockMs: number;
  ext: string;
  part: boolean;
  /** Collision suffix (`-1`, `-2`) when two segments started in the same ms. */
  rel: string;
}

const FILE = /^(\d{2})-(\d{2})-(\d{2})\.(\d{3})(?:-(\d+))?\.([a-z0-9]+)(\.part)?$/;
const DAY = /^(\d{4})-(\d{2})-(\d{2})$/;

/** Parse a path relative to the root; null when it is not a segment of ours. */
export function parseSegmentPath(rel: string): ParsedPath | null {
  const parts = rel.split('/');
  if (parts.length !== 5) return null;
  const [channel, source, track, day, file] = parts as [string, string, string, string, string];
  if (![channel, source, track].every(safeName)) return null;
  const dm = DAY.exec(day);
  const fm = FILE.exec(file);
  if (!dm || !fm) return null;
  const ms = Date.UTC(+dm[1]!, +dm[2]! - 1, +dm[3]!, +fm[1]!, +fm[2]!, +fm[3]!, +fm[4]!);
  if (!Number.isFinite(ms)) return null;
  const ext = fm[6]!;
  if (ext !== VIDEO_EXT && ext !== RECORD_EXT) return null;
  return { ref: { channel, source, track }, wallclockMs: ms, ext, part: fm[7] !== undefined, rel };
}

/** `a/b.mp4.part` → `a/b.mp4` */
export function finalOf(rel: string): string {
  return rel.endsWith(PART_SUFFIX) ? rel.slice(0, -PART_SUFFIX.length) : rel;
}

/** Insert a collision counter before the extension: `…/12-00-00.000.mp4` → `…/12-00-00.000-1.mp4`. */
export function withCounter(rel: string, n: number): string {
  const i = rel.lastIndexOf('.');
  return `${rel.slice(0, i)}-${n}${rel.slice(i)}`;
}
