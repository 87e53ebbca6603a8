// The SQLite index of segments (better-sqlite3). One writer (the runtime) in WAL mode with
// synchronous=NORMAL; readers (CLI, HTTP) open read-only and, thanks to WAL, never wait on it.
// Schema is versioned with user_version; migrations run in order in one transaction.
import Database from 'better-sqlite3';
import { sqliteNativeBinding } from './sqlite.js';
import fs from 'node:fs';
import { EdgeError } from '../runtime/engine/api.js';

export type SegmentState = 'recording' | 'closed' | 'uploading' | 'synced' | 'quarantined' | 'missing';
export type SegmentKind = 'video' | 'data';

export interface SegmentRow {
  id: number;
  path: string;
  channel: string;
  source: string;
  track: string;
  mime: string;
  kind: SegmentKind;
  run: string;
  offset_us: number;
  start_us: number;
  end_us: number;
  wall_start_ms: number;
  wall_end_ms: number;
  duration_ms: number;
  bytes: number;
  frames: number;
  keyframes: number;
  sha256: string | null;
  state: SegmentState;
  present: number;
  attempts: number;
  last_error: string | null;
  next_attempt_ms: number;
  created_ms: number;
  closed_ms: number | null;
  synced_ms: number | null;
  origin: string;
  /** When the file went away (present became 0), ms since the epoch; null while present. Schema v3. */
  gone_ms: number | null;
}

export type NewSegment = Omit<SegmentRow, 'id' | 'attempts' | 'last_error' | 'next_attempt_ms' | 'synced_ms' | 'present' | 'gone_ms'>;

const MIGRATIONS: string[] = [
  // v1
  `CREATE TABLE segments(
     id INTEGER PRIMARY KEY,
     path TEXT NOT NULL UNIQUE,
     channel TEXT NOT NULL, source TEXT NOT NULL, track TEXT NOT NULL,
     mime TEXT NOT NULL, kind TEXT NOT NULL,
     run TEXT NOT NULL, offset_us INTEGER NOT NULL,
     start_us INTEGER NOT NULL, end_us INTEGER NOT NULL,
     wall_start_ms INTEGER NOT NULL, wall_end_ms INTEGER NOT NULL, duration_ms INTEGER NOT NULL,
     bytes INTEGER NOT NULL, frames INTEGER NOT NULL, keyframes INTEGER NOT NULL,
     sha256 TEXT,
     state TEXT NOT NULL CHECK(state IN ('recording','closed','uploading','synced','quarantined','missing')),
     present INTEGER NOT NULL DEFAULT 1,
     attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, next_attempt_ms INTEGER NOT NULL DEFAULT 0,
     created_ms INTEGER NOT NULL, closed_ms INTEGER, synced_ms INTEGER,
     origin TEXT NOT NULL DEFAULT 'recorder'
   );
   CREATE INDEX seg_track_time ON segments(channel, source, track, wall_start_ms);
   CREATE INDEX seg_state_time ON segments(state, wall_start_ms);
   CREATE TABLE events(
     id INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, kind TEXT NOT NULL, path TEXT, detail TEXT
   );`,
  // v2: what reached the upstream per track, live or by backfill (issue #8). Written by
  // runtime/uplink through recordings/delivery-spans.ts; a span is a wallclock range of one track
  // sent to one upstream. Rows are pruned by count per track and by age (bounded on an SD card).
  `CREATE TABLE delivery_spans(
     id INTEGER PRIMARY KEY,
     channel TEXT NOT NULL, source TEXT NOT NULL, track TEXT NOT NULL,
     upstream TEXT NOT NULL DEFAULT '',
     kind TEXT NOT NULL CHECK(kind IN ('live','backfill')),
     from_ms INTEGER NOT NULL, to_ms INTEGER NOT NULL,
     frames INTEGER NOT NULL DEFAULT 0, bytes INTEGER NOT NULL DEFAULT 0,
     updated_ms INTEGER NOT NULL
   );
   CREATE INDEX span_track_time ON delivery_spans(channel, source, track, from_ms);`,
  // v3: when a row's file went away (present 1 → 0: deleted after verify, by retention, or found
  // missing), so the index can be pruned by age of deletion (recordings/index-prune.ts). Set by
  // triggers, whatever path flips `present`; rows already gone at migration count from now.
  `ALTER TABLE segments ADD COLUMN gone_ms INTEGER;
   UPDATE segments SET gone_ms = CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER) WHERE present = 0;
   CREATE INDEX seg_gone ON segments(gone_ms, id) WHERE present = 0;
   CREATE TRIGGER seg_gone_set AFTER UPDATE OF present ON segments WHEN NEW.present = 0 AND OLD.present <> 0
   BEGIN UPDATE segments SET gone_ms = CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER) WHERE id = NEW.id; END;
   CREATE TRIGGER seg_gone_clear AFTER UPDATE OF present ON segments WHEN NEW.present <> 0 AND OLD.present = 0
   BEGIN UPDATE segments SET gone_ms = NULL WHERE id = NEW.id; END;`,
  // v4: S3 multipart uploads in progress, so an upload resumes across restarts (issue 16). One
  // row per segment being sent in parts (keyed by segment path and target), one per finished part
  // with the checksums it was sent with. Written by recordings/sync-targets/multipart-state.ts;
  // rows of segments that are gone or synced are aborted and removed by its stale sweep.
  `CREATE TABLE sync_multipart(
     path TEXT PRIMARY KEY,
     target TEXT NOT NULL,
     key TEXT NOT NULL,
     upload_id TEXT NOT NULL,
     part_size INTEGER NOT NULL,
     bytes INTEGER NOT NULL,
     sha256 TEXT NOT NULL,
     created_ms INTEGER NOT NULL
   );
   CREATE TABLE sync_multipart_parts(
     path TEXT NOT NULL,
     part INTEGER NOT NULL,
     bytes INTEGER NOT NULL,
     etag TEXT NOT NULL,
     md5 TEXT NOT NULL,
     sha256 TEXT NOT NULL,
     PRIMARY KEY(path, part)
   ) WITHOUT ROWID;`,
];

