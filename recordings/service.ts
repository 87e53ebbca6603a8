// The recording service: recovery, then one TrackRecorder per recorded track, the batched index
// writer, interval fsync, retention and the sync uploader. app.ts builds it with
// createRecordingService({ config, source, log }), calls start(), and close() on shutdown.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { captureClockUs, EdgeError, mimeKind, trackPath, type ConsumerHandle, type TrackRef, type TrackSource } from '../runtime/engine/api.js';
import { matchTrack, type RecordingsConfig } from './config.js';
import { IndexDb } from './index-db.js';
import { IndexPruner, type IndexPruneStats, type PruneResult } from './index-prune.js';
import { silentLog, ThrottledLog, type RecLog } from './log.js';
import { recover, type RecoveryReport } from './recovery.js';
import { Retention } from './retention.js';
import { fsSpaceOf, spacePolicy, type SpacePolicy } from './free-space.js';
import { LOSS_DROPS, TrackRecorder, type RecorderDrop, type RecorderHooks, type TrackRecorderStats } from './recorder.js';
import type { ClosedSegment, SegmentWriter } from './segment-writer.js';
import { Uploader, type UploaderStats } from './sync.js';

export interface RecordingServiceOptions {
  config: RecordingsConfig;
  source: TrackSource;
  log?: RecLog;
}

export interface RecordingServiceStats {
  running: boolean;
  /** This run's id (on every segment row it writes). */
  run: string;
  root: string;
  recovery: (RecoveryReport & { indexRebuilt: boolean }) | null;
  /**
   * Per track, over the service's life: a recorder that finished (publisher gone past the linger,
   * service closed) keeps its counts here, added to the next one's; state fields are the live one's.
   */
  tracks: TrackRecorderStats[];
  segmentsClosed: number;
  bytesWritten: number;
  /**
   * Frames/records lost by reason, all tracks (each also in its track's drops), and `queue`: those
   * the engine dropped from a recorder's queue before it could read them.
   */
  lost: Record<(typeof LOSS_DROPS)[number] | 'queue', number>;
  /** Some recorder is paused for space (ENOSPC, or under the floor with nothing left to delete). */
  diskFull: boolean;
  /** The recordings filesystem and the shared free-space policy (floor, resume level). */
  space: (SpacePolicy & { freeBytes: number }) | null;
  index: ReturnType<IndexDb['stats']> | null;
  retention: Retention['st'] | null;
  /** Index retention: rows of segments whose file is gone, pruned by age and cap. */
  indexPrune: IndexPruneStats | null;
  sync: UploaderStats | null;
  subscribeErrors: number;
  lastError: string | null;
}

/** Index rows are written in one transaction at this interval (and at segment close bursts). */
const INDEX_FLUSH_MS = 1000;
/** A parked recorder (queue closed by the engine) keeps its segment open this long for the track to return. */
const DETACHED_LINGER_MS = 10_000;
/**
 * Free space is looked at this often (one statfs: microseconds): under the floor, or with a
 * recorder paused by a full disk, retention runs now instead of at its interval.
 */
const SPACE_WATCH_MS = 1000;
/** Index flush attempts at close before the pending ops are given up (counted, logged). */
const CLOSE_FLUSH_TRIES = 3;
/** Finished recorders' totals kept in stats, distinct tracks. */
const MAX_RETIRED_TRACKS = 1000;

/** Counters of two runs of one track's recorder added up (the later run's state fields win). */
function addRecorderStats(a: TrackRecorderStats, b: TrackRecorderStats): TrackRecorderStats {
  const drops = { ...a.drops };
  for (const k of Object.keys(b.drops) as RecorderDrop[]) drops[k] += b.drops[k];
  const sum = (k: 'framesIn' | 'framesWritten' | 'framesPending' | 'bytesWritten' | 'segmentsClosed' | 'segmentsDiscarded' | 'diskFullEvents' | 'keyframeRequests' | 'keyframeRequestsUnserved' | 'ticksBumped' | 'queueDropped') => a[k] + b[k];
  return {
    ...b,
    drops,
    segmentOpen: null,
    framesIn: sum('framesIn'),
    framesWritten: sum('framesWritten'),
    framesPending: sum('framesPending'),
    bytesWritten: sum('bytesWritten'),
    segmentsClosed: sum('segmentsClosed'),
    segmentsDiscarded: sum('segmentsDiscarded'),
    diskFullEvents: sum('diskFullEvents'),
    keyframeRequests: sum('keyframeRequests'),
    keyframeRequestsUnserved: sum('keyframeRequestsUnserved'),
    ticksBumped: sum('ticksBumped'),
    queueDropped: sum('queueDropped'),
  };
}

