// WebDAV-compatible HTTP(S) target: PUT each segment to `<url>/<relative path>`, then prove the
// stored copy: size + sha256 from a checksum header the server computed (OC-Checksum, Digest,
// Repr-Digest, X-Checksum-Sha256) when it sends one, else a GET of the copy hashed as it arrives.
//
// A refused upload does not send its body (issue 15): every PUT goes out with
// `Expect: 100-continue` and its headers alone; the body follows the server's 100 (or, for a server
// that ignores Expect, after EXPECT_CONTINUE_MS), and an answer that arrives first — 401, 403,
// 507 — ends the request without it. An answer that arrives mid-body stops the body there.
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import tls from 'node:tls';
import { EdgeError, httpFailureClass } from '../../runtime/engine/api.js';
import type { WebdavTargetConfig } from '../config.js';
import { hashedGet } from '../verify-get.js';
import { asSyncFailure, CHUNK, localFailure, SyncFailure, type SyncJob, type SyncOutcome, type SyncTarget, type TargetContext } from './target.js';

interface HttpResult {
  status: number;
  headers: http.IncomingHttpHeaders;
  /** Body bytes written before the answer came (an early answer stops the body). */
  bodyBytes: number;
}

/** Directories known to exist on the target, so MKCOL runs once per folder; bounded (day folders grow). */
const MAX_KNOWN_DIRS = 4096;
/** Buffers per upload in rotation: one being read into while the other is in the socket. */
const BUFS_PER_PUT = 2;
const MAX_POOLED_BUFS = 16;
/** Wait this long for a 100 Continue before sending the body anyway (curl's default: 1 s). */
export const EXPECT_CONTINUE_MS = 1000;

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

/** The failure a non-2xx answer of a WebDAV target means, with what to fix. */
export function webdavStatusFailure(method: string, status: number): SyncFailure {
  const ctx = { status };
  if (status === 401) {
    return new SyncFailure('SYNC_AUTH', `${method} refused: 401 — the target wants credentials or refuses the ones given (recordings.sync.target.auth)`, 'refused', 'target', ctx);
  }
  if (status === 507) return new SyncFailure('SYNC_TARGET_FULL', `${method} refused: 507 Insufficient Storage — the target's disk or quota is full`, 'refused', 'target', ctx);
  if (status === 403) return new SyncFailure('SYNC_FORBIDDEN', `${method} refused: 403 — the target forbids writing this path`, 'refused', 'object', ctx);
  // 429 Too Many Requests: the server is alive and says "later" — no refusal of this object
  if (status === 429 || httpFailureClass(status) === 'network') return new SyncFailure('SYNC_HTTP', `${method} → ${status}`, 'network', 'target', ctx);
  return new SyncFailure('SYNC_PUT', `${method} → ${status}`, 'refused', 'object', ctx);
}

export class WebdavTarget implements SyncTarget {
  readonly kind = 'webdav' as const;
  readonly where: string;
  private readonly base: URL;
  private readonly agent: http.Agent;
  private readonly authHeader: string | undefined;
  private readonly knownDirs = new Set<string>();
  /** Upload buffers reused across PUTs (bounded by MAX_POOLED_BUFS). */
  private readonly bufPool: Buffer[] = [];
  private readonly st = { puts: 0, expectContinueRefusals: 0, bodyBytesOnRefusal: 0, earlyAnswers: 0, mkcols: 0, checksumHeaders: 0 };

  constructor(
    cfg: WebdavTargetConfig,
    private readonly ctx: TargetContext,
  ) {
    this.base = new URL(cfg.url.endsWith('/') ? cfg.url : `${cfg.url}/`);
    // a socket per worker plus one: a worker's PUT and the previous verify never wait on each other
    const agentOpts: https.AgentOptions = { keepAlive: true, maxSockets: ctx.concurrency + 1, scheduling: 'lifo' };
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
    this.where = redactedUrl(this.base.toString());
  }

  stats(): Record<string, number> {
    return { ...this.st };
  }

  private url(rel: string): URL {
    return new URL(rel.split('/').map(encodeURIComponent).join('/'), this.base);
  }