export const SCHEMA_VERSION = MIGRATIONS.length;

/** Local segments read per track for its spans: ~14 days of 60 s segments. */
const MAX_SPAN_ROWS = 20_000;
/** Tracks in one summary. */
const MAX_SUMMARY_TRACKS = 1000;

export interface TrackSpan {
  fromMs: number;
  toMs: number;
  segments: number;
  bytes: number;
}

export interface TrackSummary {
  channel: string;
  source: string;
  track: string;
  kind: SegmentKind;
  mime: string;
  /** Rows in the index (local or not). */
  segments: number;
  /** Closed segments whose file is here. */
  localSegments: number;
  localBytes: number;
  firstMs: number;
  lastMs: number;
  /** A segment of this track is being written now. */
  recording: boolean;
  /** Continuous local ranges, oldest first (the newest maxSpans). */
  spans: TrackSpan[];
  /** Older local spans exist that are not listed (maxSpans or the row bound). */
  olderSpansOmitted: boolean;
}

/** Events kept in the audit table; older ones are pruned (bounded table on a small SD card). */
const MAX_EVENTS = 10_000;

type Op = () => void;

export interface IndexStats {
  transactions: number;
  opsWritten: number;
  pendingOps: number;
  droppedOps: number;
  writeErrors: number;
  lastError: string | null;
}

/** Bounded pending ops: an index write that cannot land (disk full) waits here; recovery heals the rest. */
const MAX_PENDING_OPS = 10_000;

export class IndexDb {
  readonly db: Database.Database;
  readonly readonly: boolean;
  private pending: Op[] = [];
  private closed = false;
  private readonly st: IndexStats = { transactions: 0, opsWritten: 0, pendingOps: 0, droppedOps: 0, writeErrors: 0, lastError: null };

  private constructor(db: Database.Database, readonly: boolean) {
    this.db = db;
    this.readonly = readonly;
  }