export class RecordingService {
  readonly root: string;
  readonly indexPath: string;
  private db: IndexDb | null = null;
  private readerDb: IndexDb | null = null;
  private readonly recorders = new Map<string, TrackRecorder>();
  /** Recorders whose queue the engine closed, still finishing their segment. */
  private readonly closingRecorders = new Set<TrackRecorder>();
  /** Recorders whose queue closed, kept (segment open) for a re-subscription; bounded by the track count. */
  private readonly detached = new Map<string, { rec: TrackRecorder; at: number }>();
  private readonly timers: NodeJS.Timeout[] = [];
  private retention: Retention | null = null;
  private pruner: IndexPruner | null = null;
  private uploader: Uploader | null = null;
  private recovery: (RecoveryReport & { indexRebuilt: boolean }) | null = null;
  private started = false;
  private closing: Promise<void> | null = null;
  private readonly log: RecLog;
  private readonly throttle: ThrottledLog;
  private readonly run = crypto.randomBytes(6).toString('hex');
  /** wallclock − capture clock, fixed for this run: one clock for every track's timestamps. */
  private readonly offsetUs = Date.now() * 1000 - captureClockUs();
  private segmentsClosed = 0;
  /** The free-space policy in force (refreshed by every retention pass and space check). */
  private policy: SpacePolicy | null = null;
  private lastPressureRun = 0;
  private lastFloorRun = 0;
  private subscribeErrors = 0;
  private lastError: string | null = null;

  constructor(private readonly opts: RecordingServiceOptions) {
    const c = opts.config;
    this.root = path.resolve(c.root);
    this.indexPath = path.resolve(c.indexPath ?? path.join(this.root, 'index.db'));
    this.log = opts.log ?? silentLog;
    this.throttle = new ThrottledLog(this.log);
  }

  /** This run's id, stored on every segment it writes. */
  get runId(): string {
    return this.run;
  }

  /** A read-only connection for HTTP handlers (WAL: never blocks the writer, never "locked"). */
  reader(): IndexDb {
    if (this.closing) throw new EdgeError('REC_CLOSED', 'recording service closed');
    this.readerDb ??= IndexDb.openReader(this.indexPath);
    return this.readerDb;
  }

  /** Bytes the sync uploader has sent (the uplink estimate's lower-bound samples). */
  syncUploadedBytes(): number {
    return this.uploader?.stats().uploadedBytes ?? 0;
  }

  get index(): IndexDb {
    if (!this.db) throw new EdgeError('REC_NOT_STARTED', 'recording service not started');
    return this.db;
  }

