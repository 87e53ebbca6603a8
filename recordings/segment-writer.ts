// Segment writers. Each owns one `.part` file: appends whole fragments (video: one moof+mdat per
// GOP / fragment duration, through mediabunny; data: a batch of records), hashes bytes as they
// land, fdatasyncs on demand and at close, then renames to the final name.
// A failed write (ENOSPC) truncates back to the last complete fragment: the file always ends on one.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { EncodedPacket, EncodedVideoPacketSource, Mp4OutputFormat, Output, StreamTarget } from 'mediabunny';
import { EdgeError, type Frame } from '../runtime/engine/api.js';
import type { AvcInfo } from './h264-config.js';
import { finalOf, PART_SUFFIX } from './layout.js';
import { encodeMetaTag } from './mp4-scan.js';
import { encodeFileHeader, encodeRecord, type SegmentMeta } from './record-file.js';

export interface ClosedSegment {
  rel: string;
  meta: SegmentMeta;
  bytes: number;
  frames: number;
  keyframes: number;
  startUs: number;
  endUs: number;
  wallStartMs: number;
  wallEndMs: number;
  sha256: string;
}

export interface SegmentWriterStats {
  bytes: number;
  frames: number;
  fragments: number;
}

/** The file under a segment: sequential appends, running sha256, truncate-to-good on failure. */
class PartFile {
  readonly relPart: string;
  private fd: number | null;
  private readonly sha = crypto.createHash('sha256');
  /** Bytes of complete fragments on disk. */
  good = 0;
  failed: NodeJS.ErrnoException | null = null;

  constructor(readonly root: string, rel: string) {
    this.relPart = rel + PART_SUFFIX;
    const abs = path.join(root, this.relPart);
    fs.mkdirSync(path.dirname(abs), { recursive: true });
    this.fd = fs.openSync(abs, 'wx');
  }

  /** Append one whole fragment; on error truncate back and remember the error. */
  append(buf: Uint8Array, position = this.good): void {
    if (this.failed) throw this.failed;
    if (this.fd === null) throw new EdgeError('REC_CLOSED', 'segment closed', { path: this.relPart });
    if (position !== this.good) {
      throw new EdgeError('REC_SEEK', 'muxer wrote out of order', { path: this.relPart, position, at: this.good });
    }
    let off = 0;
    try {
      while (off < buf.length) off += fs.writeSync(this.fd, buf, off, buf.length - off, this.good + off);
    } catch (err) {
      this.failed = err as NodeJS.ErrnoException;
      try {
        fs.ftruncateSync(this.fd, this.good);
      } catch {
        /* the fragment tail stays; recovery's scan truncates it on the next start */
      }
      throw err;
    }
    this.sha.update(buf);
    this.good += buf.length;
  }

  async sync(): Promise<void> {
    const fd = this.fd;
    if (fd === null) return;
    await new Promise<void>((resolve) => fs.fdatasync(fd, () => resolve()));
  }

  /** fsync, close and rename to the final name (or unlink when empty). Returns the final rel path. */
  async finish(keep: boolean): Promise<{ rel: string; sha256: string } | null> {
    const fd = this.fd;
    if (fd === null) return null;
    this.fd = null;
    const absPart = path.join(this.root, this.relPart);
    if (!keep) {
      try {
        fs.closeSync(fd);
      } catch {
        /* fd already invalid */
      }
      fs.rmSync(absPart, { force: true });
      return null;
    }
    await new Promise<void>((resolve) => fs.fdatasync(fd, () => resolve()));
    fs.closeSync(fd);
    const rel = finalOf(this.relPart);
    fs.renameSync(absPart, path.join(this.root, rel));
    syncDir(path.dirname(path.join(this.root, rel)));
    return { rel, sha256: this.sha.digest('hex') };
  }

  /** Close without rename (shutdown after a failure): recovery finishes it. Never throws. */
  abandon(): void {
    if (this.fd === null) return;
    try {
      fs.closeSync(this.fd);
    } catch {
      /* nothing to do */
    }
    this.fd = null;
  }
}

/** Make a rename durable: fsync the directory entry. Best effort (some filesystems refuse). */
export function syncDir(dir: string): void {
  try {
    const fd = fs.openSync(dir, 'r');
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    /* tmpfs/overlay may refuse a directory fsync: the rename is still atomic */
  }
}