  /** The writer. Throws EdgeError INDEX_CORRUPT when the file is not a usable database. */
  static openWriter(file: string): IndexDb {
    let db: Database.Database | null = null;
    try {
      db = new Database(file, { nativeBinding: sqliteNativeBinding() });
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      db.pragma('busy_timeout = 5000');
      const check = db.pragma('quick_check', { simple: true });
      if (check !== 'ok') throw new Error(`quick_check: ${String(check)}`);
      const idx = new IndexDb(db, false);
      idx.migrate();
      return idx;
    } catch (err) {
      try {
        db?.close();
      } catch {
        /* already failing: the original error is the one to report */
      }
      throw new EdgeError('INDEX_CORRUPT', `cannot open index ${file}: ${(err as Error).message}`, { file }, { cause: err });
    }
  }

  /** A reader: read-only, never takes the write lock, waits (bounded) instead of failing. */
  static openReader(file: string): IndexDb {
    if (!fs.existsSync(file)) throw new EdgeError('INDEX_MISSING', `no index at ${file}`, { file });
    const db = new Database(file, { readonly: true, fileMustExist: true, nativeBinding: sqliteNativeBinding() });
    db.pragma('busy_timeout = 5000');
    const v = db.pragma('user_version', { simple: true }) as number;
    if (v > SCHEMA_VERSION) {
      db.close();
      throw new EdgeError('INDEX_VERSION', `index schema v${v} is newer than this build (v${SCHEMA_VERSION})`, { file });
    }
    return new IndexDb(db, true);
  }

  private migrate(): void {
    const v = this.db.pragma('user_version', { simple: true }) as number;
    if (v > SCHEMA_VERSION) throw new Error(`index schema v${v} is newer than this build (v${SCHEMA_VERSION})`);
    if (v === SCHEMA_VERSION) return;
    this.db.transaction(() => {
      for (let i = v; i < MIGRATIONS.length; i++) this.db.exec(MIGRATIONS[i]!);
      this.db.pragma(`user_version = ${SCHEMA_VERSION}`);
    })();
  }

  stats(): IndexStats {
    return { ...this.st, pendingOps: this.pending.length };
  }

  /** Queue a write; it lands in the next flush() transaction. */
  enqueue(op: Op): void {
    if (this.closed || this.readonly) return;
    if (this.pending.length >= MAX_PENDING_OPS) {
      this.pending.shift();
      this.st.droppedOps++;
    }
    this.pending.push(op);
  }

  /** Write every queued op in one transaction. On failure (disk full) the ops stay queued. */
  flush(): boolean {
    if (this.closed || this.pending.length === 0) return true;
    const ops = this.pending;
    try {
      this.db.transaction(() => {
        for (const op of ops) op();
      })();
      this.st.transactions++;
      this.st.opsWritten += ops.length;
      this.pending = [];
      return true;
    } catch (err) {
      this.st.writeErrors++;
      this.st.lastError = (err as Error).message;
      return false;
    }
  }

  /**
   * Run a write now, in one transaction with the queued ops (so order holds and a segment's state
   * change costs one commit). If the queued ops cannot land, they stay queued and fn runs alone.
   */
  write<T>(fn: () => T): T {
    const ops = this.pending;
    if (ops.length > 0 && !this.closed) {
      try {
        const r = this.db.transaction(() => {
          for (const op of ops) op();
          return fn();
        })();
        this.pending = this.pending.slice(ops.length);
        this.st.transactions++;
        this.st.opsWritten += ops.length + 1;
        return r;
      } catch {
        // a queued op or fn failed (everything rolled back): the ops stay queued, fn alone decides
      }
    }
    const r = this.db.transaction(fn)();
    this.st.transactions++;
    this.st.opsWritten++;
    return r;
  }

  /** Prepared statements by SQL text; bounded (the SQL texts are a small fixed set plus update()'s column sets). */
  private readonly stmts = new Map<string, Database.Statement>();
  private stmt(sql: string): Database.Statement {
    let st = this.stmts.get(sql);
    if (!st) {
      if (this.stmts.size >= 128) this.stmts.clear();
      st = this.db.prepare(sql);
      this.stmts.set(sql, st);
    }
    return st;
  }