  async sync(job: SyncJob): Promise<SyncOutcome> {
    const { row } = job;
    const url = this.url(row.path);
    try {
      // Rebuilt or retried rows may already be on the target: check before sending again.
      if (job.checkFirst) {
        const head = await this.request('HEAD', url);
        if (head.status === 200 && Number(head.headers['content-length']) === row.bytes && (await this.verify(job, url)) === null) {
          return { verifiedBy: 'get', alreadyOnTarget: true };
        }
      }
      const t0 = performance.now();
      let r = await this.put(job, url);
      const dayDir = [...this.base.pathname.split('/').filter(Boolean).map(decodeURIComponent), ...row.path.split('/').slice(0, -1)].join('/');
      if ((r.status === 409 || r.status === 404 || r.status === 500) && !this.knownDirs.has(dayDir)) {
        // the parent folder is missing on a plain WebDAV target (409; nginx without
        // create_full_put_path says 500): create the folders, send again
        await this.ensureDirs(row.path);
        r = await this.put(job, url);
      }
      this.ctx.timed('putMs', performance.now() - t0);
      if (r.status < 200 || r.status >= 300) throw webdavStatusFailure('PUT', r.status);
      const fromHeader = checksumHeader(r.headers);
      if (fromHeader) this.st.checksumHeaders++;
      const bad = await this.verify(job, url, fromHeader);
      if (bad) throw new SyncFailure('SYNC_VERIFY', bad, 'refused', 'object');
      return { verifiedBy: fromHeader ? 'checksum' : 'get', alreadyOnTarget: false };
    } catch (err) {
      throw asSyncFailure(err);
    }
  }

  private request(
    method: string,
    url: URL,
    opts: { headers?: Record<string, string | number>; body?: (req: http.ClientRequest, answered: () => boolean) => Promise<number>; sink?: (chunk: Buffer) => void } = {},
  ): Promise<HttpResult> {
    return new Promise<HttpResult>((resolve, reject) => {
      const headers: Record<string, string | number> = { ...opts.headers };
      if (this.authHeader) headers.authorization = this.authHeader;
      if (opts.body) headers.expect = '100-continue';
      const mod = url.protocol === 'https:' ? https : http;
      const req = mod.request(url, { method, headers, agent: this.agent, signal: this.ctx.signal });
      req.setTimeout(this.ctx.timeoutMs, () => req.destroy(new EdgeError('SYNC_TIMEOUT', `${method} timed out`, { url: redactedUrl(url.toString()) })));
      let answered = false;
      let bodyDone = !opts.body;
      let bodyBytes = 0;
      let continueTimer: NodeJS.Timeout | null = null;
      req.on('error', (err) => {
        if (continueTimer) clearTimeout(continueTimer);
        reject(err);
      });
      req.on('response', (res) => {
        answered = true;
        if (continueTimer) clearTimeout(continueTimer);
        res.on('data', (c: Buffer) => opts.sink?.(c));
        res.on('error', reject);
        res.on('end', () => {
          // an answer before the whole body: this connection is mid-request, never reuse it
          if (!bodyDone) {
            this.st.earlyAnswers++;
            req.destroy();
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, bodyBytes });
        });
      });
      if (!opts.body) {
        req.end();
        return;
      }
      const body = opts.body;
      let started = false;
      const start = () => {
        if (started || answered || req.destroyed) return;
        started = true;
        if (continueTimer) clearTimeout(continueTimer);
        body(req, () => answered).then(
          (n) => {
            bodyBytes = n;
            if (answered) return; // stopped early: the response handler closes the request
            bodyDone = true;
            req.end();
          },
          (err) => req.destroy(err as Error),
        );
      };
      req.on('continue', start);
      // a server that ignores Expect waits for the body: send it after a short wait
      continueTimer = setTimeout(start, EXPECT_CONTINUE_MS);
      req.flushHeaders();
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
      this.st.mkcols++;
      // 201 created; 405 exists; 301 nginx redirect to the slash form of an existing folder.
      // Above the base, a folder we may not create (403) can still exist: the PUT decides.
      const ok = r.status === 201 || r.status === 405 || r.status === 301 || r.status === 200 || (i <= baseParts.length && r.status !== 409);
      if (!ok) throw webdavStatusFailure(`MKCOL ${dir}`, r.status);
      if (this.knownDirs.size >= MAX_KNOWN_DIRS) this.knownDirs.clear();
      this.knownDirs.add(dir);
    }
  }

  private async put(job: SyncJob, url: URL): Promise<HttpResult> {
    const { row } = job;
    this.st.puts++;
    const r = await this.request('PUT', url, {
      headers: { 'content-length': row.bytes, 'content-type': row.kind === 'video' ? 'video/mp4' : 'application/octet-stream' },
      body: (req, answered) => this.sendFile(req, job.abs, row.bytes, answered),
    });
    if (r.status < 200 || r.status >= 300) {
      if (r.bodyBytes === 0) this.st.expectContinueRefusals++;
      this.st.bodyBytesOnRefusal += r.bodyBytes;
    }
    return r;
  }

