// Config section `recordings:` (the lead mounts recordingsConfigSchema in runtime/config/schema.ts).
import { z } from 'zod';

const trackPattern = z
  .string()
  .regex(/^[A-Za-z0-9_.*-]+\/[A-Za-z0-9_.*-]+\/[A-Za-z0-9_.*-]+$/, 'channel/source/track, each part a name or *');

const auth = z.discriminatedUnion('type', [
  z.object({ type: z.literal('none') }),
  z.object({ type: z.literal('basic'), username: z.string().min(1), password: z.string() }),
  z.object({ type: z.literal('bearer'), token: z.string().min(1) }),
]);

export const syncConfigSchema = z.object({
  /** Base URL of a WebDAV-compatible target; a segment goes to `<url>/<relative path>`. */
  url: z.string().url().refine((u) => /^https?:\/\//.test(u), 'http(s) only'),
  auth: auth.default({ type: 'none' }),
  /** PEM file of a CA to trust for https targets (added to Node's defaults). */
  caFile: z.string().optional(),
  /** Upload cap in bytes/s so live streaming keeps the uplink; 0 = uncapped. */
  bandwidthBytesPerSec: z.number().int().min(0).default(0),
  /**
   * Segments in flight at once (each PUT then verify): 2 overlaps one segment's verify GET with the
   * next PUT and hides per-request round trips; more rarely helps on a robot's single uplink.
   */
  concurrency: z.number().int().min(1).max(8).default(2),
  /** Track patterns uploaded first, in order; the rest oldest first. */
  priority: z.array(trackPattern).default([]),
  /** Delete the local copy once the target's copy verified (size + sha256). */
  deleteAfterVerify: z.boolean().default(false),
  /** After this many failed attempts a segment is quarantined (kept, reported, not retried). */
  maxAttempts: z.number().int().min(1).max(100).default(5),
  retryInitialMs: z.number().int().min(10).default(1000),
  retryMaxMs: z.number().int().min(10).default(60_000),
  /** Per request: no progress for this long aborts the request. */
  timeoutMs: z.number().int().min(100).default(30_000),
  /** How often the uploader looks for new closed segments when idle. */
  pollMs: z.number().int().min(50).default(5000),
}).strict();

export const retentionConfigSchema = z.object({
  /** Disk budget for all recordings; oldest synced segments go first. 0 = no budget. */
  maxBytes: z.number().int().min(0).default(0),
  /**
   * Free-space floor of the recordings filesystem: the smaller of this and minFreePercent of the
   * filesystem's size (so a small SD card shared with the OS is not wiped to keep 256 MiB free).
   * Below it the oldest segments go, synced first, then unsynced ones (each counted in
   * stats().retention.unsyncedLost and logged); with nothing left to delete, recording pauses.
   */
  minFreeBytes: z.number().int().min(0).default(256 * 1024 * 1024),
  /** The floor as a share of the filesystem's size, percent (the floor is the smaller of the two). */
  minFreePercent: z.number().min(0).max(100).default(10),
  /** Maximum age of a synced segment, hours; 0 = no limit. */
  maxAgeHours: z.number().min(0).default(0),
  intervalMs: z.number().int().min(100).default(10_000),
}).strict();

export const indexConfigSchema = z.object({
  /**
   * Rows of segments whose file is gone (deleted after sync or by retention, or missing) are kept
   * this many days after the file went, then pruned: they say what was recorded and where it
   * went, but must not grow forever. 0 = prune at the next pass.
   */
  keepDeletedDays: z.number().min(0).max(36_500).default(30),
  /**
   * Hard cap on such rows (oldest first beyond it). A row with its index entries is ~400 B:
   * 100 000 rows ≈ 40 MB of SD card, ~17 days of 4 tracks in 60 s segments.
   */
  maxDeletedRows: z.number().int().min(0).default(100_000),
  /** Rows deleted per transaction: each write lock stays short, the recorder's commits interleave. */
  pruneBatch: z.number().int().min(10).max(10_000).default(500),
  /** How often the index is pruned (and once at start, after recovery). */
  pruneIntervalMs: z.number().int().min(1000).default(3_600_000),
}).strict();

export const recordingsConfigSchema = z.object({
  enabled: z.boolean().default(true),
  /** Root folder: <root>/<channel>/<source>/<track>/YYYY-MM-DD/HH-MM-SS.mmm.<ext> */
  // Not ./recordings: that is this package's source folder.
  root: z.string().min(1).default('./data/recordings'),
  /** SQLite index; default <root>/index.db. */
  indexPath: z.string().optional(),
  /** Tracks to record (`channel/source/track`, `*` for any part); empty = every track. */
  tracks: z.array(trackPattern).default([]),
  segmentDurationMs: z.number().int().min(1000).max(3_600_000).default(60_000),
  fragmentDurationMs: z.number().int().min(100).max(10_000).default(1000),
  /** fdatasync of open segments at this interval (and always at segment close). */
  fsyncIntervalMs: z.number().int().min(100).default(5000),
  /** A segment is cut at the next keyframe beyond this size (bounded files, bounded loss). */
  maxSegmentBytes: z.number().int().min(64 * 1024).default(1024 * 1024 * 1024),
  /** The recorder's engine queue: 8 MB ≈ 16 s of a 4 Mbit/s camera, room for a slow SD card. */
  queueBytes: z.number().int().min(64 * 1024).default(8 * 1024 * 1024),
  /** How often new tracks are looked for. */
  discoverMs: z.number().int().min(50).default(1000),
  retention: retentionConfigSchema.default(retentionConfigSchema.parse({})),
  /** The SQLite index's own retention (rows of segments whose file is gone). */
  index: indexConfigSchema.default(indexConfigSchema.parse({})),
  sync: syncConfigSchema.optional(),
}).strict();

export type RecordingsConfig = z.infer<typeof recordingsConfigSchema>;
export type SyncConfig = z.infer<typeof syncConfigSchema>;
export type RetentionConfig = z.infer<typeof retentionConfigSchema>;
export type IndexConfig = z.infer<typeof indexConfigSchema>;

/** `a/b/c` matches pattern `a/*\/c`. */
export function matchTrack(pattern: string, path: string): boolean {
  const p = pattern.split('/');
  const s = path.split('/');
  return p.length === s.length && p.every((x, i) => x === '*' || x === s[i]);
}