  /** Open (or rebuild) the index, run recovery, then start recording. */
  async start(): Promise<void> {
    if (this.started || this.closing) return;
    this.started = true;
    const c = this.opts.config;
    fs.mkdirSync(this.root, { recursive: true });
    let rebuilt = false;
    try {
      this.db = IndexDb.openWriter(this.indexPath);
    } catch (err) {
      // A corrupt index is moved aside (never deleted) and rebuilt from the files on disk.
      const aside = `${this.indexPath}.corrupt-${Date.now()}`;
      for (const sfx of ['', '-wal', '-shm']) {
        if (fs.existsSync(this.indexPath + sfx)) fs.renameSync(this.indexPath + sfx, aside + sfx);
      }
      this.log.error({ err: (err as Error).message, movedTo: aside }, 'recordings index unusable: rebuilding from disk');
      this.db = IndexDb.openWriter(this.indexPath);
      rebuilt = true;
    }
    const fresh = this.db.all().length === 0;
    const rep = recover(this.root, this.db, this.log, rebuilt || fresh ? 'rebuilt' : 'recovered');
    this.recovery = { ...rep, indexRebuilt: rebuilt };
    this.retention = new Retention(this.root, c.retention, this.db, this.log, c.sync !== undefined);
    this.policy = this.retention.policy();
    if (c.sync) {
      this.uploader = new Uploader(c.sync, this.root, this.db, this.log);
      this.uploader.start();
    }
    // the index is pruned even with recording off: sync after verify keeps adding gone rows
    this.pruner = new IndexPruner(this.db, this.root, c.index, this.log);
    void this.pruner.run();
    this.every(c.index.pruneIntervalMs, () => void this.pruner?.run());
    if (!c.enabled) return;
    this.every(INDEX_FLUSH_MS, () => this.flushIndex());
    this.every(c.fsyncIntervalMs, () => {
      for (const r of this.allRecorders()) void r.sync();
      this.indexProgress();
    });
    this.every(c.retention.intervalMs, () => this.runRetention());
    this.every(SPACE_WATCH_MS, () => this.watchSpace());
    this.every(c.discoverMs, () => {
      this.sweepDetached();
      this.discover();
    });
    this.discover();
  }

  private every(ms: number, fn: () => void): void {
    const t = setInterval(fn, ms);
    t.unref();
    this.timers.push(t);
  }

  private flushIndex(): void {
    if (this.db && !this.db.flush()) {
      this.throttle.warn('index-flush', 'recordings index write failed; ops kept for retry', { err: this.db.stats().lastError });
    }
  }

  private allRecorders(): TrackRecorder[] {
    return [...this.recorders.values(), ...[...this.detached.values()].map((d) => d.rec), ...this.closingRecorders];
  }

  /**
   * Open segments' progress into their `recording` rows, at the fsync interval: the list API shows
   * them growing; one small transaction per interval keeps the SD write cost negligible.
   */
  private indexProgress(): void {
    const db = this.db;
    if (!db) return;
    for (const r of this.allRecorders()) {
      const w = r.current;
      if (!w) continue;
      const p = { path: w.rel, bytes: w.bytes, frames: w.framesOnDisk, end: w.onDiskEndUs, wallEnd: w.onDiskWallEndMs, start: w.startUs };
      db.enqueue(() =>
        db.db
          .prepare("UPDATE segments SET bytes=?, frames=?, end_us=?, wall_end_ms=?, duration_ms=? WHERE path=? AND state='recording'")
          .run(p.bytes, p.frames, Math.round(p.end), Math.ceil(p.wallEnd), Math.max(0, Math.round((p.end - p.start) / 1000)), p.path),
      );
    }
  }

  private openBytes(): number {
    let n = 0;
    for (const r of this.allRecorders()) n += r.current?.bytes ?? 0;
    return n;
  }

  /** One index prune now (tests, CLI); resolves with what it pruned, null when not started. */
  pruneIndex(): Promise<PruneResult | null> {
    return this.pruner?.run() ?? Promise.resolve(null);
  }

  /** One retention pass now; `pressure`: a write hit ENOSPC (free up to the resume level). */
  runRetention(pressure = false): number {
    if (!this.retention) return 0;
    const plan = this.retention.run(this.openBytes(), pressure);
    this.policy = this.retention.st.space ?? this.policy;
    if (plan.length > 0) for (const r of this.allRecorders()) r.spaceFreed();
    return plan.length;
  }

  private paused(): boolean {
    return this.allRecorders().some((r) => r.paused);
  }

