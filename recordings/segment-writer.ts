// Segment writers. Each owns one `.part` file: appends whole fragments (video: one moof+mdat per
// GOP / fragment duration, through mediabunny; data: a batch of records), hashes bytes as they
// land, fdatasyncs on demand and at close, then renames to the final name.
// A failed write (ENOSPC) truncates back to the last complete fragment: the file always ends on one.
// Every frame a writer accepts is accounted for: on disk (`framesOnDisk`) or reported lost by
// close() with the error that lost it — nothing a close swallows goes uncounted.
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

/** What a close did: the segment (null when nothing reached the disk), frames that did not, and why. */
export interface CloseResult {
  seg: ClosedSegment | null;
  /** Frames accepted by add() that are not in the closed file. */
  lost: number;
  /** The write error that lost them (ENOSPC…); null when none was seen. */
  error: NodeJS.ErrnoException | null;
}

/**
 * Video timestamps go to the muxer in ticks of its timescale (mediabunny's 57 600 Hz, the LCM of
 * common frame rates): each frame at least one tick after the previous, so two frames never round
 * to the same decode time ("non monotonically increasing dts" in readers).
 */
export const MUXER_TIMESCALE = 57_600;

/**
 * A video segment's wall-clock end: its first frame's wallclock plus its capture-clock span to the
 * end of its last frame (one definition, recorder and recovery). A record file's end is its last
 * record's own wallclock (a record has no duration; the uplink matches records by it).
 */
