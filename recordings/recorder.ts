// One track's recorder: reads its engine queue in order, cuts segments (video at keyframes,
// data at the same capture-clock grid), and reports closed segments to the index.
// Accounting: every frame read is written (on disk), pending (in the open fragment) or dropped
// with a reason — framesIn = framesWritten + framesPending + Σ drops, always.
// Disk full is a state: frames are dropped (counted) until the service's free-space policy says
// recording may resume, then a video track asks its source for a keyframe and goes on.
import fs from 'node:fs';
import path from 'node:path';
import { mimeBase, mimeKind, type ConsumerHandle, type Frame, type QueueItem, type TrackRef } from '../runtime/engine/api.js';
import { avcInfoOf, hasSlice, type AvcInfo } from './h264-config.js';
import { RECORD_EXT, segmentRelPath, VIDEO_EXT, withCounter } from './layout.js';
import type { SegmentMeta } from './record-file.js';
import { MAX_RECORD_BYTES } from './record-file.js';
import { RecordSegmentWriter, VideoSegmentWriter, type ClosedSegment, type CloseResult, type SegmentWriter } from './segment-writer.js';

export type RecorderDrop =
  | 'malformed'
  | 'no-sps'
  | 'wait-keyframe'
  | 'non-monotonic'
  | 'unsupported-mime'
  | 'oversized'
  /** Lost to ENOSPC/EDQUOT: in a fragment whose write failed, or read while the disk was full. */
  | 'disk-full'
  /** Lost to any other write error (EIO, EROFS…). */
  | 'write-failed'
  /** Accepted by a segment that closed without them on disk and without a write error (a defect if ever > 0). */
  | 'closed-empty';

export const RECORDER_DROPS: readonly RecorderDrop[] = ['malformed', 'no-sps', 'wait-keyframe', 'non-monotonic', 'unsupported-mime', 'oversized', 'disk-full', 'write-failed', 'closed-empty'];

/** Drops that are recordings lost (as opposed to input the recorder refused). */
export const LOSS_DROPS = ['disk-full', 'write-failed', 'closed-empty'] as const satisfies readonly RecorderDrop[];

export interface RecorderHooks {
  /** A segment file was created (row in state `recording`). */
  opened(w: SegmentWriter): void;
  /** A segment reached its final name. */
  closed(seg: ClosedSegment, w: SegmentWriter): void;
  /** A segment ended with nothing on disk: its file is gone, its `recording` row must go too. */
  discarded(w: SegmentWriter): void;
  /** A write failed with ENOSPC: retention should free space now (up to the resume level). */
  diskFull(ref: TrackRef): void;
  /** The free-space policy's verdict while paused: is there room to record again? */
  canResume(): boolean;
  /** Frames lost by reason (the service logs them throttled). */
  lost(ref: TrackRef, reason: RecorderDrop, frames: number, err: NodeJS.ErrnoException | null): void;
  /** Ask the track's source for a keyframe; false when it cannot. */
  requestKeyframe(ref: TrackRef): boolean;
  error(err: Error, ctx: object): void;
}

export interface RecorderOptions {
  root: string;
  segmentUs: number;
  fragmentUs: number;
  maxSegmentBytes: number;
  run: string;
  offsetUs: number;
}

export interface TrackRecorderStats {
  track: string;
  mime: string | null;
  framesIn: number;
  /** Frames on disk in complete fragments (closed segments + the open one). */
  framesWritten: number;
  /** Frames accepted into the open fragment, not yet on disk. */
  framesPending: number;
  bytesWritten: number;
  segmentsClosed: number;
  /** Segments that closed with nothing on disk (file and row removed; their frames are in drops). */
  segmentsDiscarded: number;
  segmentOpen: string | null;
  drops: Record<RecorderDrop, number>;
  diskFull: boolean;
  /** Why recording is paused: a write hit ENOSPC, or free space stayed under the floor with nothing left to delete. */
  pausedBy: 'enospc' | 'floor' | null;
  diskFullEvents: number;
  /** Last time recording resumed after disk full (ms since the epoch), and how long it was paused. */
  lastResumeMs: number | null;
  lastPauseMs: number | null;
  /** Keyframes asked of the source (recording start, segment/fragment due, resume) and how many it could not serve. */
  keyframeRequests: number;
  keyframeRequestsUnserved: number;
  /** Video frames moved one muxer tick later so that no two share a decode time. */
  ticksBumped: number;
  /**
   * Frames the engine dropped from this recorder's queue before it read them (its byte ceiling,
   * the memory budget): never in framesIn; a recorder that keeps up has none.
   */
  queueDropped: number;
  lastError: string | null;
}

