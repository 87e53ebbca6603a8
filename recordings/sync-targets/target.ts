// What the sync uploader (recordings/sync.ts) needs from a target, and the pieces every target
// shares: a typed failure that says whose fault it was (network or refusal, this object or the
// whole target), the pacer that holds the bandwidth cap across all uploads, and a paced,
// optionally hashed, read stream over a byte range of a segment file.
//
// The uploader keeps the state machine (closed → uploading → synced → deleted locally, or
// quarantined); a target only moves bytes and proves what the stored copy holds.
import crypto from 'node:crypto';
import fs from 'node:fs';
import { Readable } from 'node:stream';
import { EdgeError, isNetworkErrno, type FailureClass } from '../../runtime/engine/api.js';
import type { IndexDb, SegmentRow } from '../index-db.js';
import type { RecLog } from '../log.js';
import { TokenBucket } from '../throttle.js';

/**
 * Whose problem a failure is. `object`: the target refused this segment (403 on its key, a bad
 * digest, a stored copy that does not verify) — it counts towards that segment's quarantine.
 * `target`: the target refuses everything we send (wrong key, clock skew, no bucket, wrong region,
 * untrusted certificate) — no segment is at fault, the uploader holds the whole queue and says
 * what to fix. Network failures (class `network`) are never a segment's fault either.
 */
export type FailureScope = 'object' | 'target';

export class SyncFailure extends EdgeError {
  constructor(
    code: string,
    message: string,
    readonly cls: FailureClass,
    readonly scope: FailureScope,
    context: Record<string, unknown> = {},
    options?: { cause?: unknown },
  ) {
    super(code, message, context, options);
  }
}

/** TLS verification failures: a config problem of the target (CA file), not of a segment. */
const TLS_CODES = /^(?:CERT_|UNABLE_TO_|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|ERR_TLS_CERT_ALTNAME_INVALID|ERR_SSL_|EPROTO$)/;

/**
 * Any error thrown while talking to a target, as a SyncFailure. Socket errors and timeouts are
 * the network; TLS trust errors are the target's config; anything else unknown is treated as the
 * network (retried fast, never quarantines a segment) — a segment is quarantined only on a
 * refusal the target stated.
 */
export function asSyncFailure(err: unknown): SyncFailure {
  if (err instanceof SyncFailure) return err;
  const e = err as NodeJS.ErrnoException & { code?: string };
  const code = typeof e?.code === 'string' ? e.code : '';
  const msg = e instanceof Error ? e.message : String(err);
  if (code && TLS_CODES.test(code)) {
    return new SyncFailure('SYNC_TLS', `TLS: ${msg} — the target's certificate is not trusted: set caFile to its CA (PEM)`, 'refused', 'target', { errno: code }, { cause: err });
  }
  if (isNetworkErrno(code) || code === 'SYNC_TIMEOUT' || code === 'SYNC_ABORTED' || code === 'ERR_STREAM_PREMATURE_CLOSE' || code === 'UND_ERR_CLOSED') {
    return new SyncFailure('SYNC_NETWORK', `${code}: ${msg}`, 'network', 'target', { errno: code }, { cause: err });
  }
  return new SyncFailure('SYNC_NETWORK', code ? `${code}: ${msg}` : msg, 'network', 'target', { errno: code || null }, { cause: err });
}

/** A local problem with the segment's file (gone, shorter than indexed): the segment's own fault. */
export function localFailure(code: string, message: string): SyncFailure {
  return new SyncFailure(code, message, 'refused', 'object');
}

/** How the stored copy was proven equal to the local file. */
export type VerifiedBy =
  /** A checksum the target computed (x-amz-checksum-sha256, OC-Checksum, Digest) equals ours. */
  | 'checksum'
  /** The object's ETag is the MD5 of what it stored, and equals the MD5 of the file (S3 single part, or of each part). */
  | 'etag'
  /** The copy was read back in full and hashed (the target offered neither). */
  | 'get';

