// What reached the upstream, per track, persisted in the recordings index (schema v2 table
// delivery_spans, issue #8). The writer batches through the IndexDb writer's enqueue/flush (the
// recording service flushes every second): one insert-or-update op per open span per flush, never
// one per frame. Rows are bounded: pruned by age and by a per-track row cap. Readers query a
// read-only IndexDb. This module imports only the engine contract from runtime/.
import { EdgeError } from '../runtime/engine/api.js';
import type { IndexDb } from './index-db.js';

export type DeliveryKind = 'live' | 'backfill';

export interface DeliverySpanRow {
  channel: string;
  source: string;
  track: string;
  upstream: string;
  kind: DeliveryKind;
  from_ms: number;
  to_ms: number;
  frames: number;
  bytes: number;
  updated_ms: number;
}

export interface DeliverySpanQuery {
  channel: string;
  source: string;
  track: string;
  fromMs: number;
  toMs: number;
  kind?: DeliveryKind;
  upstream?: string;
  limit?: number;
}

/** Rows read per query: 20 000 spans is far more than one gap report shows. */
const MAX_READ_ROWS = 20_000;

/** Spans of a track overlapping [fromMs, toMs], oldest first. Works on a reader or the writer. */
export function readDeliverySpans(db: Pick<IndexDb, 'db'>, q: DeliverySpanQuery): DeliverySpanRow[] {
  const where = ['channel=@channel', 'source=@source', 'track=@track', 'to_ms >= @fromMs', 'from_ms <= @toMs'];
  const args: Record<string, unknown> = { channel: q.channel, source: q.source, track: q.track, fromMs: Math.floor(q.fromMs), toMs: Math.ceil(q.toMs) };
  if (q.kind) (where.push('kind=@kind'), (args.kind = q.kind));
  if (q.upstream !== undefined) (where.push('upstream=@upstream'), (args.upstream = q.upstream));
  args.limit = Math.min(Math.max(1, q.limit ?? MAX_READ_ROWS), MAX_READ_ROWS);
  try {
    return db.db
      .prepare(`SELECT channel, source, track, upstream, kind, from_ms, to_ms, frames, bytes, updated_ms FROM delivery_spans WHERE ${where.join(' AND ')} ORDER BY from_ms, id LIMIT @limit`)
      .all(args) as DeliverySpanRow[];
  } catch (err) {
    // An index older than v2 (a reader opened before the writer migrated) has no table yet.
    if (/no such table/i.test((err as Error).message)) return [];
    throw new EdgeError('INDEX_READ', `delivery spans: ${(err as Error).message}`, { track: `${q.channel}/${q.source}/${q.track}` }, { cause: err });
  }
}

export interface DeliverySpanWriterOptions {
  /** The writer index, read on each flush (it may not be open yet, or reopened): null = keep in memory. */
  index: () => IndexDb | null;
  /** Rows kept per (track, upstream, kind): 20 000 rows ≈ 2 MB of SQLite. */
  maxRowsPerTrack?: number;
  /** Rows older than this (by to_ms) are deleted: 30 days. */
  maxAgeMs?: number;
  /** Open spans tracked at once (one per track × upstream × kind in practice); beyond, the oldest is closed. */
  maxOpenSpans?: number;
  now?: () => number;
}

interface OpenSpan {
  key: string;
  channel: string;
  source: string;
  track: string;
  upstream: string;
  kind: DeliveryKind;
  from: number;
  to: number;
  frames: number;
  bytes: number;
  rowId: number | null;
  /** An op for this span is queued and has not run yet. */
  queued: boolean;
}

export interface DeliverySpanWriterStats {
  openSpans: number;
  spansStarted: number;
  opsQueued: number;
  rowsInserted: number;
  rowsUpdated: number;
  rowsPruned: number;
  /** Spans closed before they could be written (no index): kept only in memory. */
  unpersisted: number;
  lastError: string | null;
}

/**
 * Live and backfill spans as rows. `add` extends the open span of (track, upstream, kind);
 * `break` closes it (the next add starts a new row: a frame was lost between). `flush` queues one
 * op per changed span onto the index writer; the recording service's flush lands them.
 */
export class DeliverySpanWriter {
  private open = new Map<string, OpenSpan>();
  private dirty = new Set<OpenSpan>();
  private readonly maxRows: number;
  private readonly maxAgeMs: number;
  private readonly maxOpen: number;
  private readonly now: () => number;
  private closed = false;
  private readonly st: DeliverySpanWriterStats = { openSpans: 0, spansStarted: 0, opsQueued: 0, rowsInserted: 0, rowsUpdated: 0, rowsPruned: 0, unpersisted: 0, lastError: null };

  constructor(private readonly o: DeliverySpanWriterOptions) {
    this.maxRows = Math.max(1, o.maxRowsPerTrack ?? 20_000);
    this.maxAgeMs = Math.max(60_000, o.maxAgeMs ?? 30 * 24 * 3600_000);
    this.maxOpen = Math.max(1, o.maxOpenSpans ?? 256);
    this.now = o.now ?? Date.now;
  }