export function wallEndOf(meta: Pick<SegmentMeta, 'startUs' | 'wallMs'>, endUs: number): number {
  return meta.wallMs + (endUs - meta.startUs) / 1000;
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

  /** Close and unlink at once (a writer whose construction failed). Never throws. */
  discard(): void {
    this.abandon();
    try {
      fs.rmSync(path.join(this.root, this.relPart), { force: true });
    } catch {
      /* recovery removes an empty part */
    }
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
  /** Frames accepted by add() (counted before any I/O: a frame whose add throws is accepted and lost). */
  readonly frames: number;
  /** Frames whose bytes are on disk in complete fragments. */
  readonly framesOnDisk: number;
  readonly startUs: number;
  /** End of what is on disk (capture µs) and its wall-clock time, for the `recording` row. */
  readonly onDiskEndUs: number;
  readonly onDiskWallEndMs: number;
  readonly failed: NodeJS.ErrnoException | null;
  add(frame: Frame): Promise<void>;
  sync(): Promise<void>;
  /** Flush the open fragment, fsync, rename (seg null and the file removed when nothing reached the disk). */
  close(): Promise<CloseResult>;
  /** After a write error: keep what is on disk (truncated to the last fragment), renamed and done. */
  closeAfterError(): Promise<CloseResult>;
  /** Close the fd without renaming (recovery finishes the .part). Never throws. */
  abandon(): void;
}

abstract class BaseWriter {
  protected readonly file: PartFile;
  frames = 0;
  keyframes = 0;
  /** Frames and keyframes whose bytes are on disk. */
  framesOnDisk = 0;
  protected keysOnDisk = 0;
  /** End (capture µs) of what is on disk. */
  onDiskEndUs: number;
  readonly startUs: number;

  constructor(root: string, readonly rel: string, readonly meta: SegmentMeta) {
    this.file = new PartFile(root, rel);
    this.startUs = meta.startUs;
    this.onDiskEndUs = meta.startUs;
  }

  get bytes(): number {
    return this.file.good;
  }

  get onDiskWallEndMs(): number {
    return wallEndOf(this.meta, this.onDiskEndUs);
  }

  /** The write error that stopped this segment (ENOSPC…), if any. */
  get failed(): NodeJS.ErrnoException | null {
    return this.file.failed;
  }

  sync(): Promise<void> {
    return this.file.sync();
  }

  /** Rename what is on disk (or remove it when nothing is) and say what was lost. */
  protected async done(error: NodeJS.ErrnoException | null): Promise<CloseResult> {
    const lost = this.frames - this.framesOnDisk;
    const err = error ?? this.file.failed;
    const r = await this.file.finish(this.framesOnDisk > 0);
    if (!r) return { seg: null, lost, error: err };
    const seg: ClosedSegment = {
      rel: r.rel,
      meta: this.meta,
      bytes: this.file.good,
      frames: this.framesOnDisk,
      keyframes: this.keysOnDisk,
      startUs: this.startUs,
      endUs: this.onDiskEndUs,
      wallStartMs: this.meta.wallMs,
      wallEndMs: this.onDiskWallEndMs,
      sha256: r.sha256,
    };
    return { seg, lost, error: err };
  }
}

function errnoOf(err: unknown): NodeJS.ErrnoException {
  if (err instanceof Error) return err as NodeJS.ErrnoException;
  return Object.assign(new Error(String(err)), { code: 'EIO' }) as NodeJS.ErrnoException;
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
  /** Muxer tick of the frame being added: where the fragment it may close ends. */
  private addingTick = 0;
  private lastTick = -1;
  /** Frames moved one tick later than their capture time asked, so no two share a decode time. */
  ticksBumped = 0;
  private closing: Promise<CloseResult> | null = null;

  constructor(root: string, rel: string, meta: SegmentMeta, private readonly avc: AvcInfo, fragmentMs: number) {
    super(root, rel, meta);
    const file = this.file;
    const target = new StreamTarget(
      new WritableStream({
        write: (chunk) => {
          file.append(chunk.data, chunk.position);
          // every muxer flush is a whole fragment (ftyp alone at start): count what is now durable
          if (this.openFrames > 0) {
            this.framesOnDisk += this.openFrames;
            this.keysOnDisk += this.openKeys;
            this.openFrames = 0;
            this.openKeys = 0;
            this.onDiskEndUs = this.startUs + this.ticksToUs(this.addingTick);
          }
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

  private ticksToUs(ticks: number): number {
    return (ticks * 1e6) / MUXER_TIMESCALE;
  }

  private prevUs: number | null = null;

  async add(frame: Frame): Promise<void> {
    this.frames++;
    if (frame.key) this.keyframes++;
    if (!this.started) {
      this.started = true;
      await this.output.start();
    }
    if (this.prevUs !== null && frame.ts > this.prevUs) this.frameUs = Math.min(frame.ts - this.prevUs, 1_000_000);
    let tick = Math.round(((frame.ts - this.startUs) * MUXER_TIMESCALE) / 1e6);
    if (tick <= this.lastTick) {
      tick = this.lastTick + 1;
      this.ticksBumped++;
    }
    this.addingTick = tick;
    const durTicks = Math.max(1, Math.round((this.frameUs * MUXER_TIMESCALE) / 1e6));
    const pkt = new EncodedPacket(frame.data, frame.key ? 'key' : 'delta', tick / MUXER_TIMESCALE, durTicks / MUXER_TIMESCALE);
    await this.src.add(
      pkt,
      this.frames === 1 ? { decoderConfig: { codec: this.avc.codec, codedWidth: this.avc.width, codedHeight: this.avc.height } } : undefined,
    );
    this.lastTick = tick;
    this.openFrames++;
    if (frame.key) this.openKeys++;
    this.prevUs = frame.ts;
    // the end once this frame is on disk: its start plus its duration, as the file will say
    this.pendingEndTicks = tick + durTicks;
  }

  private pendingEndTicks = 0;

  close(): Promise<CloseResult> {
    this.closing ??= (async () => {
      if (!this.started || this.file.failed) return this.done(null);
      try {
        await this.output.finalize();
      } catch (err) {
        // finalize failed writing (disk full): the fragments already on disk stay
        return this.done(errnoOf(err));
      }
      if (this.openFrames > 0 && !this.file.failed) {
        this.framesOnDisk += this.openFrames;
        this.keysOnDisk += this.openKeys;
        this.openFrames = 0;
        this.openKeys = 0;
      }
      this.onDiskEndUs = this.startUs + this.ticksToUs(this.pendingEndTicks);
      return this.done(null);
    })();
    return this.closing;
  }

  closeAfterError(): Promise<CloseResult> {
    this.closing ??= (async () => {
      try {
        await this.output.cancel();
      } catch {
        /* the muxer is already failed */
      }
      return this.done(null);
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
  private lastUs: number;
  private lastWall: number;
  private onDiskWall: number;
  private closing: Promise<CloseResult> | null = null;

  constructor(root: string, rel: string, meta: SegmentMeta, private readonly fragmentUs: number) {
    super(root, rel, meta);
    this.lastUs = meta.startUs;
    this.lastWall = meta.wallMs;
    this.onDiskWall = meta.wallMs;
    try {
      this.file.append(encodeFileHeader(meta));
    } catch (err) {
      this.file.discard(); // no header, no segment: nothing is left behind for recovery
      throw err;
    }
  }

  add(frame: Frame): Promise<void> {
    this.frames++;
    this.keyframes++;
    const rec = encodeRecord(frame.ts, frame.wallclock, frame.data);
    if (this.batchFrames === 0) this.batchStartUs = frame.ts;
    this.batch.push(rec);
    this.batchBytes += rec.length;
    this.batchFrames++;
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
    this.onDiskEndUs = this.lastUs;
    this.onDiskWall = this.lastWall;
  }

  /** The last record's own wallclock (see wallEndOf). */
  override get onDiskWallEndMs(): number {
    return this.onDiskWall;
  }

  close(): Promise<CloseResult> {
    this.closing ??= (async () => {
      let error: NodeJS.ErrnoException | null = null;
      try {
        if (!this.file.failed) this.flushBatch();
      } catch (err) {
        error = errnoOf(err); // disk full on the last batch: what is on disk stays, the batch is lost (counted)
      }
      return this.done(error);
    })();
    return this.closing;
  }

  closeAfterError(): Promise<CloseResult> {
    this.batch = [];
    this.batchFrames = 0;
    this.batchBytes = 0;
    return this.close();
  }

  abandon(): void {
    this.file.abandon();
  }
}
