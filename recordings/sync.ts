// Sync upstream: upload closed segments to the configured target (WebDAV/HTTP PUT or any
// S3-compatible bucket, recordings/sync-targets/), prove the stored copy (size + a checksum the
// target computed, or a read-back), then mark synced and, when policy says so, delete the local file.
//
// State machine (in the index): closed → uploading → synced (→ local copy deleted), or quarantined.
// A verified segment is never uploaded again; a rebuilt or retried row is looked for on the target
// before it is sent.
//
// Retries (issue 14) use the engine's RetryPolicy, split by whose fault a failure is:
// - the network (unreachable, reset, timeout, 5xx): the whole queue waits on the fast ladder
//   (250 ms → 2 s) for as long as it lasts; no segment's attempts move — an outage never
//   quarantines anything;
// - the target refusing everything (wrong key, clock skew, no bucket, wrong region, 401, an
//   untrusted certificate): the queue waits on the refusal ladder (1 s → 60 s), stats say what to
//   fix, still no segment is blamed;
// - the target refusing this segment (403 on its key, a bad digest, a copy that does not verify,
//   a local file that is gone or short): that segment backs off on its own and is quarantined after
//   maxAttempts (kept, reported, not retried until asked); the others go on.
import fs from 'node:fs';
import path from 'node:path';
import { RetryPolicy } from '../runtime/engine/api.js';
import { matchTrack, type SyncConfig } from './config.js';
import type { IndexDb, SegmentRow } from './index-db.js';
import { ThrottledLog, type RecLog } from './log.js';
import { asSyncFailure, localFailure, Pacer, SyncFailure, type SyncTarget, type TargetContext, type VerifiedBy } from './sync-targets/target.js';
import { WebdavTarget } from './sync-targets/webdav.js';

export { checksumHeader, redactedUrl } from './sync-targets/webdav.js';

export type TargetHealth = 'starting' | 'ok' | 'unreachable' | 'refused';

export interface UploaderStats {
  /** Target kind and where it is (no credentials). */
  target: 'webdav' | 's3';
  where: string | null;
  /** ok; unreachable (network, 5xx: retried fast); refused (the target refuses everything: see targetError). */
  targetState: TargetHealth;
  /** What the target said and what to fix, while it is not ok. */
  targetError: string | null;
  uploads: number;
  /** Bytes put on the wire, retries included (the uplink estimator's samples). */
  uploadedBytes: number;
  verified: number;
  /** How each verified copy was proven: a checksum the target computed, its ETag (MD5), or a read-back. */
  verifiedBy: Record<VerifiedBy, number>;
  verifyFailures: number;
  alreadyOnTarget: number;
  failures: number;
  /** Failures by whose fault: the network (never counts towards quarantine), the target as a whole, this segment. */
  networkFailures: number;
  targetRefusals: number;
  objectRefusals: number;
  quarantined: number;
  deletedLocal: number;
  retriesScheduled: number;
  /** One segment in flight (the latest started); inFlightCount says how many. */
  inFlight: string | null;
  inFlightCount: number;
  pending: number;
  /** Wall time spent uploading and verifying, summed over requests (they overlap when concurrency > 1). */
  putMs: number;
  verifyMs: number;
  verifiedBytesRead: number;
  /** Verify reads that could not use the fast path (WebDAV: chunked answers; S3: full GET, no checksum offered). */
  verifyFallbacks: number;
  /** The bandwidth cap in force (bytes/s, 0 = none) and the uplink scheduler's share, when it measures the link. */
  rateLimitBytesPerSec: number;
  uplinkCapBytesPerSec: number | null;
  retry: ReturnType<RetryPolicy['stats']>;
  /** What the target itself counts (multipart parts, resumes, Expect: 100-continue refusals…). */
  targetStats: Record<string, number | string | boolean | null>;
  lastError: string | null;
  lastSyncedAt: number | null;
}

/** Rows fetched per pass: a backlog of months is worked through in slices. */
const BATCH = 200;
/** Stale multipart uploads are looked for at start and this often. */
const HOUSEKEEPING_MS = 3_600_000;
/**
 * The same "access denied"-like refusal for this many different segments in a row, with no success
 * in between, is the target refusing everything (a wrong policy), not these segments.
 */
const TARGET_WIDE_AFTER = 3;
const MAYBE_TARGET_WIDE = new Set(['SYNC_FORBIDDEN', 'S3_ACCESS_DENIED']);

