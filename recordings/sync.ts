// Sync upstream: upload closed segments to a WebDAV-compatible HTTP(S) target, verify the stored
// copy (size + sha256 from a checksum header, else a GET of the copy), then mark synced and,
// when policy says so, delete the local file. Failures retry with capped jittered backoff; after
// maxAttempts a segment is quarantined (kept, reported, not retried until asked).
// A verified segment is never uploaded again: the state machine lives in the index, and a
// segment whose row was rebuilt is checked on the target (HEAD + verify) before any PUT.
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import tls from 'node:tls';
import { Backoff, EdgeError } from '../runtime/engine/api.js';
import { matchTrack, type SyncConfig } from './config.js';
import type { IndexDb, SegmentRow } from './index-db.js';
import { ThrottledLog, type RecLog } from './log.js';
import { TokenBucket } from './throttle.js';
import { hashedGet } from './verify-get.js';

export interface UploaderStats {
  uploads: number;
  uploadedBytes: number;
  verified: number;
  verifyFailures: number;
  alreadyOnTarget: number;
  failures: number;
  quarantined: number;
  deletedLocal: number;
  retriesScheduled: number;
  /** One segment in flight (the latest started); inFlightCount says how many. */
  inFlight: string | null;
  inFlightCount: number;
  pending: number;
  /** Wall time spent in PUTs and in verify GETs, summed over requests (they overlap when concurrency > 1). */
  putMs: number;
  verifyMs: number;
  verifiedBytesRead: number;
  /** Verify GETs that the raw reader handed to the http client (not a plain Content-Length body). */
  verifyFallbacks: number;
  lastError: string | null;
  lastSyncedAt: number | null;
}

interface Staged {
  row: SegmentRow;
  abs: string;
  url: URL;
  putHeaders: http.IncomingHttpHeaders | null;
  verified: boolean;
}

interface HttpResult {
  status: number;
  headers: http.IncomingHttpHeaders;
}

/** Directories known to exist on the target, so MKCOL runs once per folder; bounded (day folders grow). */
const MAX_KNOWN_DIRS = 4096;
/** Rows fetched per pass: a backlog of months is worked through in slices. */
const BATCH = 200;
/** Read/write unit of an upload; 256 KB keeps a buffer warm in cache while a syscall still moves a lot. */
const CHUNK = 256 * 1024;
/** Buffers per upload in rotation: one being read into while the other is in the socket. */
const BUFS_PER_PUT = 2;
const MAX_POOLED_BUFS = 16;

export function redactedUrl(u: string): string {
  try {
    const x = new URL(u);
    x.username = '';
    x.password = '';
    x.search = '';
    return x.toString();
  } catch {
    return '<bad url>';
  }
}