export interface SegmentWriter {
  readonly rel: string;
  readonly meta: SegmentMeta;
  readonly kind: 'video' | 'data';
  /** Bytes of complete fragments on disk. */
  readonly bytes: number;
  readonly frames: number;
  readonly startUs: number;
  readonly lastUs: number;
  readonly lastWallMs: number;
  readonly failed: NodeJS.ErrnoException | null;
  add(frame: Frame): Promise<void>;
  sync(): Promise<void>;
  /** Flush the open fragment, fsync, rename. null when nothing reached the disk (file removed). */
  close(): Promise<ClosedSegment | null>;
  /** After a write error: keep what is on disk (truncated to the last fragment), renamed and done. */
  closeAfterError(): Promise<ClosedSegment | null>;
  /** Close the fd without renaming (recovery finishes the .part). Never throws. */
  abandon(): void;
}

abstract class BaseWriter {
  protected readonly file: PartFile;
  frames = 0;
  keyframes = 0;
  /** Frames and keyframes whose bytes are on disk (for a close after a failure). */
  protected framesOnDisk = 0;
  protected keysOnDisk = 0;
  protected lastOnDiskUs: number;
  protected lastOnDiskWall: number;
  lastUs: number;
  protected lastWall: number;
  readonly startUs: number;

  constructor(root: string, readonly rel: string, readonly meta: SegmentMeta) {
    this.file = new PartFile(root, rel);
    this.startUs = meta.startUs;
    this.lastUs = meta.startUs;
    this.lastWall = meta.wallMs;
    this.lastOnDiskUs = meta.startUs;
    this.lastOnDiskWall = meta.wallMs;
  }

  get bytes(): number {
    return this.file.good;
  }

  get lastWallMs(): number {
    return this.lastWall;
  }

  /** The write error that stopped this segment (ENOSPC…), if any. */
  get failed(): NodeJS.ErrnoException | null {
    return this.file.failed;
  }

  sync(): Promise<void> {
    return this.file.sync();
  }

  protected async done(keep: boolean, frames: number, keys: number, endUs: number, wallEnd: number): Promise<ClosedSegment | null> {
    const r = await this.file.finish(keep && frames > 0);
    if (!r) return null;
    return {
      rel: r.rel,
      meta: this.meta,
      bytes: this.file.good,
      frames,
      keyframes: keys,
      startUs: this.startUs,
      endUs,
      wallStartMs: this.meta.wallMs,
      wallEndMs: wallEnd,
      sha256: r.sha256,
    };
  }
}

/** Default frame duration before the second frame tells the real one (30 fps). */
const DEFAULT_FRAME_US = 33_333;

export class VideoSegmentWriter extends BaseWriter implements SegmentWriter {
  readonly kind = 'video' as const;
  private readonly output: Output;
  private readonly src: EncodedVideoPacketSource;
  private started = false;
  private frameUs = DEFAULT_FRAME_US;
  /** Frames added since the last fragment reached the disk. */
  private openFrames = 0;
  private openKeys = 0;
  private closing: Promise<ClosedSegment | null> | null = null;

  constructor(root: string, rel: string, meta: SegmentMeta, private readonly avc: AvcInfo, fragmentMs: number) {
    super(root, rel, meta);
    const file = this.file;
    const target = new StreamTarget(
      new WritableStream({
        write: (chunk) => {
          file.append(chunk.data, chunk.position);
          // every muxer flush is a whole fragment (ftyp alone at start): count what is now durable
          this.framesOnDisk += this.openFrames;
          this.keysOnDisk += this.openKeys;
          this.openFrames = 0;
          this.openKeys = 0;
          this.lastOnDiskUs = this.pendingLastUs;
          this.lastOnDiskWall = this.pendingLastWall;
        },
      }),
    );
    this.output = new Output({
      // A keyframe at ~fragmentMs cuts even when capture times jitter (a GOP equal to the fragment
      // duration, frames that arrive in bursts): fragments stay one GOP, not two.
      format: new Mp4OutputFormat({ fastStart: 'fragmented', minimumFragmentDuration: (fragmentMs * 0.75) / 1000 }),
      target,
    });
    this.src = new EncodedVideoPacketSource('avc');
    this.output.addVideoTrack(this.src);
    this.output.setMetadataTags({ comment: encodeMetaTag(meta) });
  }

  // The last frame of the fragment being built (moves to "on disk" at the next write).
  private pendingLastUs = 0;
  private pendingLastWall = 0;
  private prevUs: number | null = null;
  private prevWall = 0;