  /**
   * The file's first `bytes` into the request through BUFS_PER_PUT reused buffers: a buffer is read
   * into again only once the socket took its previous chunk (the write callback). Fresh 1 MB
   * buffers per read (what a read stream does) cost page faults and zeroing on every chunk: on
   * loopback that was most of the uploader's CPU. Memory: concurrency × BUFS_PER_PUT × CHUNK.
   * Stops (returns the bytes written so far) as soon as the server answered.
   */
  private async sendFile(req: http.ClientRequest, abs: string, bytes: number, answered: () => boolean): Promise<number> {
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
    let pos = 0;
    try {
      let fh: fs.promises.FileHandle;
      try {
        fh = await fs.promises.open(abs, 'r');
      } catch (err) {
        throw localFailure('SYNC_LOCAL', `cannot read the segment: ${(err as Error).message}`);
      }
      try {
        for (let i = 0; pos < bytes; i++) {
          const slot = i % BUFS_PER_PUT;
          if (writes[slot]) await Promise.race([writes[slot], closed]);
          if (answered()) break;
          const buf = bufs[slot]!;
          const chunk = this.ctx.pacer.chunk();
          await this.ctx.pacer.take(Math.min(chunk, bytes - pos), this.ctx.signal);
          if (answered()) break;
          const { bytesRead } = await fh.read(buf, 0, Math.min(chunk, bytes - pos), pos);
          if (bytesRead === 0) throw localFailure('SYNC_SHORT_READ', `file ended at ${pos} of ${bytes} bytes`);
          pos += bytesRead;
          if (req.destroyed) throw new EdgeError('SYNC_ABORTED', 'request closed during upload');
          const part = buf.subarray(0, bytesRead);
          this.ctx.sent(bytesRead);
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
    return pos;
  }

  /** null when the stored copy has the segment's size and sha256 (from the checksum header, else a GET); else what differs. */
  private async verify(job: SyncJob, url: URL, fromHeader?: string | null): Promise<string | null> {
    const { row } = job;
    if (fromHeader) return fromHeader === row.sha256 ? null : `checksum header ${fromHeader} ≠ ${row.sha256}`;
    const compare = (status: number, size: number, sha: string | null): string | null => {
      if (status !== 200) return `GET for verify → ${status}`;
      if (size !== row.bytes) return `target holds ${size} bytes, expected ${row.bytes}`;
      if (sha !== row.sha256) return `target sha256 ${String(sha).slice(0, 12)}… ≠ local ${String(row.sha256).slice(0, 12)}…`;
      return null;
    };
    const t0 = performance.now();
    if (url.protocol === 'http:') {
      // plain http: hashed from one reused buffer (see verify-get.ts); else the http client below
      const buf = this.bufPool.pop() ?? Buffer.allocUnsafeSlow(CHUNK);
      try {
        const r = await hashedGet(url, {
          headers: this.authHeader ? { authorization: this.authHeader } : {},
          buffer: buf,
          timeoutMs: this.ctx.timeoutMs,
          signal: this.ctx.signal,
          maxBody: row.bytes,
        });
        if (r !== 'fallback') {
          this.ctx.timed('verifyMs', performance.now() - t0);
          this.ctx.readBack(r.size, false);
          if (r.status !== 200 && r.status !== 404) throw webdavStatusFailure('GET', r.status);
          return compare(r.status, r.size, r.sha256);
        }
      } finally {
        // settled: the socket is destroyed, no read lands in the buffer any more
        if (this.bufPool.length < MAX_POOLED_BUFS) this.bufPool.push(buf);
      }
    }
    const h = crypto.createHash('sha256');
    let size = 0;
    // each chunk goes to the hash as received (no concatenation); a body longer than the
    // segment is already a mismatch, so hashing stops there (a hostile target cannot make us work forever)
    const r = await this.request('GET', url, {
      sink: (c) => {
        size += c.length;
        if (size <= row.bytes) h.update(c);
      },
    });
    this.ctx.timed('verifyMs', performance.now() - t0);
    this.ctx.readBack(size, url.protocol === 'http:');
    if (r.status !== 200 && r.status !== 404) throw webdavStatusFailure('GET', r.status);
    return compare(r.status, size, size <= row.bytes ? h.digest('hex') : null);
  }

  async close(): Promise<void> {
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