  insert(row: NewSegment): void {
    this.stmt(
        `INSERT INTO segments(path, channel, source, track, mime, kind, run, offset_us, start_us, end_us,
           wall_start_ms, wall_end_ms, duration_ms, bytes, frames, keyframes, sha256, state, created_ms, closed_ms, origin)
         VALUES(@path, @channel, @source, @track, @mime, @kind, @run, @offset_us, @start_us, @end_us,
           @wall_start_ms, @wall_end_ms, @duration_ms, @bytes, @frames, @keyframes, @sha256, @state, @created_ms, @closed_ms, @origin)
         ON CONFLICT(path) DO UPDATE SET mime=excluded.mime, kind=excluded.kind, run=excluded.run, offset_us=excluded.offset_us,
           start_us=excluded.start_us, end_us=excluded.end_us, wall_start_ms=excluded.wall_start_ms,
           wall_end_ms=excluded.wall_end_ms, duration_ms=excluded.duration_ms, bytes=excluded.bytes, frames=excluded.frames,
           keyframes=excluded.keyframes, sha256=excluded.sha256, state=excluded.state, closed_ms=excluded.closed_ms, present=1`,
    ).run(row);
  }

  update(path: string, fields: Partial<Omit<SegmentRow, 'id' | 'path'>>): void {
    const keys = Object.keys(fields);
    if (keys.length === 0) return;
    for (const k of keys) if (!/^[a-z0-9_]+$/.test(k)) throw new Error(`bad column ${k}`);
    this.stmt(`UPDATE segments SET ${keys.map((k) => `${k}=@${k}`).join(', ')} WHERE path=@path`).run({ ...fields, path });
  }

  delete(path: string): void {
    this.stmt('DELETE FROM segments WHERE path=?').run(path);
  }

  event(kind: string, path: string | null, detail: string): void {
    const r = this.stmt('INSERT INTO events(at_ms, kind, path, detail) VALUES(?,?,?,?)').run(Date.now(), kind, path, detail);
    // rowid grows by one per event: prune only when the table may have passed the cap
    if (Number(r.lastInsertRowid) > MAX_EVENTS) this.stmt('DELETE FROM events WHERE id <= ?').run(Number(r.lastInsertRowid) - MAX_EVENTS);
  }

  get(path: string): SegmentRow | undefined {
    return this.stmt('SELECT * FROM segments WHERE path=?').get(path) as SegmentRow | undefined;
  }

  getById(id: number): SegmentRow | undefined {
    return this.stmt('SELECT * FROM segments WHERE id=?').get(id) as SegmentRow | undefined;
  }

  all(): SegmentRow[] {
    return this.db.prepare('SELECT * FROM segments ORDER BY wall_start_ms, id').all() as SegmentRow[];
  }

  list(q: {
    channel?: string;
    source?: string;
    track?: string;
    fromMs?: number;
    toMs?: number;
    state?: SegmentState;
    kind?: SegmentKind;
    /** Only rows whose file is here (true) or gone (false). */
    present?: boolean;
    limit?: number;
    /** By start time: 'asc' (default) or 'desc' (newest first, what a list on screen wants). */
    order?: 'asc' | 'desc';
  }): SegmentRow[] {
    const where: string[] = [];
    const args: Record<string, unknown> = {};
    if (q.channel !== undefined) (where.push('channel=@channel'), (args.channel = q.channel));
    if (q.source !== undefined) (where.push('source=@source'), (args.source = q.source));
    if (q.track !== undefined) (where.push('track=@track'), (args.track = q.track));
    if (q.fromMs !== undefined) (where.push('wall_end_ms >= @fromMs'), (args.fromMs = q.fromMs));
    if (q.toMs !== undefined) (where.push('wall_start_ms <= @toMs'), (args.toMs = q.toMs));
    if (q.state !== undefined) (where.push('state=@state'), (args.state = q.state));
    if (q.kind !== undefined) (where.push('kind=@kind'), (args.kind = q.kind));
    if (q.present !== undefined) (where.push('present=@present'), (args.present = q.present ? 1 : 0));
    args.limit = Math.min(Math.max(1, q.limit ?? 1000), 10_000);
    const dir = q.order === 'desc' ? 'DESC' : 'ASC';
    const sql = `SELECT * FROM segments ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY wall_start_ms ${dir}, id ${dir} LIMIT @limit`;
    return this.db.prepare(sql).all(args) as SegmentRow[];
  }

