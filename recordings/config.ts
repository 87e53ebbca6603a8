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

const httpUrl = z.string().url().refine((u) => /^https?:\/\//.test(u), 'http(s) only');
const MiB = 1024 * 1024;

/** A WebDAV-compatible HTTP(S) target: a segment goes to `<url>/<relative path>` by PUT. */
export const webdavTargetSchema = z.object({
  kind: z.literal('webdav'),
  url: httpUrl,
  auth: auth.default({ type: 'none' }),
  /** PEM file of a CA to trust for https targets (added to Node's defaults). */
  caFile: z.string().optional(),
}).strict();

/** Static keys in the config (or the secret in a file), or a profile of a shared credentials file. */
const s3Credentials = z.union([
  z.object({
    accessKeyId: z.string().min(1).max(256),
    secretAccessKey: z.string().min(1).max(1024).optional(),
    /** A file holding only the secret key (a mounted secret), read at start; trailing newline ignored. */
    secretAccessKeyFile: z.string().min(1).optional(),
    sessionToken: z.string().min(1).max(4096).optional(),
  }).strict().refine((c) => (c.secretAccessKey === undefined) !== (c.secretAccessKeyFile === undefined), 'set exactly one of secretAccessKey and secretAccessKeyFile'),
  z.object({
    /** Profile in an AWS shared credentials file (INI). */
    profile: z.string().min(1).max(128).default('default'),
    /** The file; default ~/.aws/credentials (or AWS_SHARED_CREDENTIALS_FILE). */
    file: z.string().min(1).optional(),
  }).strict(),
]);

/** Any S3-compatible bucket (AWS S3, MinIO, Ceph RGW, Cloudflare R2, Backblaze B2, Garage). */
export const s3TargetSchema = z.object({
  kind: z.literal('s3'),
  /** Endpoint URL; omit for AWS S3 (derived from the region). */
  endpoint: httpUrl.optional(),
  region: z.string().regex(/^[a-z0-9-]{1,40}$/, 'a region name such as eu-central-1 (R2: auto)').default('us-east-1'),
  /** Bucket name (3–63 chars: lower-case letters, digits, dots, hyphens). */
  bucket: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'a bucket name: 3–63 lower-case letters, digits, . and -'),
  /**
   * Key prefix in front of the on-disk layout (`<channel>/<source>/<track>/YYYY-MM-DD/<file>`).
   * `{hostname}` is replaced by the robot's host name.
   */
  prefix: z.string().max(512).regex(/^[^\\\x00-\x1f]*$/, 'no control characters or backslashes').default('{hostname}/'),
  /**
   * `path` (https://endpoint/bucket/key: MinIO, Ceph, Garage, s3rver), `virtual`
   * (https://bucket.endpoint/key: AWS), `auto`: path with a custom endpoint, virtual without.
   */
  addressing: z.enum(['auto', 'path', 'virtual']).default('auto'),
  /** Absent: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, then ~/.aws/credentials (AWS_PROFILE), as every AWS tool. */
  credentials: s3Credentials.optional(),
  /** PEM file of a CA to trust for an https endpoint (added to Node's defaults). */
  caFile: z.string().optional(),
  /** x-amz-storage-class, e.g. STANDARD_IA, GLACIER_IR; absent = the bucket's default. */
  storageClass: z.string().regex(/^[A-Z_]{1,32}$/, 'an S3 storage class such as STANDARD_IA').optional(),
  /** x-amz-server-side-encryption passed through; absent = the bucket's default. */
  serverSideEncryption: z.enum(['AES256', 'aws:kms', 'aws:kms:dsse']).optional(),
  /** KMS key for aws:kms / aws:kms:dsse. */
  sseKmsKeyId: z.string().min(1).max(2048).optional(),
  multipart: z.object({
    /** Segments of at least this size go up in parts (resumable across restarts). */
    thresholdBytes: z.number().int().min(5 * MiB).max(5 * 1024 * MiB).default(16 * MiB),
    /** Part size; S3 needs at least 5 MiB (except the last part) and at most 10 000 parts. */
    partSizeBytes: z.number().int().min(5 * MiB).max(5 * 1024 * MiB).default(16 * MiB),
    /** Unfinished multipart uploads under the prefix older than this are aborted (parts cost storage). */
    abortStaleAfterHours: z.number().min(1).max(24 * 365).default(24),
  }).strict().default({ thresholdBytes: 16 * MiB, partSizeBytes: 16 * MiB, abortStaleAfterHours: 24 }),
}).strict().superRefine((t, ctx) => {
  if (t.sseKmsKeyId && !t.serverSideEncryption?.startsWith('aws:kms')) {
    ctx.addIssue({ code: 'custom', path: ['sseKmsKeyId'], message: 'sseKmsKeyId needs serverSideEncryption aws:kms or aws:kms:dsse' });
  }
});