export class Uploader {
  private readonly base: URL;
  private readonly agent: http.Agent;
  private readonly authHeader: string | undefined;
  private readonly knownDirs = new Set<string>();
  private readonly backoff: Backoff;
  private readonly throttle: ThrottledLog;
  private readonly st: UploaderStats = {
    uploads: 0,
    uploadedBytes: 0,
    verified: 0,
    verifyFailures: 0,
    alreadyOnTarget: 0,
    failures: 0,
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
  private loop: Promise<void> | null = null;
  private wakeUp: (() => void) | null = null;
  private readonly abort = new AbortController();
  private closed = false;
  private passRunning: Promise<number> | null = null;
  private bucket: TokenBucket | null = null;
  /** Upload buffers reused across PUTs (bounded by MAX_POOLED_BUFS). */
  private readonly bufPool: Buffer[] = [];

  constructor(
    private readonly cfg: SyncConfig,
    private readonly root: string,
    private readonly db: IndexDb,
    private readonly log: RecLog,
    private readonly random: () => number = Math.random,
  ) {
    this.base = new URL(cfg.url.endsWith('/') ? cfg.url : `${cfg.url}/`);
    // a socket per worker plus one: a worker's PUT and the previous verify never wait on each other
    const agentOpts: https.AgentOptions = { keepAlive: true, maxSockets: cfg.concurrency + 1, scheduling: 'lifo' };
    if (this.base.protocol === 'https:' && cfg.caFile) {
      agentOpts.ca = [...tls.rootCertificates, fs.readFileSync(cfg.caFile, 'utf8')];
    }
    this.agent = this.base.protocol === 'https:' ? new https.Agent(agentOpts) : new http.Agent(agentOpts);
    const a = cfg.auth;
    if (a.type === 'basic') this.authHeader = `Basic ${Buffer.from(`${a.username}:${a.password}`).toString('base64')}`;
    else if (a.type === 'bearer') this.authHeader = `Bearer ${a.token}`;
    else if (this.base.username) {
      this.authHeader = `Basic ${Buffer.from(`${decodeURIComponent(this.base.username)}:${decodeURIComponent(this.base.password)}`).toString('base64')}`;
    }
    this.base.username = '';
    this.base.password = '';
    this.backoff = new Backoff({ initialMs: cfg.retryInitialMs, maxMs: cfg.retryMaxMs, random: this.random });
    this.throttle = new ThrottledLog(log);
  }

  stats(): UploaderStats {
    return { ...this.st };
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

  private async runLoop(): Promise<void> {
    while (!this.closed) {
      let failed = 0;
      try {
        failed = await this.runOnce();
      } catch (err) {
        failed = 1;
        this.st.lastError = (err as Error).message;
      }
      if (this.closed) break;
      if (failed > 0) await this.sleep(this.backoff.next(Date.now()));
      else {
        this.backoff.reset();
        await this.sleep(Math.min(this.cfg.pollMs, this.nextDueIn()));
      }
    }
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
   * doing PUT then verify (GET), so the verify of N runs while N+1 is sent and a second PUT hides
   * the per-request round trips. A failure stops handing out new segments; those in flight finish.
   */
  private async pass(): Promise<number> {
    let failures = 0;
    for (;;) {
      const rows = this.due();
      this.st.pending = rows.length;
      if (rows.length === 0 || this.closed) return failures;
      let next = 0;
      const worker = async () => {
        while (!this.closed && failures === 0 && next < rows.length) {
          const row = rows[next++]!;
          this.st.pending = rows.length - next;
          if (!(await this.syncOne(row))) failures++;
        }
      };
      await Promise.all(Array.from({ length: Math.min(this.cfg.concurrency, rows.length) }, worker));
      if (failures > 0 || this.closed) return failures;
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

  private url(rel: string): URL {
    return new URL(rel.split('/').map(encodeURIComponent).join('/'), this.base);
  }

  private request(method: string, url: URL, opts: { headers?: Record<string, string | number>; body?: (req: http.ClientRequest) => Promise<void>; sink?: (chunk: Buffer) => void } = {}): Promise<HttpResult> {
    return new Promise<HttpResult>((resolve, reject) => {
      const headers: Record<string, string | number> = { ...opts.headers };
      if (this.authHeader) headers.authorization = this.authHeader;
      const mod = url.protocol === 'https:' ? https : http;
      const req = mod.request(url, { method, headers, agent: this.agent, signal: this.abort.signal });
      req.setTimeout(this.cfg.timeoutMs, () => req.destroy(new EdgeError('SYNC_TIMEOUT', `${method} timed out`, { url: redactedUrl(url.toString()) })));
      req.on('error', reject);
      req.on('response', (res) => {
        res.on('data', (c: Buffer) => opts.sink?.(c));
        res.on('error', reject);
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers }));
      });
      if (opts.body) opts.body(req).then(() => req.end(), (err) => req.destroy(err as Error));
      else req.end();
    });
  }

  /**
   * MKCOL every folder from the host root down to the segment's day folder, once per run.
   * Only needed when a PUT says the parent is missing (nginx's create_full_put_path never does).
   */
  private async ensureDirs(rel: string): Promise<void> {
    const baseParts = this.base.pathname.split('/').filter(Boolean).map(decodeURIComponent);
    const relParts = rel.split('/').slice(0, -1);
    const all = [...baseParts, ...relParts];
    for (let i = 1; i <= all.length; i++) {
      const dir = all.slice(0, i).join('/');
      if (this.knownDirs.has(dir)) continue;
      const u = new URL(`/${all.slice(0, i).map(encodeURIComponent).join('/')}/`, this.base);
      const r = await this.request('MKCOL', u);
      // 201 created; 405 exists; 301 nginx redirect to the slash form of an existing folder.
      // Above the base, a folder we may not create (403) can still exist: the PUT decides.
      const ok = r.status === 201 || r.status === 405 || r.status === 301 || r.status === 200 || (i <= baseParts.length && r.status !== 409);
      if (!ok) throw new EdgeError('SYNC_MKCOL', `MKCOL ${dir} → ${r.status}`, { status: r.status });
      if (this.knownDirs.size >= MAX_KNOWN_DIRS) this.knownDirs.clear();
      this.knownDirs.add(dir);
    }
  }

  private async put(row: SegmentRow, abs: string, url: URL): Promise<HttpResult> {
    const rate = this.cfg.bandwidthBytesPerSec;
    // under a cap, small reads (1/8 s of budget) keep the pace smooth instead of bursty
    const chunk = rate > 0 ? Math.min(CHUNK, Math.max(4096, Math.floor(rate / 8))) : CHUNK;
    // one bucket for the uploader's life: a new file must not start with a fresh burst
    if (rate > 0) this.bucket ??= new TokenBucket(rate, chunk, Date.now());
    const bucket = this.bucket;
    return this.request('PUT', url, {
      headers: { 'content-length': row.bytes, 'content-type': row.kind === 'video' ? 'video/mp4' : 'application/octet-stream' },
      body: (req) => this.sendFile(req, abs, row.bytes, chunk, bucket),
    });
  }

  /**
   * The file's first `bytes` into the request through BUFS_PER_PUT reused buffers: a buffer is read
   * into again only once the socket took its previous chunk (the write callback). Fresh 1 MB
   * buffers per read (what a read stream does) cost page faults and zeroing on every chunk: on
   * loopback that was most of the uploader's CPU. Memory: concurrency × BUFS_PER_PUT × CHUNK.
   */
  private async sendFile(req: http.ClientRequest, abs: string, bytes: number, chunk: number, bucket: TokenBucket | null): Promise<void> {
    const bufs = this.bufPool.splice(0, BUFS_PER_PUT);
    while (bufs.length < BUFS_PER_PUT) bufs.push(Buffer.allocUnsafeSlow(CHUNK));
    // a request that closes (abort, timeout, cut) may never call a write's callback: race it
    let onClose!: () => void;
    const closed = new Promise<never>((_, reject) => {
      onClose = () => reject(new EdgeError('SYNC_ABORTED', 'request closed during upload'));
      req.once('close', onClose);
    });
    closed.catch(() => {});
    const writes: Array<Promise<void> | undefined> = new Array(BUFS_PER_PUT);
    let drained = false;
    try {
      const fh = await fs.promises.open(abs, 'r');
      try {
        let pos = 0;
        for (let i = 0; pos < bytes; i++) {
          const slot = i % BUFS_PER_PUT;
          if (writes[slot]) await Promise.race([writes[slot], closed]);
          const buf = bufs[slot]!;
          const { bytesRead } = await fh.read(buf, 0, Math.min(chunk, bytes - pos), pos);
          if (bytesRead === 0) throw new EdgeError('SYNC_SHORT_READ', `file ended at ${pos} of ${bytes} bytes`);
          pos += bytesRead;
          if (bucket) {
            const wait = bucket.take(bytesRead, Date.now());
            if (wait > 0) await Promise.race([new Promise((r) => setTimeout(r, wait)), closed]);
          }
          if (req.destroyed) throw new EdgeError('SYNC_ABORTED', 'request closed during upload');
          const part = buf.subarray(0, bytesRead);
          const w = new Promise<void>((resolve, reject) => req.write(part, (err) => (err ? reject(err) : resolve())));
          // observed later (or never, when the upload fails first): never an unhandled rejection
          w.catch(() => {});
          writes[slot] = w;
        }
        for (const w of writes) if (w) await Promise.race([w, closed]);
        drained = true;
      } finally {
        await fh.close().catch(() => {});
      }
    } finally {
      req.off('close', onClose);
      // only buffers whose every write completed go back: a pending one may still be read by the socket
      if (drained && this.bufPool.length < MAX_POOLED_BUFS) this.bufPool.push(...bufs);
    }
  }

  /** Size + sha256 of the target's copy: from a checksum header when given, else by a GET. */
  protected async verify(row: SegmentRow, url: URL, putHeaders?: http.IncomingHttpHeaders): Promise<string | null> {
    const fromHeader = putHeaders ? checksumHeader(putHeaders) : null;
    if (fromHeader) return fromHeader === row.sha256 ? null : `checksum header ${fromHeader} ≠ ${row.sha256}`;
    const compare = (status: number, size: number, sha: string | null): string | null => {
      if (status !== 200) return `GET for verify → ${status}`;
      if (size !== row.bytes) return `target holds ${size} bytes, expected ${row.bytes}`;
      if (sha !== row.sha256) return `target sha256 ${String(sha).slice(0, 12)}… ≠ local ${String(row.sha256).slice(0, 12)}…`;
      return null;
    };
    if (url.protocol === 'http:') {
      // plain http: hashed from one reused buffer (see verify-get.ts); else the http client below
      const buf = this.bufPool.pop() ?? Buffer.allocUnsafeSlow(CHUNK);
      const t0 = performance.now();
      try {
        const r = await hashedGet(url, {
          headers: this.authHeader ? { authorization: this.authHeader } : {},
          buffer: buf,
          timeoutMs: this.cfg.timeoutMs,
          signal: this.abort.signal,
          maxBody: row.bytes,
        });
        if (r !== 'fallback') {
          this.st.verifyMs += performance.now() - t0;
          this.st.verifiedBytesRead += r.size;
          return compare(r.status, r.size, r.sha256);
        }
        this.st.verifyFallbacks++;
      } finally {
        // settled: the socket is destroyed, no read lands in the buffer any more
        if (this.bufPool.length < MAX_POOLED_BUFS) this.bufPool.push(buf);
      }
    }
    const h = crypto.createHash('sha256');
    let size = 0;
    const t0 = performance.now();
    // each chunk goes to the hash as received (no concatenation); a body longer than the
    // segment is already a mismatch, so hashing stops there (a hostile target cannot make us work forever)
    const r = await this.request('GET', url, {
      sink: (c) => {
        size += c.length;
        if (size <= row.bytes) h.update(c);
      },
    });
    this.st.verifyMs += performance.now() - t0;
    this.st.verifiedBytesRead += size;
    return compare(r.status, size, size <= row.bytes ? h.digest('hex') : null);
  }

  /** Upload + verify one segment. true when synced (or nothing to do). */
  async syncOne(row: SegmentRow): Promise<boolean> {
    const staged = await this.send(row);
    return staged ? this.settle(staged) : false;
  }

  /** Stage 1: PUT (or find the identical copy already on the target). null on failure (recorded). */
  private async send(row: SegmentRow): Promise<Staged | null> {
    const abs = path.join(this.root, row.path);
    const url = this.url(row.path);
    this.st.inFlight = row.path;
    this.st.inFlightCount++;
    try {
      if (!row.sha256) throw new EdgeError('SYNC_NO_HASH', 'segment has no sha256 yet');
      const size = fs.statSync(abs).size;
      if (size !== row.bytes) throw new EdgeError('SYNC_SIZE', `local file is ${size} bytes, index says ${row.bytes}`);
      // queued, not committed on its own: it lands with the next flush (the service's 1 s timer,
      // so a long upload shows) or with this segment's synced/failed write — one commit per segment
      // Only a row still 'closed' becomes 'uploading': a queued mark that lands late
      // (its flush failed once) must never turn a synced row back.
      this.db.enqueue(() => this.db.db.prepare("UPDATE segments SET state='uploading' WHERE path=? AND state='closed'").run(row.path));
      // Rebuilt or retried rows may already be on the target: check before sending again.
      if (row.origin !== 'recorder' || row.attempts > 0) {
        const head = await this.request('HEAD', url);
        if (head.status === 200 && Number(head.headers['content-length']) === row.bytes && (await this.verify(row, url)) === null) {
          this.st.alreadyOnTarget++;
          return { row, abs, url, putHeaders: null, verified: true };
        }
      }
      const t0 = performance.now();
      let r = await this.put(row, abs, url);
      const dayDir = [...this.base.pathname.split('/').filter(Boolean).map(decodeURIComponent), ...row.path.split('/').slice(0, -1)].join('/');
      if ((r.status === 409 || r.status === 404 || r.status === 500) && !this.knownDirs.has(dayDir)) {
        // the parent folder is missing on a plain WebDAV target (409; nginx without
        // create_full_put_path says 500): create the folders, send again
        await this.ensureDirs(row.path);
        r = await this.put(row, abs, url);
      }
      this.st.putMs += performance.now() - t0;
      if (r.status === 401 || r.status === 403) throw new EdgeError('SYNC_AUTH', `PUT refused: ${r.status}`, { status: r.status });
      if (r.status < 200 || r.status >= 300) throw new EdgeError('SYNC_PUT', `PUT → ${r.status}`, { status: r.status });
      this.st.uploads++;
      this.st.uploadedBytes += row.bytes;
      return { row, abs, url, putHeaders: r.headers, verified: false };
    } catch (err) {
      this.failOrReset(row, err as Error);
      return null;
    } finally {
      this.st.inFlightCount--;
      if (this.st.inFlight === row.path) this.st.inFlight = null;
    }
  }

  /** Stage 2: verify the stored copy, then mark synced (and delete locally when policy says so). */
  private async settle(s: Staged): Promise<boolean> {
    const { row, abs } = s;
    try {
      if (!s.verified) {
        const bad = await this.verify(row, s.url, s.putHeaders ?? undefined);
        if (bad) {
          this.st.verifyFailures++;
          throw new EdgeError('SYNC_VERIFY', bad);
        }
      }
      this.st.verified++;
      this.st.lastSyncedAt = Date.now();
      const del = this.cfg.deleteAfterVerify;
      this.db.write(() => {
        this.db.update(row.path, { state: 'synced', synced_ms: Date.now(), last_error: null, present: del ? 0 : 1 });
        this.db.event('synced', row.path, `bytes=${row.bytes}${del ? ' local deleted' : ''}`);
      });
      if (del) {
        fs.rmSync(abs, { force: true });
        this.st.deletedLocal++;
      }
      return true;
    } catch (err) {
      this.failOrReset(row, err as Error);
      return false;
    }
  }

  private failOrReset(row: SegmentRow, err: Error): void {
    if (this.closed) {
      // stopping: not the segment's fault; a later run sends it again (a re-PUT is safe)
      this.db.write(() => this.db.update(row.path, { state: 'closed' }));
      return;
    }
    this.fail(row, err);
  }

  private fail(row: SegmentRow, err: Error): void {
    this.st.failures++;
    const attempts = row.attempts + 1;
    const msg = err instanceof EdgeError ? err.message : `${(err as NodeJS.ErrnoException).code ?? 'ERR'}: ${err.message}`;
    this.st.lastError = msg;
    if (attempts >= this.cfg.maxAttempts) {
      this.st.quarantined++;
      this.db.write(() => {
        this.db.update(row.path, { state: 'quarantined', attempts, last_error: msg });
        this.db.event('quarantined', row.path, `after ${attempts} attempts: ${msg}`);
      });
      this.log.warn({ path: row.path, attempts, err: msg }, 'segment quarantined: not retried until asked');
      return;
    }
    const base = Math.min(this.cfg.retryMaxMs, this.cfg.retryInitialMs * 2 ** (attempts - 1));
    const delay = Math.max(1, Math.round(base * (1 - 0.5 * this.random())));
    this.st.retriesScheduled++;
    this.db.write(() => this.db.update(row.path, { state: 'closed', attempts, last_error: msg, next_attempt_ms: Date.now() + delay }));
    this.throttle.warn('sync-fail', 'segment upload failed', { path: row.path, attempts, err: msg, retryInMs: delay });
  }

  /** Stop: abort the request in flight (its row goes back to closed). Idempotent, never throws. */
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
    this.agent.destroy();
  }
}

/** sha256 of the stored copy when the target reports one: Repr-Digest / Digest / OC-Checksum / X-Checksum-Sha256. */
export function checksumHeader(h: http.IncomingHttpHeaders): string | null {
  const one = (v: string | string[] | undefined) => (Array.isArray(v) ? v[0] : v);
  const x = one(h['x-checksum-sha256']);
  if (x && /^[0-9a-f]{64}$/i.test(x)) return x.toLowerCase();
  const oc = one(h['oc-checksum']);
  const ocm = oc ? /SHA256:([0-9a-f]{64})/i.exec(oc) : null;
  if (ocm) return ocm[1]!.toLowerCase();
  for (const name of ['repr-digest', 'digest']) {
    const v = one(h[name]);
    const m = v ? /sha-256=:?([A-Za-z0-9+/=]{44}):?/i.exec(v) : null;
    if (m) return Buffer.from(m[1]!, 'base64').toString('hex');
  }
  return null;
}
