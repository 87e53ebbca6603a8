// Bounded index: rows of segments whose file is gone (present=0: deleted by retention after sync,
// deleted after verify, or found missing) are the record of what was recorded and where it went,
// but on a robot that runs for years they must not grow without end. They are pruned by age of
// deletion (`gone_ms`, schema v3) and by a row cap, oldest first, in small batches: each batch
// is one short transaction and the event loop runs between batches, so the recorder's commits
// interleave and readers (WAL) never wait. Rows of files still on disk are never pruned: every
// candidate's file is looked for before its row goes (a `present=0` row whose file came back is
// left for recovery to reconcile).
//
// For the uplink helper: `indexHorizonMs(cfg, now)` is the same horizon for delivery_spans
// (recordings/delivery-spans.ts prunes its own table); `pruneDeleted(db, beforeMs, …)` prunes
// segment rows only and never touches another table.
import fs from 'node:fs';
import path from 'node:path';
import type { IndexConfig } from './config.js';
import type { IndexDb } from './index-db.js';
import { PART_SUFFIX } from './layout.js';
import type { RecLog } from './log.js';

const DAY_MS = 86_400_000;

/** Rows whose file went away before this instant are past the index's retention. */
export function indexHorizonMs(cfg: Pick<IndexConfig, 'keepDeletedDays'>, now = Date.now()): number {
  return now - cfg.keepDeletedDays * DAY_MS;
}

export interface PruneResult {
  byAge: number;
  byCap: number;
  /** Candidates left alone because their file (or its .part) is on disk. */
  skippedOnDisk: number;
  batches: number;
  /** Longest single batch (one transaction), ms. */
  maxBatchMs: number;
}

export interface PruneOptions {
  /** Root of the recordings: a candidate whose file is here is not pruned. */
  root: string;
  /** Rows per transaction. */
  batch?: number;
  /** Keep at most this many present=0 rows (after the age pass); Infinity = no cap. */
  maxRows?: number;
  /** Between batches (default: one turn of the event loop, so other writes and timers run). */
  yieldFn?: () => Promise<void>;
  /** Stop between batches when this says so (service closing). */
  stopped?: () => boolean;
}

interface Candidate {
  id: number;
  path: string;
  gone_ms: number;
}

const yieldLoop = () => new Promise<void>((r) => setImmediate(r));

function onDisk(root: string, rel: string): boolean {
  const abs = path.resolve(root, rel);
  return fs.existsSync(abs) || fs.existsSync(abs + PART_SUFFIX);
}

/**
 * Delete rows with present=0 whose file went away before `beforeMs`, then, when more than
 * `maxRows` such rows remain, the oldest beyond the cap. Segment rows only.
 */