  /**
   * Once a second: under the floor, or with a recorder paused, retention runs now (not at its
   * interval) and frees up to the resume level; a paused recorder is told when space is back.
   * Under the floor with nothing left to delete, recording pauses: the OS sharing the disk keeps
   * its floor (counted as disk-full drops, logged).
   */
  private watchSpace(now = Date.now()): void {
    if (!this.retention || this.closing) return;
    const { sizeBytes, freeBytes } = fsSpaceOf(this.root);
    const pol = (this.policy = spacePolicy(this.opts.config.retention, sizeBytes));
    const paused = this.paused();
    if (paused && freeBytes >= pol.resumeBytes) {
      for (const r of this.allRecorders()) r.spaceFreed();
      return;
    }
    if (freeBytes >= pol.floorBytes && !paused) return;
    // a pass that found nothing to delete is not repeated every second
    const last = paused ? this.lastPressureRun : this.lastFloorRun;
    if (now - last < (this.lastFreedNothing ? this.opts.config.retention.intervalMs : 0)) return;
    if (paused) this.lastPressureRun = now;
    else this.lastFloorRun = now;
    const deleted = this.runRetention(paused);
    this.lastFreedNothing = deleted === 0;
    const after = fsSpaceOf(this.root).freeBytes;
    if (deleted === 0 && after < pol.floorBytes && !paused && this.recorders.size > 0) {
      this.throttle.warn('floor', 'recordings paused: free space under the floor and no recording left to delete', { freeBytes: after, floorBytes: pol.floorBytes, resumeBytes: pol.resumeBytes });
      for (const r of this.allRecorders()) r.pauseForFloor();
    }
  }

  private lastFreedNothing = false;

  /**
   * Totals of recorders that finished (publisher gone past the linger), per track: their counts
   * stay in stats (frames in = written + dropped holds over the service's life). Bounded by the
   * number of distinct tracks, capped.
   */
  private readonly retired = new Map<string, TrackRecorderStats>();

  private readonly retiredRecorders = new WeakSet<TrackRecorder>();

  private retire(rec: TrackRecorder): void {
    if (this.retiredRecorders.has(rec)) return;
    this.retiredRecorders.add(rec);
    const st = rec.stats();
    const prev = this.retired.get(st.track);
    if (!prev && this.retired.size >= MAX_RETIRED_TRACKS) this.retired.delete(this.retired.keys().next().value!);
    this.retired.set(st.track, prev ? addRecorderStats(prev, st) : { ...st, drops: { ...st.drops }, segmentOpen: null });
  }

  private wanted(ref: TrackRef): boolean {
    const p = trackPath(ref);
    const pats = this.opts.config.tracks;
    return pats.length === 0 || pats.some((x) => matchTrack(x, p));
  }

  /**
   * Subscribe to every wanted track that has a publisher and no recorder yet. A track without a
   * publisher (a static channel keeps it listed after the publisher left) is not subscribed: a
   * parked recorder re-attached to it would keep its segment open forever.
   */
  discover(): void {
    if (this.closing || !this.db) return;
    for (const t of this.opts.source.listTracks()) {
      const ref: TrackRef = { channel: t.channel, source: t.source, track: t.track };
      const key = trackPath(ref);
      if (this.recorders.has(key) || !this.wanted(ref)) continue;
      if (t.publishers === 0) continue;
      if (t.kind === 'audio') continue; // audio recording is not part of this service yet
      if (![ref.channel, ref.source, ref.track].every((s) => /^[A-Za-z0-9_.-]{1,64}$/.test(s) && s !== '.' && s !== '..')) {
        this.throttle.warn(`name:${key}`, 'track name unusable as a folder name: not recorded', { track: key });
        continue;
      }
      try {
        const consumer = this.opts.source.subscribe(ref, {
          label: 'recorder',
          ceilingBytes: this.opts.config.queueBytes,
          fromCache: true,
          texts: false,
        });
        const parked = this.detached.get(key);
        if (parked) {
          // the same recorder goes on: its open segment continues, without a gap or a duplicate
          this.detached.delete(key);
          parked.rec.attach(consumer);
          this.recorders.set(key, parked.rec);
          this.onQueueClosed(key, parked.rec, consumer);
          continue;
        }
        const rec = new TrackRecorder(ref, consumer, this.recorderOptions(), this.hooks);
        this.recorders.set(key, rec);
        this.onQueueClosed(key, rec, consumer);
        this.log.info({ track: key, mime: t.mime, kind: mimeKind(t.mime) }, 'recording track');
      } catch (err) {
        this.subscribeErrors++;
        this.lastError = (err as Error).message;
        this.throttle.warn(`sub:${key}`, 'cannot subscribe to track', { track: key, err: (err as Error).message });
      }
    }
  }