  /**
   * Per track: what the index holds and what is playable here, as continuous spans (local closed
   * segments closer than gapMs joined), oldest first, the newest maxSpans of them. Bounded: the
   * spans come from at most MAX_SPAN_ROWS newest local segments per track, for at most
   * MAX_SUMMARY_TRACKS tracks.
   */
  trackSummaries(opts: { gapMs?: number; maxSpans?: number } = {}): TrackSummary[] {
    const gap = Math.max(0, opts.gapMs ?? 2000);
    const maxSpans = Math.max(1, Math.min(10_000, opts.maxSpans ?? 200));
    const groups = this.stmt(
      `SELECT channel, source, track, COUNT(*) AS n, MIN(wall_start_ms) AS first, MAX(wall_end_ms) AS last,
         MAX(state = 'recording') AS rec, SUM(present = 1 AND state <> 'recording') AS local_n,
         SUM(CASE WHEN present = 1 AND state <> 'recording' THEN bytes ELSE 0 END) AS local_bytes
       FROM segments GROUP BY channel, source, track ORDER BY channel, source, track LIMIT ${MAX_SUMMARY_TRACKS}`,
    ).all() as Array<{ channel: string; source: string; track: string; n: number; first: number; last: number; rec: number; local_n: number; local_bytes: number }>;
    const latest = this.stmt('SELECT kind, mime FROM segments WHERE channel=? AND source=? AND track=? ORDER BY wall_start_ms DESC, id DESC LIMIT 1');
    const local = this.stmt(
      `SELECT wall_start_ms, wall_end_ms, bytes FROM segments
       WHERE channel=? AND source=? AND track=? AND present = 1 AND state <> 'recording'
       ORDER BY wall_start_ms DESC, id DESC LIMIT ${MAX_SPAN_ROWS}`,
    );
    return groups.map((g) => {
      const l = latest.get(g.channel, g.source, g.track) as { kind: SegmentKind; mime: string };
      const rows = local.all(g.channel, g.source, g.track) as Array<{ wall_start_ms: number; wall_end_ms: number; bytes: number }>;
      // newest first: a span grows backwards while the previous segment ends within gapMs
      const spans: TrackSpan[] = [];
      let truncated = 0;
      for (const r of rows) {
        const cur = spans[spans.length - 1];
        if (cur && cur.fromMs - r.wall_end_ms <= gap) {
          cur.fromMs = Math.min(cur.fromMs, r.wall_start_ms);
          cur.segments++;
          cur.bytes += r.bytes;
        } else if (spans.length < maxSpans) {
          spans.push({ fromMs: r.wall_start_ms, toMs: r.wall_end_ms, segments: 1, bytes: r.bytes });
        } else {
          truncated++;
          break; // older spans are not listed
        }
      }
      return {
        channel: g.channel,
        source: g.source,
        track: g.track,
        kind: l.kind,
        mime: l.mime,
        segments: g.n,
        localSegments: g.local_n ?? 0,
        localBytes: g.local_bytes ?? 0,
        firstMs: g.first,
        lastMs: g.last,
        recording: g.rec === 1,
        spans: spans.reverse(),
        olderSpansOmitted: truncated > 0 || rows.length === MAX_SPAN_ROWS,
      };
    });
  }

  events(limit = 100): Array<{ id: number; at_ms: number; kind: string; path: string | null; detail: string }> {
    return this.db.prepare('SELECT * FROM events ORDER BY id DESC LIMIT ?').all(limit) as Array<{
      id: number;
      at_ms: number;
      kind: string;
      path: string | null;
      detail: string;
    }>;
  }

  /** Flushes and closes; safe to call twice, never throws. */
  close(): void {
    if (this.closed) return;
    if (!this.readonly) this.flush();
    this.closed = true;
    try {
      this.db.close();
    } catch {
      /* closing a failed handle: nothing else to do */
    }
  }
}