export async function pruneDeleted(db: IndexDb, beforeMs: number, opts: PruneOptions): Promise<PruneResult> {
  const res: PruneResult = { byAge: 0, byCap: 0, skippedOnDisk: 0, batches: 0, maxBatchMs: 0 };
  if (db.readonly) return res;
  const batch = Math.max(1, Math.min(10_000, Math.floor(opts.batch ?? 500)));
  const yieldFn = opts.yieldFn ?? yieldLoop;
  const stopped = opts.stopped ?? (() => false);
  // (gone_ms, id) cursor over the partial index seg_gone: a skipped candidate is never read twice
  const pick = db.db.prepare(
    `SELECT id, path, gone_ms FROM segments INDEXED BY seg_gone
     WHERE present = 0 AND gone_ms IS NOT NULL AND (gone_ms, id) > (@g, @id) AND gone_ms < @before
     ORDER BY gone_ms, id LIMIT @n`,
  );
  // present=0 again in the DELETE: a row that came back between the read and the write stays
  const del = db.db.prepare('DELETE FROM segments WHERE id = ? AND present = 0');
  const count = db.db.prepare('SELECT COUNT(*) AS n FROM segments WHERE present = 0');

  const pass = async (before: number, limit: number, kind: 'byAge' | 'byCap') => {
    let cursor = { g: -Infinity, id: -1 };
    let left = limit;
    while (left > 0 && !stopped()) {
      const t0 = performance.now();
      const rows = pick.all({ g: cursor.g === -Infinity ? -9e15 : cursor.g, id: cursor.id, before, n: Math.min(batch, left) }) as Candidate[];
      if (rows.length === 0) break;
      const last = rows[rows.length - 1]!;
      cursor = { g: last.gone_ms, id: last.id };
      const gone = rows.filter((r) => {
        if (!onDisk(opts.root, r.path)) return true;
        res.skippedOnDisk++;
        return false;
      });
      let n = 0;
      if (gone.length > 0) {
        n = db.write(() => {
          let k = 0;
          for (const r of gone) k += del.run(r.id).changes;
          if (k > 0) db.event('index-pruned', null, `${kind === 'byAge' ? 'age' : 'cap'}: ${k} rows of deleted segments`);
          return k;
        });
      }
      res[kind] += n;
      left -= rows.length;
      res.batches++;
      res.maxBatchMs = Math.max(res.maxBatchMs, performance.now() - t0);
      await yieldFn();
    }
  };

  await pass(beforeMs, Number.MAX_SAFE_INTEGER, 'byAge');
  const cap = opts.maxRows ?? Infinity;
  if (Number.isFinite(cap) && !stopped()) {
    const excess = (count.get() as { n: number }).n - cap;
    // oldest first, whatever their age: the cap is the hard bound on the SD card
    if (excess > 0) await pass(Number.MAX_SAFE_INTEGER, excess, 'byCap');
  }
  return res;
}

export interface IndexPruneStats {
  runs: number;
  pruned: number;
  prunedByAge: number;
  prunedByCap: number;
  skippedOnDisk: number;
  batches: number;
  maxBatchMs: number;
  lastRunAt: number | null;
  lastError: string | null;
}

/** The service's shell around pruneDeleted: one run at a time, stats, a close that waits. */
export class IndexPruner {
  readonly st: IndexPruneStats = {
    runs: 0,
    pruned: 0,
    prunedByAge: 0,
    prunedByCap: 0,
    skippedOnDisk: 0,
    batches: 0,
    maxBatchMs: 0,
    lastRunAt: null,
    lastError: null,
  };
  private running: Promise<PruneResult | null> | null = null;
  private closed = false;

  constructor(
    private readonly db: IndexDb,
    private readonly root: string,
    private readonly cfg: IndexConfig,
    private readonly log: RecLog,
    private readonly now: () => number = Date.now,
  ) {}

  /** One prune run (a second call while one runs shares it). Never throws. */
  run(): Promise<PruneResult | null> {
    if (this.closed) return Promise.resolve(null);
    this.running ??= this.once().finally(() => (this.running = null));
    return this.running;
  }

  private async once(): Promise<PruneResult | null> {
    this.st.runs++;
    try {
      this.db.flush();
      const r = await pruneDeleted(this.db, indexHorizonMs(this.cfg, this.now()), {
        root: this.root,
        batch: this.cfg.pruneBatch,
        maxRows: this.cfg.maxDeletedRows,
        stopped: () => this.closed,
      });
      this.st.prunedByAge += r.byAge;
      this.st.prunedByCap += r.byCap;
      this.st.pruned += r.byAge + r.byCap;
      this.st.skippedOnDisk += r.skippedOnDisk;
      this.st.batches += r.batches;
      this.st.maxBatchMs = Math.max(this.st.maxBatchMs, r.maxBatchMs);
      this.st.lastRunAt = this.now();
      if (r.byAge + r.byCap > 0) this.log.info({ byAge: r.byAge, byCap: r.byCap, batches: r.batches }, 'recordings index pruned');
      return r;
    } catch (err) {
      this.st.lastError = (err as Error).message;
      this.log.error({ err: (err as Error).message }, 'recordings index prune failed');
      return null;
    }
  }

  /** Stops between batches and waits for the run in progress. Idempotent, never throws. */
  async close(): Promise<void> {
    this.closed = true;
    await this.running?.catch(() => null);
  }
}
