// One track's recorder: reads its engine queue in order, cuts segments (video at keyframes,
// data at the same capture-clock grid), and reports closed segments to the index.
import fs from 'node:fs';
import path from 'node:path';
import { mimeBase, mimeKind, type ConsumerHandle, type Frame, type QueueItem, type TrackRef } from '../runtime/engine/api.js';
import { avcInfoOf, hasSlice, type AvcInfo } from './h264-config.js';
import { RECORD_EXT, segmentRelPath, VIDEO_EXT, withCounter } from './layout.js';
import type { SegmentMeta } from './record-file.js';
import { MAX_RECORD_BYTES } from './record-file.js';
import { RecordSegmentWriter, VideoSegmentWriter, type ClosedSegment, type SegmentWriter } from './segment-writer.js';

export type RecorderDrop =
  | 'malformed'
  | 'no-sps'
  | 'wait-keyframe'
  | 'non-monotonic'
  | 'unsupported-mime'
  | 'disk-full'
  | 'write-error'
  | 'oversized';

export interface RecorderHooks {
  /** A segment file was created (row in state `recording`). */
  opened(w: SegmentWriter): void;
  /** A segment reached its final name. */
  closed(seg: ClosedSegment, w: SegmentWriter): void;
  /** A segment ended with nothing on disk: its file is gone, its `recording` row must go too. */
  discarded(w: SegmentWriter): void;
  /** A write failed with ENOSPC: retention should run now. */
  diskFull(ref: TrackRef): void;
  /** Free bytes on the recordings filesystem (to resume after disk full). */
  freeBytes(): number;
  error(err: Error, ctx: object): void;
}

export interface RecorderOptions {
  root: string;
  segmentUs: number;
  fragmentUs: number;
  maxSegmentBytes: number;
  run: string;
  offsetUs: number;
  /** Resume after ENOSPC once this much is free (the floor plus room for a few fragments). */
  resumeFreeBytes: number;
}

export interface TrackRecorderStats {
  track: string;
  mime: string | null;
  framesIn: number;
  framesWritten: number;
  bytesWritten: number;
  segmentsClosed: number;
  segmentOpen: string | null;
  drops: Record<RecorderDrop, number>;
  diskFull: boolean;
  diskFullEvents: number;
  lastError: string | null;
}

export class TrackRecorder {
  private writer: SegmentWriter | null = null;
  private mime: string | undefined;
  private avc: AvcInfo | null = null;
  private lastTs = -Infinity;
  private draining = false;
  private closing: Promise<void> | null = null;
  private diskFull = false;
  private lastSpaceCheck = 0;
  private readonly st: TrackRecorderStats;
  /** Closed segments' bytes, plus the open one's on-disk bytes in stats(). */
  private bytesClosed = 0;
  private idle: Promise<void> = Promise.resolve();
  private idleResolve: (() => void) | null = null;

  constructor(
    readonly ref: TrackRef,
    private consumer: ConsumerHandle,
    private readonly opts: RecorderOptions,
    private readonly hooks: RecorderHooks,
  ) {
    this.st = {
      track: `${ref.channel}/${ref.source}/${ref.track}`,
      mime: null,
      framesIn: 0,
      framesWritten: 0,
      bytesWritten: 0,
      segmentsClosed: 0,
      segmentOpen: null,
      drops: { malformed: 0, 'no-sps': 0, 'wait-keyframe': 0, 'non-monotonic': 0, 'unsupported-mime': 0, 'disk-full': 0, 'write-error': 0, oversized: 0 },
      diskFull: false,
      diskFullEvents: 0,
      lastError: null,
    };
    this.mime = consumer.mime();
    this.listen(consumer);
  }

  private listen(consumer: ConsumerHandle): void {
    consumer.onReadable(() => {
      if (consumer === this.consumer) this.kick();
    });
    this.kick();
  }

  /**
   * Continue on a new queue of the same track (the engine closed the old one). The open segment
   * goes on; the replayed GOP cache (frames already written) is skipped by capture time.
   */
  attach(consumer: ConsumerHandle): void {
    if (this.closing) {
      consumer.close();
      return;
    }
    this.consumer = consumer;
    this.listen(consumer);
  }