export class Uploader {
  private readonly retry: RetryPolicy;
  private readonly throttle: ThrottledLog;
  private readonly pacer: Pacer;
  private readonly st: Omit<UploaderStats, 'retry' | 'targetStats' | 'rateLimitBytesPerSec' | 'uplinkCapBytesPerSec'>;
  private loop: Promise<void> | null = null;
  private wakeUp: (() => void) | null = null;
  private readonly abort = new AbortController();
  private closed = false;
  private passRunning: Promise<number> | null = null;
  private targetP: Promise<SyncTarget> | null = null;
  private targetObj: SyncTarget | null = null;
  /** Why the last pass stopped handing out segments (network or a target-wide refusal). */
  private hold: SyncFailure | null = null;
  private streak: { code: string; paths: Set<string> } | null = null;
  private lastHousekeeping = -Infinity;

  constructor(
    private readonly cfg: SyncConfig,
    private readonly root: string,
    private readonly db: IndexDb,
    private readonly log: RecLog,
    private readonly random: () => number = Math.random,
  ) {
    this.retry = new RetryPolicy({
      refused: { initialMs: cfg.retryInitialMs, maxMs: cfg.retryMaxMs },
      network: { initialMs: cfg.networkRetryInitialMs, maxMs: cfg.networkRetryMaxMs },
      random,
    });
    this.throttle = new ThrottledLog(log);
    this.pacer = new Pacer(cfg.bandwidthBytesPerSec);
    this.st = {
      target: cfg.target.kind,
      where: null,
      targetState: 'starting',
      targetError: null,
      uploads: 0,
      uploadedBytes: 0,
      verified: 0,
      verifiedBy: { checksum: 0, etag: 0, get: 0 },
      verifyFailures: 0,
      alreadyOnTarget: 0,
      failures: 0,
      networkFailures: 0,
      targetRefusals: 0,
      objectRefusals: 0,
      quarantined: 0,
      deletedLocal: 0,
      retriesScheduled: 0,
      inFlight: null,
      inFlightCount: 0,
      pending: 0,
      putMs: 0,
      verifyMs: 0,
      verifiedBytesRead: 0,
      verifyFallbacks: 0,
      lastError: null,
      lastSyncedAt: null,
    };
  }

  stats(): UploaderStats {
    return {
      ...this.st,
      verifiedBy: { ...this.st.verifiedBy },
      rateLimitBytesPerSec: this.pacer.rate,
      uplinkCapBytesPerSec: this.pacer.uplinkCap,
      retry: this.retry.stats(),
      targetStats: this.targetObj?.stats() ?? {},
    };
  }

  /**
   * The uplink scheduler's leftover for the sync (bytes/s after every live track; null: not
   * measured). The upload rate is held to it on top of bandwidthBytesPerSec.
   */
  setUplinkCap(bytesPerSec: number | null): void {
    this.pacer.setUplinkCap(bytesPerSec);
  }

  start(): void {
    if (this.loop || this.closed) return;
    this.loop = this.runLoop();
  }

  wake(): void {
    const w = this.wakeUp;
    this.wakeUp = null;
    w?.();
  }