export const syncTargetSchema = z.discriminatedUnion('kind', [webdavTargetSchema, s3TargetSchema]);

const syncObject = z.object({
  /** Where segments go: `kind: webdav` (HTTP PUT) or `kind: s3` (any S3-compatible bucket). */
  target: syncTargetSchema,
  /**
   * Upload cap in bytes/s so live streaming keeps the uplink; 0 = uncapped. When the uplink
   * scheduler measures the link (an upstream with `priority`), the cap is also held to its leftover.
   */
  bandwidthBytesPerSec: z.number().int().min(0).default(0),
  /**
   * Segments in flight at once (each upload then verify): 2 overlaps one segment's verify with the
   * next upload and hides per-request round trips; more rarely helps on a robot's single uplink.
   */
  concurrency: z.number().int().min(1).max(8).default(2),
  /** Track patterns uploaded first, in order; the rest oldest first. */
  priority: z.array(trackPattern).default([]),
  /** Delete the local copy once the target's copy verified (size + sha256/MD5). */
  deleteAfterVerify: z.boolean().default(false),
  /**
   * After this many refusals of one segment by the target (403 on it, a bad digest, a stored copy
   * that does not verify) it is quarantined: kept, reported, not retried until asked. Network
   * failures and 5xx never count.
   */
  maxAttempts: z.number().int().min(1).max(100).default(5),
  /** Refusal ladder: first wait after the target said no, doubling (jittered) up to retryMaxMs. */
  retryInitialMs: z.number().int().min(10).default(1000),
  retryMaxMs: z.number().int().min(10).default(60_000),
  /** Network ladder (unreachable, reset, timeout, 5xx): retried fast for as long as it lasts. */
  networkRetryInitialMs: z.number().int().min(10).default(250),
  networkRetryMaxMs: z.number().int().min(10).default(2000),
  /** Per request: no progress for this long aborts the request. */
  timeoutMs: z.number().int().min(100).default(30_000),
  /** How often the uploader looks for new closed segments when idle. */
  pollMs: z.number().int().min(50).default(5000),
}).strict().superRefine((c, ctx) => {
  if (c.retryMaxMs < c.retryInitialMs) ctx.addIssue({ code: 'custom', path: ['retryMaxMs'], message: 'retryMaxMs must be >= retryInitialMs' });
  if (c.networkRetryMaxMs < c.networkRetryInitialMs) ctx.addIssue({ code: 'custom', path: ['networkRetryMaxMs'], message: 'networkRetryMaxMs must be >= networkRetryInitialMs' });
});

/**
 * `recordings.sync`. The older flat form (`url`, `auth`, `caFile` next to the other keys) is a
 * WebDAV target and still accepted: it is moved into `target` before validation.
 */
export const syncConfigSchema = z.preprocess((v) => {
  if (v && typeof v === 'object' && !Array.isArray(v) && !('target' in v) && 'url' in v) {
    const { url, auth: a, caFile, ...rest } = v as Record<string, unknown>;
    return { ...rest, target: { kind: 'webdav', url, ...(a !== undefined ? { auth: a } : {}), ...(caFile !== undefined ? { caFile } : {}) } };
  }
  return v;
}, syncObject);

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
export type SyncTargetConfig = z.infer<typeof syncTargetSchema>;
export type S3TargetConfig = z.infer<typeof s3TargetSchema>;
export type WebdavTargetConfig = z.infer<typeof webdavTargetSchema>;
export type RetentionConfig = z.infer<typeof retentionConfigSchema>;
export type IndexConfig = z.infer<typeof indexConfigSchema>;

/** `a/b/c` matches pattern `a/*\/c`. */
export function matchTrack(pattern: string, path: string): boolean {
  const p = pattern.split('/');
  const s = path.split('/');
  return p.length === s.length && p.every((x, i) => x === '*' || x === s[i]);
}