  /** Capture time of the last frame written (−∞ before the first). */
  get lastWrittenUs(): number {
    return this.lastTs;
  }

  get current(): SegmentWriter | null {
    return this.writer;
  }

  private kick(): void {
    if (this.draining || this.closing) return;
    this.draining = true;
    this.idle = new Promise((r) => (this.idleResolve = r));
    void this.drain();
  }

  private async drain(): Promise<void> {
    try {
      for (;;) {
        const item: QueueItem | undefined = this.consumer.next();
        if (!item) break;
        if (item.type !== 'frame') continue;
        try {
          await this.onFrame(item.frame, item.mime);
        } catch (err) {
          this.st.lastError = (err as Error).message;
          this.hooks.error(err as Error, { track: this.st.track });
        }
      }
    } finally {
      this.draining = false;
      const r = this.idleResolve;
      this.idleResolve = null;
      r?.();
    }
    if (!this.closing && this.hasMore()) this.kick();
  }

  private hasMore(): boolean {
    return this.consumer.stats().queuedItems > 0;
  }

  /** Resolves once the queue is drained (tests, close). */
  settled(): Promise<void> {
    return this.idle;
  }

  private drop(reason: RecorderDrop): void {
    this.st.drops[reason]++;
  }

  private async onFrame(frame: Frame, mime: string | undefined): Promise<void> {
    this.st.framesIn++;
    if (mime !== undefined && mime !== this.mime) {
      // A MIME change (new resolution, new codec) starts a new segment.
      await this.closeSegment();
      this.mime = mime;
      this.avc = null;
    }
    this.st.mime = this.mime ?? null;
    if (!Number.isFinite(frame.ts) || !Number.isFinite(frame.wallclock) || !(frame.data instanceof Uint8Array)) {
      this.drop('malformed');
      return;
    }
    // The capture clock orders records; a frame from the past (a replayed cache) is not re-recorded.
    if (frame.ts < this.lastTs) {
      this.drop('non-monotonic');
      return;
    }
    if (this.diskFull) {
      if (!this.spaceBack()) {
        this.drop('disk-full');
        return;
      }
      this.diskFull = false;
      this.st.diskFull = false;
    }
    const kind = mimeKind(this.mime);
    if (kind === 'video') {
      if (mimeBase(this.mime ?? '') !== 'video/h264') {
        this.drop('unsupported-mime');
        return;
      }
      if (frame.ts === this.lastTs || frame.data.length === 0 || !hasSlice(frame.data)) {
        this.drop(frame.ts === this.lastTs ? 'non-monotonic' : 'malformed');
        return;
      }
      await this.onVideo(frame);
    } else if (kind === 'data') {
      if (frame.data.length > MAX_RECORD_BYTES) {
        this.drop('oversized');
        return;
      }
      await this.onData(frame);
    } else {
      this.drop('unsupported-mime');
    }
  }

  private gridEnd(startUs: number): number {
    return (Math.floor(startUs / this.opts.segmentUs) + 1) * this.opts.segmentUs;
  }

  private segEnd = 0;

  private async onVideo(frame: Frame): Promise<void> {
    let info: AvcInfo | null = null;
    if (frame.key) {
      info = avcInfoOf(frame.data);
      if (info && this.avc && (info.codec !== this.avc.codec || info.width !== this.avc.width || info.height !== this.avc.height)) {
        await this.closeSegment(); // new SPS: the MP4 track description changes
      }
      if (info) this.avc = info;
    }
    const w = this.writer;
    if (w && frame.key && (frame.ts >= this.segEnd || w.bytes >= this.opts.maxSegmentBytes)) await this.closeSegment();
    if (!this.writer) {
      if (!frame.key) {
        this.drop('wait-keyframe');
        return;
      }
      if (!this.avc) {
        this.drop('no-sps');
        return;
      }
      if (!this.open(frame, VIDEO_EXT)) return;
    }
    await this.write(frame);
  }

  private async onData(frame: Frame): Promise<void> {
    if (this.writer && (frame.ts >= this.segEnd || this.writer.bytes >= this.opts.maxSegmentBytes)) await this.closeSegment();
    if (!this.writer && !this.open(frame, RECORD_EXT)) return;
    await this.write(frame);
  }