  async add(frame: Frame): Promise<void> {
    if (!this.started) {
      await this.output.start();
      this.started = true;
    }
    if (this.prevUs !== null && frame.ts > this.prevUs) this.frameUs = Math.min(frame.ts - this.prevUs, 1_000_000);
    // The fragment that a key frame closes ends with the previous frame.
    this.pendingLastUs = this.prevUs === null ? frame.ts : this.prevUs + this.frameUs;
    this.pendingLastWall = this.prevUs === null ? frame.wallclock : this.prevWall;
    const pkt = new EncodedPacket(frame.data, frame.key ? 'key' : 'delta', (frame.ts - this.startUs) / 1e6, this.frameUs / 1e6);
    await this.src.add(
      pkt,
      this.frames === 0 ? { decoderConfig: { codec: this.avc.codec, codedWidth: this.avc.width, codedHeight: this.avc.height } } : undefined,
    );
    this.openFrames++;
    if (frame.key) this.openKeys++;
    this.frames++;
    if (frame.key) this.keyframes++;
    this.prevUs = frame.ts;
    this.prevWall = frame.wallclock;
    this.lastUs = frame.ts + this.frameUs;
    this.lastWall = frame.wallclock;
  }

  close(): Promise<ClosedSegment | null> {
    this.closing ??= (async () => {
      if (this.started && !this.file.failed) {
        try {
          await this.output.finalize();
        } catch {
          // finalize failed writing (disk full): keep the fragments that are on disk
          return this.done(true, this.framesOnDisk, this.keysOnDisk, this.lastOnDiskUs, this.lastOnDiskWall);
        }
        return this.done(true, this.frames, this.keyframes, this.lastUs, this.lastWall);
      }
      return this.done(true, this.framesOnDisk, this.keysOnDisk, this.lastOnDiskUs, this.lastOnDiskWall);
    })();
    return this.closing;
  }

  closeAfterError(): Promise<ClosedSegment | null> {
    this.closing ??= (async () => {
      try {
        await this.output.cancel();
      } catch {
        /* the muxer is already failed */
      }
      return this.done(true, this.framesOnDisk, this.keysOnDisk, this.lastOnDiskUs, this.lastOnDiskWall);
    })();
    return this.closing;
  }

  abandon(): void {
    this.file.abandon();
  }
}

/** Records buffered before a write: ≤ one fragment of time and ≤ 1 MB (a burst of JPEGs). */
const MAX_BATCH_BYTES = 1024 * 1024;

export class RecordSegmentWriter extends BaseWriter implements SegmentWriter {
  readonly kind = 'data' as const;
  private batch: Buffer[] = [];
  private batchBytes = 0;
  private batchFrames = 0;
  private batchStartUs = 0;
  private batchLastWall = 0;
  private closing: Promise<ClosedSegment | null> | null = null;

  constructor(root: string, rel: string, meta: SegmentMeta, private readonly fragmentUs: number) {
    super(root, rel, meta);
    this.file.append(encodeFileHeader(meta));
  }

  add(frame: Frame): Promise<void> {
    const rec = encodeRecord(frame.ts, frame.wallclock, frame.data);
    if (this.batchFrames === 0) this.batchStartUs = frame.ts;
    this.batch.push(rec);
    this.batchBytes += rec.length;
    this.batchFrames++;
    this.batchLastWall = frame.wallclock;
    this.frames++;
    this.keyframes++;
    this.lastUs = frame.ts;
    this.lastWall = frame.wallclock;
    if (frame.ts - this.batchStartUs >= this.fragmentUs || this.batchBytes >= MAX_BATCH_BYTES) this.flushBatch();
    return Promise.resolve();
  }

  private flushBatch(): void {
    if (this.batchFrames === 0) return;
    const buf = this.batch.length === 1 ? this.batch[0]! : Buffer.concat(this.batch, this.batchBytes);
    const n = this.batchFrames;
    this.batch = [];
    this.batchBytes = 0;
    this.batchFrames = 0;
    this.file.append(buf);
    this.framesOnDisk += n;
    this.keysOnDisk += n;
    this.lastOnDiskUs = this.lastUs;
    this.lastOnDiskWall = this.batchLastWall;
  }

  close(): Promise<ClosedSegment | null> {
    this.closing ??= (async () => {
      try {
        if (!this.file.failed) this.flushBatch();
      } catch {
        /* disk full on the last batch: what is on disk stays */
      }
      return this.done(true, this.framesOnDisk, this.keysOnDisk, this.lastOnDiskUs, this.lastOnDiskWall);
    })();
    return this.closing;
  }

  closeAfterError(): Promise<ClosedSegment | null> {
    this.batch = [];
    this.batchFrames = 0;
    this.batchBytes = 0;
    return this.close();
  }

  abandon(): void {
    this.file.abandon();
  }
}
