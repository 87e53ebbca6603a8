// Retention: a disk budget, a free-space floor and a maximum age. The plan is pure; the shell
// deletes files and updates the index.
// Order: oldest synced first. Unsynced segments go only when the free-space floor is hit (or a
// write hit ENOSPC), and each such loss is counted and logged. (With no sync target, nothing will
// ever be synced, so closed segments are eligible under budget and age too.)
// Under the floor, deletion goes on until free space reaches the resume level of the shared
// free-space policy (free-space.ts): exactly what a recorder paused by a full disk waits for.
import fs from 'node:fs';
import path from 'node:path';
import type { RetentionConfig } from './config.js';
import type { IndexDb, SegmentRow } from './index-db.js';
import type { RecLog } from './log.js';
import { fsSpaceOf, spacePolicy, type SpacePolicy } from './free-space.js';
import { PART_SUFFIX } from './layout.js';

export type RetentionReason = 'age' | 'budget' | 'floor';

export interface RetentionInput {
  rows: Array<Pick<SegmentRow, 'path' | 'state' | 'bytes' | 'wall_start_ms' | 'wall_end_ms' | 'present' | 'id'>>;
  /** Bytes in use by recordings (closed rows + open segments). */
  usedBytes: number;
  freeBytes: number;
  now: number;
  syncEnabled: boolean;
  /** The free-space floor (free-space.ts): below it segments go. */
  floorBytes: number;
  /** Once deleting for space, go on until this much is free (the resume level). */
  targetFreeBytes: number;
  /** A write just failed with ENOSPC: free up to the target whatever statfs says now. */
  pressure?: boolean;
}

export interface Deletion {
  path: string;
  bytes: number;
  reason: RetentionReason;
  unsynced: boolean;
}

export function planRetention(cfg: RetentionConfig, inp: RetentionInput): Deletion[] {
  const rows = inp.rows
    .filter((r) => r.present === 1 && (r.state === 'closed' || r.state === 'synced' || r.state === 'quarantined'))
    .sort((a, b) => a.wall_start_ms - b.wall_start_ms || a.id - b.id);
  const eligible = (r: (typeof rows)[number]) => r.state === 'synced' || (!inp.syncEnabled && r.state === 'closed');
  const out: Deletion[] = [];
  const gone = new Set<string>();
  let used = inp.usedBytes;
  let free = inp.freeBytes;
  const del = (r: (typeof rows)[number], reason: RetentionReason) => {
    gone.add(r.path);
    used -= r.bytes;
    free += r.bytes;
    // with no sync target, budget/age rotation of closed segments is the policy, not a loss
    out.push({ path: r.path, bytes: r.bytes, reason, unsynced: r.state !== 'synced' && (inp.syncEnabled || reason === 'floor') });
  };
  if (cfg.maxAgeHours > 0) {
    const cutoff = inp.now - cfg.maxAgeHours * 3_600_000;
    for (const r of rows) if (eligible(r) && r.wall_end_ms < cutoff) del(r, 'age');
  }
  if (cfg.maxBytes > 0) {
    for (const r of rows) {
      if (used <= cfg.maxBytes) break;
      if (!gone.has(r.path) && eligible(r)) del(r, 'budget');
    }
  }
  if (free < inp.floorBytes || inp.pressure) {
    const target = Math.max(inp.floorBytes, inp.targetFreeBytes);
    // synced first, then anything closed (counted losses)
    for (const pass of [true, false]) {
      for (const r of rows) {
        if (free >= target) break;
        if (gone.has(r.path)) continue;
        if (pass ? r.state === 'synced' : true) del(r, 'floor');
      }
    }
  }
  return out;
}

export interface RetentionStats {
  runs: number;
  deleted: number;
  deletedBytes: number;
  deletedByReason: Record<RetentionReason, number>;
  /** Unsynced segments deleted because the free-space floor was hit. */
  unsyncedLost: number;
  unsyncedLostBytes: number;
  /** The last unsynced segment deleted for space: what, when, why. */
  lastUnsyncedLoss: { path: string; bytes: number; reason: RetentionReason; atMs: number } | null;
  /** Passes run because a write hit ENOSPC. */
  pressureRuns: number;
  lastFreeBytes: number | null;
  /** The free-space policy in force (floor and resume level, from the filesystem's size). */
  space: SpacePolicy | null;
  lastError: string | null;
}

export function freeBytesOf(dir: string): number {
  return fsSpaceOf(dir).freeBytes;
}