  private open(frame: Frame, ext: string): boolean {
    const meta: SegmentMeta = {
      v: 1,
      channel: this.ref.channel,
      source: this.ref.source,
      track: this.ref.track,
      mime: this.mime ?? 'application/octet-stream',
      startUs: frame.ts,
      wallMs: frame.wallclock,
      offsetUs: this.opts.offsetUs,
      run: this.opts.run,
    };
    const base = segmentRelPath(this.ref, frame.wallclock, ext);
    let rel = base;
    for (let n = 1; n < 1000 && (fs.existsSync(path.join(this.opts.root, rel)) || fs.existsSync(path.join(this.opts.root, `${rel}.part`))); n++) {
      rel = withCounter(base, n);
    }
    try {
      this.writer =
        ext === VIDEO_EXT
          ? new VideoSegmentWriter(this.opts.root, rel, meta, this.avc!, this.opts.fragmentUs / 1000)
          : new RecordSegmentWriter(this.opts.root, rel, meta, this.opts.fragmentUs);
    } catch (err) {
      this.onWriteError(err as NodeJS.ErrnoException);
      return false;
    }
    this.segEnd = this.gridEnd(frame.ts);
    this.st.segmentOpen = rel;
    this.hooks.opened(this.writer);
    return true;
  }

  private async write(frame: Frame): Promise<void> {
    const w = this.writer!;
    try {
      await w.add(frame);
    } catch (err) {
      this.drop((err as NodeJS.ErrnoException).code === 'ENOSPC' ? 'disk-full' : 'write-error');
      this.onWriteError(err as NodeJS.ErrnoException);
      await this.closeSegment(true);
      return;
    }
    if (w.failed) {
      this.onWriteError(w.failed);
      await this.closeSegment(true);
      return;
    }
    this.lastTs = frame.ts;
    this.st.framesWritten++;
  }

  private onWriteError(err: NodeJS.ErrnoException): void {
    this.st.lastError = `${err.code ?? 'ERR'}: ${err.message}`;
    if (err.code === 'ENOSPC' || err.code === 'EDQUOT') {
      if (!this.diskFull) this.st.diskFullEvents++;
      this.diskFull = true;
      this.st.diskFull = true;
      this.lastSpaceCheck = Date.now();
      this.hooks.diskFull(this.ref);
    } else {
      this.hooks.error(err, { track: this.st.track, op: 'write' });
    }
  }

  /** Free space is checked at most every 500 ms while stalled: statfs per frame would be waste. */
  private spaceBack(): boolean {
    const now = Date.now();
    if (now - this.lastSpaceCheck < 500) return false;
    this.lastSpaceCheck = now;
    return this.hooks.freeBytes() >= this.opts.resumeFreeBytes;
  }

  private async closeSegment(afterError = false): Promise<void> {
    const w = this.writer;
    if (!w) return;
    this.writer = null;
    this.st.segmentOpen = null;
    let seg: ClosedSegment | null = null;
    try {
      seg = afterError || w.failed ? await w.closeAfterError() : await w.close();
    } catch (err) {
      this.st.lastError = (err as Error).message;
      this.hooks.error(err as Error, { track: this.st.track, op: 'close' });
      w.abandon();
      return;
    }
    if (seg) {
      this.st.segmentsClosed++;
      this.bytesClosed += seg.bytes;
      this.hooks.closed(seg, w);
    } else {
      this.hooks.discarded(w);
    }
  }

  /** fdatasync the open segment (interval fsync). */
  async sync(): Promise<void> {
    await this.writer?.sync();
  }

  stats(): TrackRecorderStats {
    return { ...this.st, drops: { ...this.st.drops }, bytesWritten: this.bytesClosed + (this.writer?.bytes ?? 0) };
  }

  /** Stop reading, drain what is queued, close the segment. Idempotent; never throws. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      try {
        await this.idle;
        // what is still queued was published before close: record it
        for (;;) {
          const item = this.consumer.next();
          if (!item) break;
          if (item.type === 'frame') await this.onFrame(item.frame, item.mime).catch(() => undefined);
        }
        this.consumer.close();
        await this.closeSegment();
      } catch (err) {
        this.hooks.error(err as Error, { track: this.st.track, op: 'close' });
      }
    })();
    return this.closing;
  }
}