  /** `track` is channel/source/track; wallMs the frame's capture wallclock. */
  add(kind: DeliveryKind, track: string, upstream: string, wallMs: number, bytes: number): void {
    if (this.closed || !Number.isFinite(wallMs)) return;
    const key = `${kind}|${upstream}|${track}`;
    let s = this.open.get(key);
    if (!s) {
      const parts = track.split('/');
      if (parts.length !== 3) return;
      if (this.open.size >= this.maxOpen) this.evictOldest();
      s = { key, channel: parts[0]!, source: parts[1]!, track: parts[2]!, upstream, kind, from: wallMs, to: wallMs, frames: 0, bytes: 0, rowId: null, queued: false };
      this.open.set(key, s);
      this.st.spansStarted++;
    }
    if (wallMs < s.from) s.from = wallMs;
    if (wallMs > s.to) s.to = wallMs;
    s.frames++;
    s.bytes += Math.max(0, bytes);
    this.dirty.add(s);
  }

  /** The next add for this key starts a new span (its current state is written at the next flush). */
  break(kind: DeliveryKind, track: string, upstream: string): void {
    const key = `${kind}|${upstream}|${track}`;
    const s = this.open.get(key);
    if (!s) return;
    this.open.delete(key);
    // Still dirty: the last state is queued by flush().
  }

  private evictOldest(): void {
    const first = this.open.keys().next();
    if (!first.done) this.open.delete(first.value);
  }

  /** Queue the changed spans onto the index writer. Returns false when no index is open. */
  flush(): boolean {
    if (this.dirty.size === 0) return true;
    let db: IndexDb | null = null;
    try {
      db = this.o.index();
    } catch {
      db = null;
    }
    if (!db || db.readonly) {
      // Keep the newest state of open spans; closed ones without an index are lost from disk.
      for (const s of this.dirty) {
        if (this.open.get(s.key) !== s) {
          this.dirty.delete(s);
          this.st.unpersisted++;
        }
      }
      return false;
    }
    const now = this.now();
    for (const s of this.dirty) {
      if (s.queued) continue;
      s.queued = true;
      this.st.opsQueued++;
      const idx = db;
      idx.enqueue(() => {
        try {
          this.persist(idx, s, now);
        } catch (err) {
          // A full or failing disk fails the whole batch (kept queued, retried by the next flush);
          // any other error is this op's own and must not block the segment updates behind it.
          const code = (err as { code?: string }).code ?? '';
          if (code.startsWith('SQLITE_FULL') || code.startsWith('SQLITE_IOERR') || code.startsWith('SQLITE_BUSY')) throw err;
          this.st.unpersisted++;
          this.st.lastError = (err as Error).message;
        }
      });
    }
    this.dirty.clear();
    return true;
  }

  private persist(idx: IndexDb, s: OpenSpan, now: number): void {
    s.queued = false;
    const row = { channel: s.channel, source: s.source, track: s.track, upstream: s.upstream, kind: s.kind, from_ms: s.from, to_ms: s.to, frames: s.frames, bytes: s.bytes, updated_ms: now };
    if (s.rowId !== null) {
      const r = idx.db.prepare('UPDATE delivery_spans SET from_ms=@from_ms, to_ms=@to_ms, frames=@frames, bytes=@bytes, updated_ms=@updated_ms WHERE id=@id').run({ ...row, id: s.rowId });
      if (r.changes > 0) {
        this.st.rowsUpdated++;
        return;
      }
    }
    const r = idx.db
      .prepare('INSERT INTO delivery_spans(channel, source, track, upstream, kind, from_ms, to_ms, frames, bytes, updated_ms) VALUES(@channel, @source, @track, @upstream, @kind, @from_ms, @to_ms, @frames, @bytes, @updated_ms)')
      .run(row);
    s.rowId = Number(r.lastInsertRowid);
    this.st.rowsInserted++;
  }

  /** Queue the prune (age, then row cap per track/upstream/kind). Run it every few minutes. */
  prune(): void {
    let db: IndexDb | null = null;
    try {
      db = this.o.index();
    } catch {
      db = null;
    }
    if (!db || db.readonly) return;
    const idx = db;
    const cutoff = this.now() - this.maxAgeMs;
    const cap = this.maxRows;
    idx.enqueue(() => {
      let n = idx.db.prepare('DELETE FROM delivery_spans WHERE to_ms < ?').run(cutoff).changes;
      const over = idx.db
        .prepare('SELECT channel, source, track, upstream, kind, COUNT(*) AS n FROM delivery_spans GROUP BY channel, source, track, upstream, kind HAVING n > ?')
        .all(cap) as Array<{ channel: string; source: string; track: string; upstream: string; kind: string; n: number }>;
      for (const g of over) {
        n += idx.db
          .prepare(
            `DELETE FROM delivery_spans WHERE id IN (SELECT id FROM delivery_spans WHERE channel=@channel AND source=@source AND track=@track AND upstream=@upstream AND kind=@kind ORDER BY to_ms, id LIMIT @excess)`,
          )
          .run({ ...g, excess: g.n - cap }).changes;
      }
      this.st.rowsPruned += n;
    });
  }

  stats(): DeliverySpanWriterStats {
    return { ...this.st, openSpans: this.open.size };
  }

  /** Queue what is left; the recording service's close flushes the index. Idempotent, never throws. */
  close(): void {
    if (this.closed) return;
    try {
      this.flush();
    } catch (err) {
      this.st.lastError = (err as Error).message;
    }
    this.closed = true;
    this.open.clear();
  }
}