export class Retention {
  readonly st: RetentionStats = {
    runs: 0,
    deleted: 0,
    deletedBytes: 0,
    deletedByReason: { age: 0, budget: 0, floor: 0 },
    unsyncedLost: 0,
    unsyncedLostBytes: 0,
    lastUnsyncedLoss: null,
    pressureRuns: 0,
    lastFreeBytes: null,
    space: null,
    lastError: null,
  };

  constructor(
    private readonly root: string,
    private readonly cfg: RetentionConfig,
    private readonly db: IndexDb,
    private readonly log: RecLog,
    private readonly syncEnabled: boolean,
  ) {}

  /** The policy for the filesystem under root now (its size can change: a remount, a resize). */
  policy(): SpacePolicy {
    const p = spacePolicy(this.cfg, fsSpaceOf(this.root).sizeBytes);
    this.st.space = p;
    return p;
  }

  /**
   * One pass. `openBytes` are the open segments' bytes (not yet in the index as closed);
   * `pressure`: a write just hit ENOSPC.
   */
  run(openBytes: number, pressure = false): Deletion[] {
    this.st.runs++;
    if (pressure) this.st.pressureRuns++;
    try {
      this.db.flush();
      const rows = (
        this.db.db.prepare('SELECT id, path, state, bytes, wall_start_ms, wall_end_ms, present FROM segments WHERE present=1').all() as RetentionInput['rows']
      ).map((r) => this.closedOnDisk(r));
      // open segments count through openBytes (their `recording` rows only show progress)
      const used = rows.filter((r) => r.state !== 'recording').reduce((a, r) => a + r.bytes, 0) + openBytes;
      const { sizeBytes, freeBytes: free } = fsSpaceOf(this.root);
      const pol = spacePolicy(this.cfg, sizeBytes);
      this.st.space = pol;
      this.st.lastFreeBytes = free;
      const plan = planRetention(this.cfg, {
        rows,
        usedBytes: used,
        freeBytes: free,
        now: Date.now(),
        syncEnabled: this.syncEnabled,
        floorBytes: pol.floorBytes,
        targetFreeBytes: pol.resumeBytes,
        pressure,
      });
      for (const d of plan) this.apply(d);
      if (plan.length > 0) this.st.lastFreeBytes = fsSpaceOf(this.root).freeBytes;
      return plan;
    } catch (err) {
      this.st.lastError = (err as Error).message;
      this.log.error({ err: (err as Error).message }, 'retention pass failed');
      return [];
    }
  }

  /**
   * A `recording` row whose final file exists (and no .part) is a segment that closed while its
   * index write could not land (the disk was full): it is closed, with the file's size.
   */
  private closedOnDisk(r: RetentionInput['rows'][number]): RetentionInput['rows'][number] {
    if (r.state !== 'recording') return r;
    const abs = path.join(this.root, r.path);
    try {
      if (fs.existsSync(abs + PART_SUFFIX)) return r;
      return { ...r, state: 'closed', bytes: fs.statSync(abs).size };
    } catch {
      return r;
    }
  }

  private apply(d: Deletion): void {
    const abs = path.join(this.root, d.path);
    fs.rmSync(abs, { force: true });
    // the row stays: a synced one still says where the upstream copy is; a lost one is the record of the loss
    const mark = () => {
      if (d.unsynced) {
        this.db.update(d.path, { present: 0, state: 'missing', last_error: `deleted unsynced by retention (${d.reason})` });
        this.db.event('retention-lost', d.path, `reason=${d.reason} bytes=${d.bytes}`);
      } else {
        this.db.update(d.path, { present: 0 });
        this.db.event('retention', d.path, `reason=${d.reason} bytes=${d.bytes}`);
      }
    };
    try {
      this.db.write(mark);
    } catch {
      // the index cannot take it now (disk full): queued after the ops already waiting, in order
      this.db.enqueue(mark);
    }
    this.st.deleted++;
    this.st.deletedBytes += d.bytes;
    this.st.deletedByReason[d.reason]++;
    if (d.unsynced) {
      this.st.unsyncedLost++;
      this.st.unsyncedLostBytes += d.bytes;
      this.st.lastUnsyncedLoss = { path: d.path, bytes: d.bytes, reason: d.reason, atMs: Date.now() };
      this.log.warn({ path: d.path, bytes: d.bytes, reason: d.reason }, 'retention deleted an unsynced segment');
    }
    // remove the day folder when it became empty (never anything else)
    try {
      fs.rmdirSync(path.dirname(abs));
    } catch {
      /* not empty: fine */
    }
  }
}