  /** The engine closed a recorder's queue: park the recorder (segment open) for a re-subscription. */
  private onQueueClosed(key: string, rec: TrackRecorder, consumer: ConsumerHandle): void {
    consumer.onClose(() => {
      if (this.closing || this.recorders.get(key) !== rec) return;
      this.recorders.delete(key);
      this.detached.set(key, { rec, at: Date.now() });
    });
  }

  /** Parked recorders whose track did not come back within the linger close their segment. */
  private sweepDetached(now = Date.now()): void {
    for (const [key, d] of this.detached) {
      if (now - d.at < DETACHED_LINGER_MS) continue;
      this.detached.delete(key);
      this.closingRecorders.add(d.rec);
      void d.rec.close().then(() => {
        this.closingRecorders.delete(d.rec);
        this.retire(d.rec);
      });
    }
  }

  private recorderOptions() {
    const c = this.opts.config;
    return {
      root: this.root,
      segmentUs: c.segmentDurationMs * 1000,
      fragmentUs: c.fragmentDurationMs * 1000,
      maxSegmentBytes: c.maxSegmentBytes,
      run: this.run,
      offsetUs: this.offsetUs,
    };
  }

  private readonly hooks: RecorderHooks = {
    opened: (w: SegmentWriter) => {
      const db = this.db;
      if (!db) return;
      const m = w.meta;
      db.enqueue(() =>
        db.insert({
          path: w.rel,
          channel: m.channel,
          source: m.source,
          track: m.track,
          mime: m.mime,
          kind: w.kind,
          run: m.run,
          offset_us: m.offsetUs,
          start_us: m.startUs,
          end_us: m.startUs,
          wall_start_ms: Math.floor(m.wallMs),
          wall_end_ms: Math.ceil(m.wallMs),
          duration_ms: 0,
          bytes: 0,
          frames: 0,
          keyframes: 0,
          sha256: null,
          state: 'recording',
          created_ms: Date.now(),
          closed_ms: null,
          origin: 'recorder',
        }),
      );
      // lands with the next flush (≤ 1 s): a .part without its row is indexed by recovery anyway,
      // and one more WAL commit per segment would cost ~1 % of the write budget on a small stream
    },
    closed: (s: ClosedSegment, w: SegmentWriter) => {
      const db = this.db;
      if (!db) return;
      this.segmentsClosed++;
      db.enqueue(() =>
        db.insert({
          path: s.rel,
          channel: s.meta.channel,
          source: s.meta.source,
          track: s.meta.track,
          mime: s.meta.mime,
          kind: w.kind,
          run: s.meta.run,
          offset_us: s.meta.offsetUs,
          start_us: Math.round(s.startUs),
          end_us: Math.round(s.endUs),
          wall_start_ms: Math.floor(s.wallStartMs),
          wall_end_ms: Math.ceil(s.wallEndMs),
          duration_ms: Math.max(0, Math.round((s.endUs - s.startUs) / 1000)),
          bytes: s.bytes,
          frames: s.frames,
          keyframes: s.keyframes,
          sha256: s.sha256,
          state: 'closed',
          created_ms: Date.now(),
          closed_ms: Date.now(),
          origin: 'recorder',
        }),
      );
      this.flushIndex();
      this.uploader?.wake();
    },
    discarded: (w: SegmentWriter) => {
      const db = this.db;
      db?.enqueue(() => db.delete(w.rel));
      this.flushIndex();
    },
    diskFull: (ref: TrackRef) => {
      const pol = this.policy;
      this.throttle.warn('enospc', 'recordings disk full: recording paused; retention frees space up to the resume level', {
        track: trackPath(ref),
        freeBytes: fsSpaceOf(this.root).freeBytes,
        resumeBytes: pol?.resumeBytes ?? null,
      });
      this.flushIndex();
      // several tracks hit ENOSPC together: one pass frees for all of them
      if (Date.now() - this.lastPressureRun < 200) return;
      this.lastPressureRun = Date.now();
      this.runRetention(true);
    },
    canResume: () => {
      const pol = this.policy;
      return pol === null || fsSpaceOf(this.root).freeBytes >= pol.resumeBytes;
    },
    lost: (ref: TrackRef, reason: RecorderDrop, frames: number, err: NodeJS.ErrnoException | null) => {
      const track = trackPath(ref);
      const total = this.recorders.get(track)?.stats().drops[reason];
      this.throttle.warn(`lost:${reason}:${track}`, `recordings lost frames (${reason})`, { track, reason, frames, lostTotal: total ?? null, err: err?.code ?? err?.message ?? null });
    },
    requestKeyframe: (ref: TrackRef) => this.opts.source.requestKeyframe(ref),
    error: (err: Error, ctx: object) => {
      this.lastError = err.message;
      this.throttle.warn(`err:${JSON.stringify(ctx)}`, 'recorder error', { ...ctx, err: err.message });
    },
  };