export interface SyncJob {
  row: SegmentRow & { sha256: string };
  abs: string;
  /** A rebuilt or retried row: the target may hold it already; look before sending. */
  checkFirst: boolean;
}

export interface SyncOutcome {
  verifiedBy: VerifiedBy;
  /** Found complete and verified on the target: nothing sent. */
  alreadyOnTarget: boolean;
}

/** What the uploader hands every target: shared pacing, counters, the index, the stop signal. */
export interface TargetContext {
  db: IndexDb;
  log: RecLog;
  signal: AbortSignal;
  pacer: Pacer;
  timeoutMs: number;
  concurrency: number;
  /** Bytes put on the wire (counted as they go, retries included: the uplink estimator reads them). */
  sent(n: number): void;
  /** Wall time of a transfer phase (upload, verify), summed. */
  timed(phase: 'putMs' | 'verifyMs', ms: number): void;
  /** Bytes read back from the target to verify (the GET fallback). */
  readBack(n: number, fallback: boolean): void;
}

export interface SyncTarget {
  readonly kind: 'webdav' | 's3';
  /** Where segments go, without credentials (for stats and logs). */
  readonly where: string;
  /** Upload one segment and prove the stored copy; throws SyncFailure. */
  sync(job: SyncJob): Promise<SyncOutcome>;
  /** Periodic upkeep (abort stale multipart uploads); never throws. */
  housekeeping?(now: number): Promise<void>;
  stats(): Record<string, number | string | boolean | null>;
  /** Idempotent, never throws. */
  close(): Promise<void>;
}

/** Read/write unit of an upload; 256 KB keeps a buffer warm in cache while a syscall still moves a lot. */
export const CHUNK = 256 * 1024;

/**
 * The upload bandwidth cap, one for every upload of the uploader (a new file must not start with a
 * fresh burst): the configured cap, held further to the uplink scheduler's leftover when it
 * measures the link. 0 / null = uncapped.
 */
export class Pacer {
  private bucket: TokenBucket | null = null;
  private uplink: number | null = null;

  constructor(private readonly configured: number) {}

  /** Bytes/s in force (0 = uncapped). */
  get rate(): number {
    const c = this.configured > 0 ? this.configured : Infinity;
    const r = Math.min(c, this.uplink ?? Infinity);
    // a leftover of 0 would stop the sync for good: keep a trickle (4 KiB/s) so it still moves
    return Number.isFinite(r) ? Math.max(4096, Math.floor(r)) : 0;
  }

  /** The uplink scheduler's leftover for the sync (null: not measured, no limit from it). */
  setUplinkCap(bytesPerSec: number | null): void {
    const next = bytesPerSec === null || !Number.isFinite(bytesPerSec) ? null : Math.max(0, bytesPerSec);
    if (next === this.uplink) return;
    const before = this.rate;
    this.uplink = next;
    const r = this.rate;
    if (r === before) return;
    // a new rate (and burst, 1/8 s of it); a move to or from "uncapped" starts a new bucket
    if (r > 0 && before > 0 && this.bucket) this.bucket.setRate(r, Date.now(), this.chunk());
    else this.bucket = null;
  }

  get uplinkCap(): number | null {
    return this.uplink;
  }

  /** Read size under the cap: 1/8 s of budget keeps the pace smooth instead of bursty. */
  chunk(): number {
    const r = this.rate;
    return r > 0 ? Math.min(CHUNK, Math.max(4096, Math.floor(r / 8))) : CHUNK;
  }

  /** Wait until n bytes may go. */
  async take(n: number, signal: AbortSignal): Promise<void> {
    const r = this.rate;
    if (r <= 0) return;
    this.bucket ??= new TokenBucket(r, this.chunk(), Date.now());
    const wait = this.bucket.take(n, Date.now());
    if (wait <= 0 || signal.aborted) return;
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(t);
        signal.removeEventListener('abort', done);
        resolve();
      };
      const t = setTimeout(done, wait);
      signal.addEventListener('abort', done, { once: true });
    });
  }
}