/** Keyframe requests to one source: at most one per second (a PLI storm helps nobody). */
const KEYFRAME_REQUEST_MIN_MS = 1000;
/** While paused by a full disk, the free-space verdict is asked at most this often. */
const SPACE_CHECK_MS = 250;

/** Frames (not texts) a consumer's queue dropped. */
function queueDrops(c: ConsumerHandle): number {
  const d = c.stats().dropped;
  return d['queue-full'] + d['gop-tail'] + d['stale-gop'] + d.memory;
}

function isDiskFull(err: NodeJS.ErrnoException | null): boolean {
  return err?.code === 'ENOSPC' || err?.code === 'EDQUOT';
}

export class TrackRecorder {
  private writer: SegmentWriter | null = null;
  private mime: string | undefined;
  private avc: AvcInfo | null = null;
  private lastTs = -Infinity;
  private draining = false;
  private closing: Promise<void> | null = null;
  private diskFull = false;
  private pausedAt = 0;
  private lastSpaceCheck = 0;
  /** The service freed space: check at the next frame instead of waiting for the interval. */
  private spaceHint = false;
  private readonly st: TrackRecorderStats;
  /** Closed segments' frames and bytes (the open one's on-disk part is added in stats()). */
  private framesClosed = 0;
  private bytesClosed = 0;
  private ticksBumpedClosed = 0;
  private idle: Promise<void> = Promise.resolve();
  private idleResolve: (() => void) | null = null;
  private lastKeyRequest = -Infinity;
  /** Frames dropped from earlier queues of this recorder (re-subscriptions). */
  private queueDroppedBefore = 0;
  /** The source said it cannot make keyframes (false): fragment-due requests stop until it changes. */
  private sourceCannotKey = false;
  /** Capture time of the last keyframe written in the open segment. */
  private lastKeyUs = -Infinity;

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
      framesPending: 0,
      bytesWritten: 0,
      segmentsClosed: 0,
      segmentsDiscarded: 0,
      segmentOpen: null,
      drops: Object.fromEntries(RECORDER_DROPS.map((d) => [d, 0])) as Record<RecorderDrop, number>,
      diskFull: false,
      pausedBy: null,
      diskFullEvents: 0,
      lastResumeMs: null,
      lastPauseMs: null,
      keyframeRequests: 0,
      keyframeRequestsUnserved: 0,
      ticksBumped: 0,
      queueDropped: 0,
      lastError: null,
    };
    this.mime = consumer.mime();
    this.listen(consumer);
    // a recording starts: a source that can make a keyframe now saves waiting a GOP
    if (mimeKind(this.mime) === 'video') this.askKeyframe(true);
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
    this.queueDroppedBefore += queueDrops(this.consumer);
    this.consumer = consumer;
    this.sourceCannotKey = false; // maybe another publisher now
    this.listen(consumer);
  }

  /** Capture time of the last frame written (−∞ before the first). */
  get lastWrittenUs(): number {
    return this.lastTs;
  }

  get current(): SegmentWriter | null {
    return this.writer;
  }

  /** Paused for space (ENOSPC or the floor): frames are dropped, counted, until the policy says resume. */
  get paused(): boolean {
    return this.diskFull;
  }

  /** The service freed space (retention ran): a paused recorder checks at its next frame. */
  spaceFreed(): void {
    this.spaceHint = true;
  }

  private floorPause = false;

  /**
   * Free space is under the floor and retention has nothing left to delete: stop writing before
   * the disk is full (the OS sharing it needs the rest). Takes effect at the next frame.
   */
  pauseForFloor(): void {
    if (!this.diskFull) this.floorPause = true;
  }

  private enterPause(by: 'enospc' | 'floor'): void {
    if (!this.diskFull) {
      this.st.diskFullEvents++;
      this.pausedAt = Date.now();
    }
    this.diskFull = true;
    this.st.diskFull = true;
    this.st.pausedBy = by;
    this.lastSpaceCheck = Date.now();
    this.spaceHint = false;
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

  private drop(reason: RecorderDrop, n = 1): void {
    this.st.drops[reason] += n;
  }

  /** Frames lost (not refused input): counted and reported for the throttled log. */
  private lose(reason: RecorderDrop, n: number, err: NodeJS.ErrnoException | null): void {
    if (n <= 0) return;
    this.drop(reason, n);
    this.hooks.lost(this.ref, reason, n, err);
  }

  private async onFrame(frame: Frame, mime: string | undefined): Promise<void> {
    this.st.framesIn++;
    if (mime !== undefined && mime !== this.mime) {
      // A MIME change (new resolution, new codec) starts a new segment.
      await this.closeSegment();
      this.mime = mime;
      this.avc = null;
      this.sourceCannotKey = false;
    }
    this.st.mime = this.mime ?? null;
    if (!Number.isFinite(frame.ts) || !Number.isFinite(frame.wallclock) || !(frame.data instanceof Uint8Array)) {
      this.drop('malformed');
      return;
    }
    // The capture clock orders records; a frame from the past (a replayed cache) is not re-recorded.
    // Sources stamp strictly increasing times, so an equal one is a replay too.
    if (frame.ts < this.lastTs || (frame.ts === this.lastTs && mimeKind(this.mime) === 'video')) {
      this.drop('non-monotonic');
      return;
    }
    if (this.floorPause) {
      this.floorPause = false;
      await this.closeSegment();
      this.enterPause('floor');
    }
    if (this.diskFull && !this.spaceBack()) {
      this.lose('disk-full', 1, null);
      return;
    }
    const kind = mimeKind(this.mime);
    if (kind === 'video') {
      if (mimeBase(this.mime ?? '') !== 'video/h264') {
        this.drop('unsupported-mime');
        return;
      }
      if (frame.data.length === 0 || !hasSlice(frame.data)) {
        this.drop('malformed');
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

  /**
   * Ask the source for a keyframe, at most once a second. `always`: recording starts, a segment is
   * due, or we are waiting for one; otherwise (a fragment is due) only while the source has not
   * said it cannot.
   */
  private askKeyframe(always: boolean): void {
    if (!always && this.sourceCannotKey) return;
    const now = Date.now();
    if (now - this.lastKeyRequest < KEYFRAME_REQUEST_MIN_MS) return;
    this.lastKeyRequest = now;
    this.st.keyframeRequests++;
    if (!this.hooks.requestKeyframe(this.ref)) {
      this.st.keyframeRequestsUnserved++;
      this.sourceCannotKey = true;
    } else this.sourceCannotKey = false;
  }

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
    if (w) {
      const due = frame.ts >= this.segEnd || w.bytes >= this.opts.maxSegmentBytes;
      if (frame.key && due) await this.closeSegment();
      else if (!frame.key && due) this.askKeyframe(true);
      // a source that sends keyframes only when asked (a browser over WHIP) would otherwise keep
      // one fragment open, in memory, until the segment ends: ask when a fragment is due
      else if (!frame.key && frame.ts - this.lastKeyUs >= this.opts.fragmentUs) this.askKeyframe(false);
    }
    if (!this.writer) {
      if (this.diskFull) {
        this.lose('disk-full', 1, null); // the close just now found the disk full
        return;
      }
      if (!frame.key) {
        this.drop('wait-keyframe');
        this.askKeyframe(true);
        return;
      }
      if (!this.avc) {
        this.drop('no-sps');
        return;
      }
      if (!this.open(frame, VIDEO_EXT)) return;
    }
    if (frame.key) this.lastKeyUs = frame.ts;
    await this.write(frame);
  }

  private async onData(frame: Frame): Promise<void> {
    if (this.writer && (frame.ts >= this.segEnd || this.writer.bytes >= this.opts.maxSegmentBytes)) await this.closeSegment();
    if (!this.writer) {
      if (this.diskFull) {
        this.lose('disk-full', 1, null);
        return;
      }
      if (!this.open(frame, RECORD_EXT)) return;
    }
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
      const e = err as NodeJS.ErrnoException;
      this.lose(isDiskFull(e) ? 'disk-full' : 'write-failed', 1, e);
      this.onWriteError(e);
      return false;
    }
    this.segEnd = this.gridEnd(frame.ts);
    this.lastKeyUs = -Infinity;
    this.st.segmentOpen = rel;
    this.hooks.opened(this.writer);
    return true;
  }

  private async write(frame: Frame): Promise<void> {
    const w = this.writer!;
    try {
      await w.add(frame);
    } catch (err) {
      await this.closeSegment(true, err as NodeJS.ErrnoException);
      return;
    }
    if (w.failed) {
      await this.closeSegment(true);
      return;
    }
    this.lastTs = frame.ts;
  }

  /** A write failed: ENOSPC pauses recording (retention asked to free space), anything else is reported. */
  private onWriteError(err: NodeJS.ErrnoException): void {
    this.st.lastError = `${err.code ?? 'ERR'}: ${err.message}`;
    if (isDiskFull(err)) {
      this.enterPause('enospc');
      this.hooks.diskFull(this.ref);
    } else {
      this.hooks.error(err, { track: this.st.track, op: 'write' });
    }
  }

  /** Paused by a full disk: may recording resume? (The service's policy, asked at most every SPACE_CHECK_MS.) */
  private spaceBack(): boolean {
    const now = Date.now();
    if (!this.spaceHint && now - this.lastSpaceCheck < SPACE_CHECK_MS) return false;
    this.spaceHint = false;
    this.lastSpaceCheck = now;
    if (!this.hooks.canResume()) return false;
    this.diskFull = false;
    this.st.diskFull = false;
    this.st.pausedBy = null;
    this.st.lastResumeMs = now;
    this.st.lastPauseMs = now - this.pausedAt;
    if (mimeKind(this.mime) === 'video') this.askKeyframe(true); // resume at a keyframe, soon
    return true;
  }

  private async closeSegment(afterError = false, cause: NodeJS.ErrnoException | null = null): Promise<void> {
    const w = this.writer;
    if (!w) return;
    this.writer = null;
    this.st.segmentOpen = null;
    if (w instanceof VideoSegmentWriter) this.ticksBumpedClosed += w.ticksBumped;
    let r: CloseResult;
    try {
      r = afterError || w.failed ? await w.closeAfterError() : await w.close();
    } catch (err) {
      // fsync/rename failed: the .part stays with its complete fragments; recovery closes it
      const e = err as NodeJS.ErrnoException;
      this.framesClosed += w.framesOnDisk;
      this.bytesClosed += w.bytes;
      this.lose(isDiskFull(e) ? 'disk-full' : 'write-failed', w.frames - w.framesOnDisk, e);
      this.st.lastError = (err as Error).message;
      this.hooks.error(err as Error, { track: this.st.track, op: 'close' });
      w.abandon();
      return;
    }
    const err = r.error ?? cause;
    if (r.lost > 0) this.lose(err ? (isDiskFull(err) ? 'disk-full' : 'write-failed') : 'closed-empty', r.lost, err);
    if (r.seg) {
      this.st.segmentsClosed++;
      this.framesClosed += r.seg.frames;
      this.bytesClosed += r.seg.bytes;
      this.hooks.closed(r.seg, w);
    } else {
      this.st.segmentsDiscarded++;
      this.hooks.discarded(w);
    }
    if (err) this.onWriteError(err);
  }

  /** fdatasync the open segment (interval fsync). */
  async sync(): Promise<void> {
    await this.writer?.sync();
  }

  stats(): TrackRecorderStats {
    const w = this.writer;
    return {
      ...this.st,
      drops: { ...this.st.drops },
      framesWritten: this.framesClosed + (w?.framesOnDisk ?? 0),
      framesPending: w ? w.frames - w.framesOnDisk : 0,
      bytesWritten: this.bytesClosed + (w?.bytes ?? 0),
      ticksBumped: this.ticksBumpedClosed + (w instanceof VideoSegmentWriter ? w.ticksBumped : 0),
      queueDropped: this.queueDroppedBefore + queueDrops(this.consumer),
    };
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