  /** Wait until every recorder drained its queue (tests, CLI). */
  async settled(): Promise<void> {
    await Promise.all(this.allRecorders().map((r) => r.settled()));
  }

  /** The uploader, when a sync target is configured (CLI `sync`, HTTP retry of quarantined). */
  get sync(): Uploader | null {
    return this.uploader;
  }

  stats(): RecordingServiceStats {
    const byTrack = new Map(this.retired);
    for (const r of this.allRecorders()) {
      const live = r.stats();
      const prev = byTrack.get(live.track);
      byTrack.set(live.track, prev ? addRecorderStats(prev, live) : live);
    }
    const tracks = [...byTrack.values()];
    const lost = {
      ...Object.fromEntries(LOSS_DROPS.map((d) => [d, tracks.reduce((a, t) => a + t.drops[d], 0)])),
      queue: tracks.reduce((a, t) => a + t.queueDropped, 0),
    } as RecordingServiceStats['lost'];
    const pol = this.policy;
    return {
      running: this.started && !this.closing,
      run: this.run,
      root: this.root,
      recovery: this.recovery,
      tracks,
      segmentsClosed: this.segmentsClosed,
      bytesWritten: tracks.reduce((a, t) => a + t.bytesWritten, 0),
      lost,
      diskFull: tracks.some((t) => t.diskFull),
      space: pol ? { ...pol, freeBytes: fsSpaceOf(this.root).freeBytes } : null,
      index: this.db?.stats() ?? null,
      retention: this.retention ? { ...this.retention.st } : null,
      indexPrune: this.pruner ? { ...this.pruner.st } : null,
      sync: this.uploader?.stats() ?? null,
      subscribeErrors: this.subscribeErrors,
      lastError: this.lastError,
    };
  }

  /**
   * The last index writes (segments closed just now) must land before the connection closes: a
   * clean stop that leaves a `recording` row without its file (and the file without a row) would
   * need recovery at the next start. Retried; what still cannot land is counted and logged.
   */
  private closeIndex(): void {
    const db = this.db;
    if (!db) return;
    for (let i = 0; i < CLOSE_FLUSH_TRIES && !db.flush(); i++) {
      /* a transient SQLITE_BUSY/IOERR: try again */
    }
    const left = db.stats().pendingOps;
    if (left > 0) this.log.error({ pendingOps: left, err: db.stats().lastError }, 'recordings index: writes could not land at close (recovery reconciles them at the next start)');
    db.close();
  }

  /** Flush and close every segment, stop sync, close the index. Idempotent; never throws. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      for (const t of this.timers) clearInterval(t);
      this.timers.length = 0;
      try {
        const all = this.allRecorders();
        await Promise.all(all.map((r) => r.close()));
        for (const r of all) this.retire(r);
        this.recorders.clear();
        this.closingRecorders.clear();
        this.detached.clear();
        await this.uploader?.close();
        await this.pruner?.close();
      } catch (err) {
        this.log.error({ err: (err as Error).message }, 'recordings close');
      }
      this.readerDb?.close();
      this.closeIndex();
    })();
    return this.closing;
  }
}

export function createRecordingService(opts: RecordingServiceOptions): RecordingService {
  return new RecordingService(opts);
}