export interface FileRangeOptions {
  pacer: Pacer;
  signal: AbortSignal;
  onBytes(n: number): void;
  /** Hashes fed with every byte read, in order (e.g. the MD5 the S3 ETag is compared with). */
  hashes?: crypto.Hash[];
}

/**
 * A paced read stream over [start, start + length) of a file. Each read waits for the bandwidth
 * cap, then reads one chunk; a file shorter than promised fails the stream (SYNC_SHORT_READ).
 * Memory: one chunk in the stream's buffer plus the one the socket holds.
 */
export class FileRangeStream extends Readable {
  private fh: fs.promises.FileHandle | null = null;
  private pos: number;
  private readonly end: number;
  private reading = false;

  constructor(private readonly abs: string, start: number, length: number, private readonly o: FileRangeOptions) {
    super({ highWaterMark: CHUNK });
    this.pos = start;
    this.end = start + length;
  }

  override _construct(cb: (err?: Error | null) => void): void {
    fs.promises.open(this.abs, 'r').then(
      (fh) => ((this.fh = fh), cb()),
      (err: Error) => cb(err),
    );
  }

  override _read(): void {
    if (this.reading) return;
    this.reading = true;
    void this.readChunk();
  }

  /** One chunk; `reading` is cleared before push(), which may ask for the next one at once. */
  private async readChunk(): Promise<void> {
    try {
      if (this.pos >= this.end) {
        this.reading = false;
        this.push(null);
        return;
      }
      const n = Math.min(this.o.pacer.chunk(), this.end - this.pos);
      await this.o.pacer.take(n, this.o.signal);
      if (this.destroyed) return void (this.reading = false);
      // a fresh buffer per chunk: the http client may hold it until the socket took it
      const buf = Buffer.allocUnsafe(n);
      const { bytesRead } = await this.fh!.read(buf, 0, n, this.pos);
      if (bytesRead === 0) throw new EdgeError('SYNC_SHORT_READ', `file ended at byte ${this.pos}, expected ${this.end}`);
      const chunk = bytesRead === n ? buf : buf.subarray(0, bytesRead);
      this.pos += bytesRead;
      for (const h of this.o.hashes ?? []) h.update(chunk);
      this.o.onBytes(bytesRead);
      this.reading = false;
      this.push(chunk);
    } catch (err) {
      this.reading = false;
      this.destroy(err as Error);
    }
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    const fh = this.fh;
    this.fh = null;
    if (!fh) return cb(err);
    fh.close().then(
      () => cb(err),
      () => cb(err),
    );
  }
}

/** sha256 (and md5) of [start, start + length) of a file, read in CHUNK pieces from one reused buffer; `also` is fed the same bytes. */
export async function hashRange(abs: string, start: number, length: number, algs: Array<'sha256' | 'md5'>, also: crypto.Hash[] = []): Promise<Record<'sha256' | 'md5', Buffer | null>> {
  const hs = algs.map((a) => crypto.createHash(a));
  const buf = Buffer.allocUnsafe(Math.min(CHUNK, Math.max(1, length)));
  const fh = await fs.promises.open(abs, 'r');
  try {
    let pos = start;
    const end = start + length;
    while (pos < end) {
      const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, end - pos), pos);
      if (bytesRead === 0) throw localFailure('SYNC_SHORT_READ', `file ended at byte ${pos}, expected ${end}`);
      const c = buf.subarray(0, bytesRead);
      for (const h of hs) h.update(c);
      for (const h of also) h.update(c);
      pos += bytesRead;
    }
  } finally {
    await fh.close().catch(() => {});
  }
  const out: Record<'sha256' | 'md5', Buffer | null> = { sha256: null, md5: null };
  algs.forEach((a, i) => (out[a] = hs[i]!.digest()));
  return out;
}
