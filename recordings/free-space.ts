// The free-space policy that retention and the recorders share (one hysteresis, so that what
// retention frees is enough for a paused recorder to resume). Pure, plus one statfs shell.
//
//   floor  = min(minFreeBytes, minFreePercent % of the filesystem's size)
//   resume = floor + band, band = 5 % of the size, at least 1 MiB, at most 64 MiB
//
// Free space under the floor (or a write that hit ENOSPC) makes retention delete oldest-first
// until free ≥ resume; a recorder paused by a full disk resumes once free ≥ resume. The band is a
// few fragments even on a tiny card (1 MiB ≈ 2 s of 4 Mbit/s) and keeps the two from flapping.
import fs from 'node:fs';
import type { RetentionConfig } from './config.js';

const MiB = 1024 * 1024;
const BAND_SHARE = 0.05;
const BAND_MIN = MiB;
const BAND_MAX = 64 * MiB;

export interface SpacePolicy {
  /** Size of the filesystem (0 when unknown). */
  sizeBytes: number;
  floorBytes: number;
  resumeBytes: number;
}

export function spacePolicy(cfg: Pick<RetentionConfig, 'minFreeBytes' | 'minFreePercent'>, sizeBytes: number): SpacePolicy {
  const pct = sizeBytes > 0 ? Math.floor((sizeBytes * cfg.minFreePercent) / 100) : cfg.minFreeBytes;
  const floorBytes = Math.min(cfg.minFreeBytes, pct);
  const band = Math.min(BAND_MAX, Math.max(BAND_MIN, Math.floor(sizeBytes * BAND_SHARE)));
  return { sizeBytes, floorBytes, resumeBytes: floorBytes + band };
}

export interface FsSpace {
  sizeBytes: number;
  freeBytes: number;
}

/** statfs of the recordings folder; free = what an unprivileged writer may use (bavail). */
export function fsSpaceOf(dir: string): FsSpace {
  try {
    const s = fs.statfsSync(dir);
    return { sizeBytes: Number(s.blocks) * Number(s.bsize), freeBytes: Number(s.bavail) * Number(s.bsize) };
  } catch {
    return { sizeBytes: 0, freeBytes: Number.MAX_SAFE_INTEGER }; // cannot tell: never delete because of it
  }
}