  private sleep(ms: number): Promise<void> {
    // closed while not asleep (close() found no sleeper to wake): do not start a long wait now
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.wakeUp = null;
        resolve();
      }, ms);
      this.wakeUp = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }

  /** The target, built on first use (the S3 one loads its SDK then: never without an S3 target). */
  private target(): Promise<SyncTarget> {
    this.targetP ??= this.makeTarget().then(
      (t) => {
        this.targetObj = t;
        this.st.where = t.where;
        if (this.closed) void t.close();
        return t;
      },
      (err) => {
        this.targetP = null; // a later pass tries again (a CA or secret file that appears)
        throw err;
      },
    );
    return this.targetP;
  }

  private async makeTarget(): Promise<SyncTarget> {
    const ctx: TargetContext = {
      db: this.db,
      log: this.log,
      signal: this.abort.signal,
      pacer: this.pacer,
      timeoutMs: this.cfg.timeoutMs,
      concurrency: this.cfg.concurrency,
      sent: (n) => (this.st.uploadedBytes += n),
      timed: (phase, ms) => (this.st[phase] += ms),
      readBack: (n, fallback) => {
        this.st.verifiedBytesRead += n;
        if (fallback) this.st.verifyFallbacks++;
      },
    };
    const t = this.cfg.target;
    try {
      switch (t.kind) {
        case 'webdav':
          return new WebdavTarget(t, ctx);
        case 's3': {
          const { createS3Target } = await import('./sync-targets/s3.js');
          return await createS3Target(t, ctx);
        }
      }
    } catch (err) {
      if (err instanceof SyncFailure) throw err;
      const e = err as NodeJS.ErrnoException;
      // a missing CA or secret file, a module that does not load: the target's config
      throw new SyncFailure('SYNC_TARGET_SETUP', `cannot set up the ${t.kind} target: ${e.message}`, 'refused', 'target', {}, { cause: err });
    }
  }

  private async runLoop(): Promise<void> {
    while (!this.closed) {
      try {
        await this.runOnce();
      } catch (err) {
        // the target could not be set up (a CA or secret file missing, the SDK not installed)
        const f = asSyncFailure(err);
        this.hold = f;
        this.st.lastError = this.st.targetError = f.message;
        this.st.targetState = f.cls === 'network' ? 'unreachable' : 'refused';
        this.throttle.error(`sync-setup:${f.code}`, 'sync target unusable', { err: f.message });
      }
      if (this.closed) break;
      const hold = this.hold;
      if (hold) {
        await this.sleep(this.retry.next(Date.now(), hold.cls));
        continue;
      }
      await this.housekeeping();
      await this.sleep(Math.min(this.cfg.pollMs, this.nextDueIn()));
    }
  }

  private async housekeeping(): Promise<void> {
    const now = Date.now();
    if (now - this.lastHousekeeping < HOUSEKEEPING_MS || !this.targetObj?.housekeeping) return;
    this.lastHousekeeping = now;
    await this.targetObj.housekeeping(now);
  }

  private nextDueIn(): number {
    const r = this.db.db
      .prepare("SELECT MIN(next_attempt_ms) AS t FROM segments WHERE state='closed' AND present=1")
      .get() as { t: number | null };
    if (r.t === null) return this.cfg.pollMs;
    return Math.max(10, r.t - Date.now());
  }

  /** Rows due now, by configured track priority, then oldest first. */
  due(now = Date.now()): SegmentRow[] {
    this.db.flush();
    const rows = this.db.db
      .prepare("SELECT * FROM segments WHERE state='closed' AND present=1 AND next_attempt_ms <= ? ORDER BY wall_start_ms, id LIMIT ?")
      .all(now, BATCH) as SegmentRow[];
    const pr = (r: SegmentRow) => {
      const p = `${r.channel}/${r.source}/${r.track}`;
      const i = this.cfg.priority.findIndex((x) => matchTrack(x, p));
      return i < 0 ? this.cfg.priority.length : i;
    };
    return rows.sort((a, b) => pr(a) - pr(b) || a.wall_start_ms - b.wall_start_ms || a.id - b.id);
  }

  /** One pass over due segments. Returns the number of failures. Concurrent calls share one pass. */
  runOnce(): Promise<number> {
    this.passRunning ??= this.pass().finally(() => (this.passRunning = null));
    return this.passRunning;
  }

  /**
   * Bounded concurrency: `cfg.concurrency` workers take due segments in priority order, each
   * uploading then verifying, so the verify of N runs while N+1 is sent. A network failure or a
   * target-wide refusal stops handing out segments (those in flight finish); a refusal of one
   * segment does not.
   */
  private async pass(): Promise<number> {
    let failures = 0;
    this.hold = null;
    await this.target();
    for (;;) {
      const rows = this.due();
      this.st.pending = rows.length;
      if (rows.length === 0 || this.closed) return failures;
      let next = 0;
      const worker = async () => {
        while (!this.closed && !this.hold && next < rows.length) {
          const row = rows[next++]!;
          this.st.pending = rows.length - next;
          if (!(await this.syncOne(row))) failures++;
        }
      };
      await Promise.all(Array.from({ length: Math.min(this.cfg.concurrency, rows.length) }, worker));
      if (this.hold || this.closed) return failures;
    }
  }

  /** Put a quarantined segment (or all) back in the queue. */
  retryQuarantined(p?: string): number {
    const res = p
      ? this.db.write(() => this.db.db.prepare("UPDATE segments SET state='closed', attempts=0, next_attempt_ms=0 WHERE state='quarantined' AND path=?").run(p))
      : this.db.write(() => this.db.db.prepare("UPDATE segments SET state='closed', attempts=0, next_attempt_ms=0 WHERE state='quarantined'").run());
    this.wake();
    return res.changes;
  }

  /** Upload + verify one segment. true when synced (or nothing to do). */
  async syncOne(row: SegmentRow): Promise<boolean> {
    const abs = path.join(this.root, row.path);
    this.st.inFlight = row.path;
    this.st.inFlightCount++;
    try {
      if (!row.sha256) throw localFailure('SYNC_NO_HASH', 'segment has no sha256 yet');
      let size: number;
      try {
        size = fs.statSync(abs).size;
      } catch (err) {
        throw localFailure('SYNC_LOCAL', `segment file unreadable: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      }
      if (size !== row.bytes) throw localFailure('SYNC_SIZE', `local file is ${size} bytes, index says ${row.bytes}`);
      const target = await this.target();
      // queued, not committed on its own: it lands with the next flush (the service's 1 s timer,
      // so a long upload shows) or with this segment's synced/failed write — one commit per segment.
      // Only a row still 'closed' becomes 'uploading': a queued mark that lands late must never
      // turn a synced row back.
      this.db.enqueue(() => this.db.db.prepare("UPDATE segments SET state='uploading' WHERE path=? AND state='closed'").run(row.path));
      const out = await target.sync({ row: row as SegmentRow & { sha256: string }, abs, checkFirst: row.origin !== 'recorder' || row.attempts > 0 });
      this.settled(row, abs, out.verifiedBy, out.alreadyOnTarget);
      return true;
    } catch (err) {
      this.failed(row, asSyncFailure(err));
      return false;
    } finally {
      this.st.inFlightCount--;
      if (this.st.inFlight === row.path) this.st.inFlight = null;
    }
  }

  /** Verified: mark synced (and delete locally when policy says so). */
  private settled(row: SegmentRow, abs: string, by: VerifiedBy, already: boolean): void {
    if (already) this.st.alreadyOnTarget++;
    else this.st.uploads++;
    this.st.verified++;
    this.st.verifiedBy[by]++;
    this.st.lastSyncedAt = Date.now();
    this.st.targetState = 'ok';
    this.st.targetError = null;
    this.streak = null;
    this.retry.healthy(Date.now());
    const del = this.cfg.deleteAfterVerify;
    this.db.write(() => {
      this.db.update(row.path, { state: 'synced', synced_ms: Date.now(), last_error: null, present: del ? 0 : 1 });
      this.db.event('synced', row.path, `bytes=${row.bytes} verified by ${by}${already ? ' (already on target)' : ''}${del ? ' local deleted' : ''}`);
    });
    if (del) {
      fs.rmSync(abs, { force: true });
      this.st.deletedLocal++;
    }
  }

  private failed(row: SegmentRow, f: SyncFailure): void {
    if (this.closed) {
      // stopping: not the segment's fault; a later run sends it again (a re-PUT is safe)
      this.db.write(() => this.db.update(row.path, { state: 'closed' }));
      return;
    }
    this.st.failures++;
    this.st.lastError = f.message;
    if (f.code === 'SYNC_VERIFY') this.st.verifyFailures++;
    let scope = f.scope;
    let msg = f.message;
    if (f.cls === 'refused' && scope === 'object' && MAYBE_TARGET_WIDE.has(f.code)) {
      if (this.streak?.code !== f.code) this.streak = { code: f.code, paths: new Set() };
      this.streak.paths.add(row.path);
      if (this.streak.paths.size >= TARGET_WIDE_AFTER) {
        scope = 'target';
        msg = `every segment is refused (${this.streak.paths.size} different ones in a row): ${f.message}`;
      }
    }
    if (f.cls === 'network' || scope === 'target') {
      // not this segment's fault: it goes back to the queue as it was, the whole queue waits
      if (f.cls === 'network') {
        this.st.networkFailures++;
        this.st.targetState = 'unreachable';
      } else {
        this.st.targetRefusals++;
        this.st.targetState = 'refused';
      }
      this.st.targetError = msg;
      this.hold ??= scope === f.scope ? f : new SyncFailure(f.code, msg, f.cls, scope, f.context);
      this.db.write(() => this.db.update(row.path, { state: 'closed', last_error: msg }));
      if (f.cls === 'network') this.throttle.warn('sync-network', 'sync target unreachable: retrying', { target: this.st.where, err: msg });
      else this.throttle.error(`sync-refused:${f.code}`, 'sync target refuses uploads: fix the target config', { target: this.st.where, err: msg });
      return;
    }
    this.st.objectRefusals++;
    const attempts = row.attempts + 1;
    if (attempts >= this.cfg.maxAttempts) {
      this.st.quarantined++;
      this.db.write(() => {
        this.db.update(row.path, { state: 'quarantined', attempts, last_error: msg });
        this.db.event('quarantined', row.path, `after ${attempts} refusals: ${msg}`);
      });
      this.log.warn({ path: row.path, attempts, err: msg }, 'segment quarantined: not retried until asked');
      return;
    }
    const base = Math.min(this.cfg.retryMaxMs, this.cfg.retryInitialMs * 2 ** (attempts - 1));
    const delay = Math.max(1, Math.round(base * (1 - 0.5 * this.random())));
    this.st.retriesScheduled++;
    this.db.write(() => this.db.update(row.path, { state: 'closed', attempts, last_error: msg, next_attempt_ms: Date.now() + delay }));
    this.throttle.warn('sync-fail', 'segment refused by the target: retrying it later', { path: row.path, attempts, err: msg, retryInMs: delay });
  }

  /** Stop: abort what is in flight (its row goes back to closed). Idempotent, never throws. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.abort.abort();
    this.wake();
    try {
      await this.loop;
      await this.passRunning;
    } catch {
      /* aborted requests reject: expected */
    }
    try {
      await (await this.targetP?.catch(() => null))?.close();
    } catch {
      /* closing */
    }
  }
}
