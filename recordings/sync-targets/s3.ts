// S3-compatible target (AWS S3, MinIO, Ceph RGW, Cloudflare R2, Backblaze B2, Garage) through
// @aws-sdk/client-s3, loaded by dynamic import only when a target of this kind is configured: a
// runtime without one never loads the SDK (~19 MB RSS measured here; see README "Sync to S3").
//
// Verification without a second download:
// - every body goes up with its SHA-256 (x-amz-checksum-sha256: the segment's for a single PUT, each
//   part's for multipart), so a server that checks it refuses a corrupted body (400 BadDigest);
// - the MD5 of what was read from disk is compared with the ETag the server answers (the MD5 of
//   what it stored, for a single PUT and for each part, unless SSE-KMS), so corruption on the way is
//   caught also by servers that ignore the checksum header (s3rver does);
// - a HEAD (x-amz-checksum-mode: ENABLED) then confirms size and the stored checksum (or the ETag);
//   only a target that shows neither is read back in full (GetObject), counted as `get`.
//
// Multipart (segments ≥ multipart.thresholdBytes): parts are streamed from disk (hashed in a first
// pass over the range, then sent), one at a time per segment: memory stays at a few 256 KB buffers
// per upload in flight, far under concurrency × partSize. Upload id and every acknowledged part are
// committed to the index as they happen, so a restart (or kill -9) resumes at the first missing
// part. Unfinished uploads nobody needs any more are aborted by housekeeping().
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import tls from 'node:tls';
import type * as S3 from '@aws-sdk/client-s3';
import type { S3TargetConfig } from '../config.js';
import { bareEtag, compositeSha256, MultipartState, multipartEtag, partPlan, type MultipartRow, type PartRow } from './multipart-state.js';
import { s3Failure, type S3ErrorFacts } from './s3-errors.js';
import { FileRangeStream, hashRange, localFailure, SyncFailure, type SyncJob, type SyncOutcome, type SyncTarget, type TargetContext, type VerifiedBy } from './target.js';

type S3Module = typeof S3;

/** A part whose ETag shows it arrived corrupted is sent again at once, this many times at most. */
const PART_RESENDS = 2;
/** Pages of ListMultipartUploads read per sweep (1000 uploads each). */
const MAX_SWEEP_PAGES = 10;

interface Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

/** The static credentials of the config (secret from the file when so configured). */
function staticCredentials(c: NonNullable<S3TargetConfig['credentials']>): Credentials | null {
  if (!('accessKeyId' in c)) return null;
  const secret = c.secretAccessKey ?? fs.readFileSync(c.secretAccessKeyFile!, 'utf8').replace(/\r?\n$/, '');
  if (!secret) throw new SyncFailure('S3_NO_CREDENTIALS', `secretAccessKeyFile ${c.secretAccessKeyFile} is empty`, 'refused', 'target');
  return { accessKeyId: c.accessKeyId, secretAccessKey: secret, ...(c.sessionToken ? { sessionToken: c.sessionToken } : {}) };
}

/** `{hostname}` in the prefix → this robot's host name (safe key characters only). */
export function expandPrefix(prefix: string, hostname = os.hostname()): string {
  const host = hostname.replace(/[^A-Za-z0-9._-]/g, '-') || 'robot';
  return prefix.replaceAll('{hostname}', host);
}

/** Load the SDK and build the target. The only place that imports @aws-sdk at run time. */
export async function createS3Target(cfg: S3TargetConfig, ctx: TargetContext): Promise<S3Target> {
  const mod: S3Module = await import('@aws-sdk/client-s3');
  let credentials: S3.S3ClientConfig['credentials'];
  let secrets: string[] = [];
  if (cfg.credentials) {
    const fixed = staticCredentials(cfg.credentials);
    if (fixed) {
      credentials = fixed;
      secrets = [fixed.secretAccessKey, fixed.sessionToken ?? ''].filter((s) => s.length >= 4);
    } else if ('profile' in cfg.credentials) {
      const { fromIni } = await import('@aws-sdk/credential-provider-ini');
      credentials = fromIni({ profile: cfg.credentials.profile, ...(cfg.credentials.file ? { filepath: cfg.credentials.file } : {}) });
    }
  }
  return new S3Target(cfg, ctx, mod, credentials, secrets);
}

export class S3Target implements SyncTarget {
  readonly kind = 's3' as const;
  readonly where: string;
  private readonly client: S3.S3Client;
  private readonly bucket: string;
  private readonly prefix: string;
  private readonly endpoint: string;
  /** Identity of this target in the multipart table. */
  private readonly id: string;
  private readonly state: MultipartState;
  private readonly agents: http.Agent[];
  private readonly etagIsMd5: boolean;
  private listUnsupported = false;
  private abortUnsupported = false;
  private readonly st = {
    puts: 0,
    multipartStarted: 0,
    multipartResumed: 0,
    multipartCompleted: 0,
    partsUploaded: 0,
    /** Parts found done in the index after a restart and not sent again. */
    partsSkipped: 0,
    /** Parts whose ETag showed other bytes than were sent: sent again. */
    partsResent: 0,
    staleAborted: 0,
    orphansAborted: 0,
    /** Bytes hashed locally for a HEAD check (whole-object MD5 for servers that answer one). */
    localHashBytes: 0,
  };
  /** true once the target returned a stored SHA-256 on HEAD: MD5s are no longer needed for it. */
  private serverChecksums: boolean | null = null;

  constructor(
    private readonly cfg: S3TargetConfig,
    private readonly ctx: TargetContext,
    private readonly mod: S3Module,
    credentials: S3.S3ClientConfig['credentials'],
    private readonly secrets: string[],
  ) {
    this.bucket = cfg.bucket;
    this.prefix = expandPrefix(cfg.prefix);
    this.endpoint = cfg.endpoint ?? `https://s3.${cfg.region}.amazonaws.com`;
    this.id = `${this.endpoint}|${cfg.bucket}`;
    this.where = `s3://${cfg.bucket}/${this.prefix} at ${this.endpoint} (${cfg.region})`;
    this.state = new MultipartState(ctx.db);
    // SSE-KMS objects have an ETag that is not their MD5
    this.etagIsMd5 = !cfg.serverSideEncryption?.startsWith('aws:kms');
    const agentOpts: https.AgentOptions = { keepAlive: true, maxSockets: ctx.concurrency + 1, scheduling: 'lifo' };
    if (cfg.caFile) agentOpts.ca = [...tls.rootCertificates, fs.readFileSync(cfg.caFile, 'utf8')];
    const httpAgent = new http.Agent(agentOpts);
    const httpsAgent = new https.Agent(agentOpts);
    this.agents = [httpAgent, httpsAgent];
    const pathStyle = cfg.addressing === 'path' || (cfg.addressing === 'auto' && cfg.endpoint !== undefined);
    this.client = new mod.S3Client({
      region: cfg.region,
      ...(cfg.endpoint ? { endpoint: cfg.endpoint } : {}),
      forcePathStyle: pathStyle,
      ...(credentials ? { credentials } : {}),
      // retries are the uploader's (network vs refusal ladders), not the SDK's
      maxAttempts: 1,
      // checksums are ours (the segment's known SHA-256); the SDK must not add aws-chunked CRC32 trailers
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: { httpAgent, httpsAgent, requestTimeout: ctx.timeoutMs, connectionTimeout: Math.min(ctx.timeoutMs, 10_000) },
      // the SDK's own notes go to debug (without a logger it console.warns on every failed upload;
      // failures are counted and logged, throttled, by the uploader)
      logger: { trace: () => {}, debug: () => {}, info: () => {}, warn: (...a: unknown[]) => ctx.log.debug({ sdk: a.map(String).join(' ').slice(0, 300) }, 'S3 SDK'), error: () => {} },
    });
  }

  stats(): Record<string, number | string | boolean | null> {
    return { ...this.st, serverChecksums: this.serverChecksums, staleSweepUnsupported: this.listUnsupported, abortUnsupported: this.abortUnsupported };
  }

  /** The object key of a segment: prefix + the on-disk layout. */
  keyOf(rel: string): string {
    return `${this.prefix}${rel}`;
  }

  private redact = (s: string): string => {
    let out = s;
    for (const x of this.secrets) out = out.split(x).join('***');
    return out;
  };

  /** One SDK call; any error becomes a SyncFailure that says what to fix. */
  private async call<T>(op: string, key: string | undefined, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw this.failure(err, op, key);
    }
  }

  private failure(err: unknown, op: string, key?: string): SyncFailure {
    if (err instanceof SyncFailure) return err;
    const e = err as {
      name?: string;
      code?: string;
      message?: string;
      Region?: string;
      ServerTime?: string;
      $metadata?: { httpStatusCode?: number };
      $response?: { headers?: Record<string, string | undefined> };
    };
    if (this.ctx.signal.aborted) return new SyncFailure('SYNC_ABORTED', `${op}: stopped`, 'network', 'target');
    const headers = e?.$response?.headers ?? {};
    const facts: S3ErrorFacts = {
      name: e?.name && e.name !== 'Error' ? e.name : e?.code ?? 'Error',
      status: e?.$metadata?.httpStatusCode,
      message: e?.message,
      region: e?.Region ?? headers['x-amz-bucket-region'],
      serverTime: e?.ServerTime,
      errno: typeof e?.code === 'string' ? e.code : e?.name === 'TimeoutError' ? 'ETIMEDOUT' : undefined,
    };
    return s3Failure(facts, { bucket: this.bucket, key, region: this.cfg.region, endpoint: this.endpoint, op }, this.redact);
  }

  private send<T>(cmd: unknown): Promise<T> {
    return (this.client.send as (c: unknown, o: { abortSignal: AbortSignal }) => Promise<T>)(cmd, { abortSignal: this.ctx.signal });
  }

  private putExtras(row: SyncJob['row']) {
    return {
      ContentType: row.kind === 'video' ? 'video/mp4' : 'application/octet-stream',
      ...(this.cfg.storageClass ? { StorageClass: this.cfg.storageClass as S3.StorageClass } : {}),
      ...(this.cfg.serverSideEncryption ? { ServerSideEncryption: this.cfg.serverSideEncryption as S3.ServerSideEncryption } : {}),
      ...(this.cfg.sseKmsKeyId ? { SSEKMSKeyId: this.cfg.sseKmsKeyId } : {}),
    };
  }

  async sync(job: SyncJob): Promise<SyncOutcome> {
    const key = this.keyOf(job.row.path);
    return job.row.bytes >= this.cfg.multipart.thresholdBytes ? this.multipart(job, key, false) : this.single(job, key);
  }

  /** A body stream over a range of the segment; a local read failure is the segment's own. */
  private body(job: SyncJob, start: number, length: number, hashes: crypto.Hash[]): FileRangeStream {
    return new FileRangeStream(job.abs, start, length, { pacer: this.ctx.pacer, signal: this.ctx.signal, onBytes: (n) => this.ctx.sent(n), hashes });
  }

  private bodyError(b: FileRangeStream, err: unknown): never {
    const e = b.errored as (Error & { code?: string }) | null;
    if (e && (e.code === 'ENOENT' || e.code === 'EACCES' || e.code === 'EISDIR' || /SHORT_READ/.test(e.message))) throw localFailure('SYNC_LOCAL', `cannot read the segment: ${e.message}`);
    throw err;
  }

  private async single(job: SyncJob, key: string): Promise<SyncOutcome> {
    const { row } = job;
    if (job.checkFirst) {
      const v = await this.existing(job, key, { sha256: hexToB64(row.sha256) });
      if (v) return { verifiedBy: v, alreadyOnTarget: true };
    }
    // the MD5 of the bytes read, for the ETag the server answers (not needed once the target has
    // shown it stores our SHA-256)
    const md5 = this.etagIsMd5 && this.serverChecksums !== true ? crypto.createHash('md5') : null;
    const body = this.body(job, 0, row.bytes, md5 ? [md5] : []);
    const t0 = performance.now();
    this.st.puts++;
    const put = await this.call('PutObject', key, () =>
      this.send<S3.PutObjectCommandOutput>(new this.mod.PutObjectCommand({ Bucket: this.bucket, Key: key, Body: body, ContentLength: row.bytes, ChecksumSHA256: hexToB64(row.sha256), ...this.putExtras(row) })),
    ).catch((err) => this.bodyError(body, err));
    this.ctx.timed('putMs', performance.now() - t0);
    const md5hex = md5 ? md5.digest('hex') : null;
    const etag = bareEtag(put.ETag);
    if (md5hex && /^[0-9a-f]{32}$/.test(etag) && etag !== md5hex) {
      throw new SyncFailure('SYNC_VERIFY', `stored copy differs: ETag ${etag} ≠ MD5 ${md5hex} of the file (corrupted on the way)`, 'refused', 'object', { key });
    }
    const v = await this.confirm(job, key, { sha256: hexToB64(row.sha256), md5: md5hex });
    return { verifiedBy: v, alreadyOnTarget: false };
  }

  /** A copy already on the target that verifies (rebuilt/retried rows): how it verified, else null. */
  private async existing(job: SyncJob, key: string, expect: Expect): Promise<VerifiedBy | null> {
    try {
      return await this.confirm(job, key, expect);
    } catch (err) {
      const f = err as SyncFailure;
      if (f.code === 'S3_NOT_FOUND' || f.code === 'SYNC_VERIFY') return null; // not there, or not this: send it
      throw err;
    }
  }

  /**
   * HEAD the stored copy: size, then its SHA-256 (x-amz-checksum-mode), else its ETag against the
   * MD5, else (neither offered) a full GET hashed as it arrives.
   */
  private async confirm(job: SyncJob, key: string, expect: Expect): Promise<VerifiedBy> {
    const { row } = job;
    const t0 = performance.now();
    try {
      const h = await this.call('HeadObject', key, () => this.send<S3.HeadObjectCommandOutput>(new this.mod.HeadObjectCommand({ Bucket: this.bucket, Key: key, ChecksumMode: 'ENABLED' })));
      const mismatch = (what: string) => new SyncFailure('SYNC_VERIFY', `stored copy differs: ${what}`, 'refused', 'object', { key });
      if (h.ContentLength !== row.bytes) throw mismatch(`target holds ${h.ContentLength} bytes, expected ${row.bytes}`);
      const cs = h.ChecksumSHA256;
      if (cs) {
        // a multipart object's is composite (`…-N`); we may have nothing to compare it with (a
        // multipart copy found for a rebuilt row): then the ETag or a GET decides
        const want = /-\d+$/.test(cs) ? expect.composite : expect.sha256;
        if (want !== undefined) {
          if (cs !== want) throw mismatch(`stored SHA-256 ${cs} ≠ ${want}`);
          this.serverChecksums = true;
          return 'checksum';
        }
      } else if (this.serverChecksums === null) this.serverChecksums = false;
      const etag = bareEtag(h.ETag);
      if (this.etagIsMd5 && /^[0-9a-f]{32}$/.test(etag)) {
        // a plain MD5: of the whole object (single PUT; some servers also for a multipart object)
        let md5 = expect.md5 ?? null;
        if (!md5) {
          md5 = (await hashRange(job.abs, 0, row.bytes, ['md5'])).md5!.toString('hex');
          this.st.localHashBytes += row.bytes;
        }
        if (etag !== md5) throw mismatch(`ETag ${etag} ≠ MD5 ${md5} of the file`);
        return 'etag';
      }
      if (this.etagIsMd5 && /^[0-9a-f]{32}-\d+$/.test(etag) && expect.multipartEtag) {
        if (etag !== expect.multipartEtag) throw mismatch(`ETag ${etag} ≠ ${expect.multipartEtag} from the parts' MD5s`);
        return 'etag';
      }
      return await this.readBack(job, key);
    } finally {
      this.ctx.timed('verifyMs', performance.now() - t0);
    }
  }

  /** The whole object, hashed as it arrives (the target offered no checksum we can compare). */
  private async readBack(job: SyncJob, key: string): Promise<VerifiedBy> {
    const { row } = job;
    const r = await this.call('GetObject', key, () => this.send<S3.GetObjectCommandOutput>(new this.mod.GetObjectCommand({ Bucket: this.bucket, Key: key })));
    const h = crypto.createHash('sha256');
    let size = 0;
    const body = r.Body as NodeJS.ReadableStream | undefined;
    if (!body) throw new SyncFailure('SYNC_VERIFY', 'GetObject returned no body', 'refused', 'object', { key });
    try {
      for await (const c of body as AsyncIterable<Buffer>) {
        size += c.length;
        // longer than the segment is a mismatch already: stop reading there
        if (size > row.bytes) break;
        h.update(c);
      }
    } catch (err) {
      throw this.failure(err, 'GetObject', key);
    } finally {
      (body as unknown as { destroy?: () => void }).destroy?.();
    }
    this.ctx.readBack(size, true);
    if (size !== row.bytes) throw new SyncFailure('SYNC_VERIFY', `stored copy differs: target holds ${size > row.bytes ? 'more than ' : ''}${size} bytes, expected ${row.bytes}`, 'refused', 'object', { key });
    const sha = h.digest('hex');
    if (sha !== row.sha256) throw new SyncFailure('SYNC_VERIFY', `stored copy differs: sha256 ${sha.slice(0, 12)}… ≠ ${row.sha256.slice(0, 12)}…`, 'refused', 'object', { key });
    return 'get';
  }

  private async multipart(job: SyncJob, key: string, restarted: boolean): Promise<SyncOutcome> {
    const { row } = job;
    let up = this.state.get(row.path);
    if (up && (up.target !== this.id || up.key !== key || up.bytes !== row.bytes || up.sha256 !== row.sha256)) {
      // another target, or another file under this path: that upload is of no use
      await this.abortQuiet(up);
      this.state.forget(row.path);
      up = undefined;
    }
    if (up) {
      // a restart mid-upload; or the Complete went through and the crash came before we noted it
      const parts = this.state.parts(row.path);
      const plan = partPlan(row.bytes, up.part_size);
      if (parts.length === plan.length) {
        const v = await this.existing(job, key, expectOf(parts));
        if (v) {
          this.state.forget(row.path);
          return { verifiedBy: v, alreadyOnTarget: true };
        }
      }
      this.st.multipartResumed++;
    } else {
      if (job.checkFirst) {
        const v = await this.existing(job, key, {});
        if (v) return { verifiedBy: v, alreadyOnTarget: true };
      }
      const created = await this.call('CreateMultipartUpload', key, () =>
        this.send<S3.CreateMultipartUploadCommandOutput>(new this.mod.CreateMultipartUploadCommand({ Bucket: this.bucket, Key: key, ChecksumAlgorithm: 'SHA256', ...this.putExtras(row) })),
      );
      if (!created.UploadId) throw new SyncFailure('S3_REFUSED', 'CreateMultipartUpload returned no upload id', 'refused', 'object', { key });
      up = { path: row.path, target: this.id, key, upload_id: created.UploadId, part_size: this.cfg.multipart.partSizeBytes, bytes: row.bytes, sha256: row.sha256, created_ms: Date.now() };
      this.state.begin(up);
      this.st.multipartStarted++;
    }
    const plan = partPlan(row.bytes, up.part_size);
    const done = new Map(this.state.parts(row.path).map((p) => [p.part, p]));
    // Some servers (s3rver) answer a multipart object's ETag as the MD5 of the whole object: when
    // every part is hashed here, in order, that MD5 comes from the same pass (no second read).
    const whole = this.etagIsMd5 && this.serverChecksums !== true && done.size === 0 ? crypto.createHash('md5') : null;
    const t0 = performance.now();
    try {
      for (const p of plan) {
        const have = done.get(p.part);
        if (have && have.bytes === p.length) {
          this.st.partsSkipped++;
          continue;
        }
        const part = await this.uploadPart(job, key, up, p, whole);
        this.state.partDone(part);
        done.set(p.part, part);
      }
      const parts = plan.map((p) => done.get(p.part)!);
      await this.call('CompleteMultipartUpload', key, () =>
        this.send(
          new this.mod.CompleteMultipartUploadCommand({
            Bucket: this.bucket,
            Key: key,
            UploadId: up.upload_id,
            MultipartUpload: { Parts: parts.map((p) => ({ PartNumber: p.part, ETag: `"${p.etag}"`, ChecksumSHA256: p.sha256 })) },
          }),
        ),
      );
      this.ctx.timed('putMs', performance.now() - t0);
      this.st.multipartCompleted++;
      const v = await this.confirm(job, key, { ...expectOf(parts), md5: whole ? whole.digest('hex') : null });
      this.state.forget(row.path);
      return { verifiedBy: v, alreadyOnTarget: false };
    } catch (err) {
      if ((err as SyncFailure).code === 'S3_NO_SUCH_UPLOAD' && !restarted) {
        // aborted or expired on the target (a lifecycle rule, a stale sweep elsewhere): start over once
        this.state.forget(row.path);
        return this.multipart(job, key, true);
      }
      throw err;
    }
  }

  private async uploadPart(job: SyncJob, key: string, up: MultipartRow, p: { part: number; start: number; length: number }, whole: crypto.Hash | null): Promise<PartRow> {
    // first pass over the range: its SHA-256 goes in the request head, its MD5 is what the ETag must be
    const sums = await hashRange(job.abs, p.start, p.length, ['sha256', 'md5'], whole ? [whole] : []);
    const sha256 = sums.sha256!.toString('base64');
    const md5 = sums.md5!.toString('hex');
    for (let i = 0; ; i++) {
      const body = this.body(job, p.start, p.length, []);
      const r = await this.call('UploadPart', key, () =>
        this.send<S3.UploadPartCommandOutput>(
          new this.mod.UploadPartCommand({ Bucket: this.bucket, Key: key, UploadId: up.upload_id, PartNumber: p.part, Body: body, ContentLength: p.length, ChecksumSHA256: sha256 }),
        ),
      ).catch((err) => this.bodyError(body, err));
      const etag = bareEtag(r.ETag);
      if (!this.etagIsMd5 || !/^[0-9a-f]{32}$/.test(etag) || etag === md5) {
        this.st.partsUploaded++;
        return { path: job.row.path, part: p.part, bytes: p.length, etag: etag || md5, md5, sha256 };
      }
      this.st.partsResent++;
      if (i >= PART_RESENDS) throw new SyncFailure('SYNC_VERIFY', `part ${p.part} arrived corrupted ${i + 1} times (ETag ${etag} ≠ MD5 ${md5})`, 'refused', 'object', { key, part: p.part });
    }
  }

  private async abortQuiet(up: MultipartRow): Promise<boolean> {
    if (this.abortUnsupported || up.target !== this.id) return false;
    try {
      await this.call('AbortMultipartUpload', up.key, () => this.send(new this.mod.AbortMultipartUploadCommand({ Bucket: this.bucket, Key: up.key, UploadId: up.upload_id })));
      return true;
    } catch (err) {
      const f = err as SyncFailure;
      if (f.code === 'S3_UNSUPPORTED') this.abortUnsupported = true;
      return f.code === 'S3_NO_SUCH_UPLOAD' || f.code === 'S3_NOT_FOUND';
    }
  }

  /**
   * Abort multipart uploads nobody will finish: ours whose segment is gone, synced or quarantined;
   * and any under our prefix older than abortStaleAfterHours that the index does not mean to finish
   * (a robot re-imaged mid-upload, another tool). Their parts cost storage until aborted.
   */
  async housekeeping(now: number): Promise<void> {
    try {
      for (const o of this.state.orphans(this.id)) {
        if (await this.abortQuiet(o)) this.st.orphansAborted++;
        this.state.forget(o.path);
      }
      if (this.listUnsupported) return;
      const staleBefore = now - this.cfg.multipart.abortStaleAfterHours * 3_600_000;
      const keep = this.state.activeIds(this.id);
      let keyMarker: string | undefined;
      let idMarker: string | undefined;
      for (let page = 0; page < MAX_SWEEP_PAGES; page++) {
        const r = await this.call('ListMultipartUploads', undefined, () =>
          this.send<S3.ListMultipartUploadsCommandOutput>(
            new this.mod.ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: this.prefix, ...(keyMarker ? { KeyMarker: keyMarker } : {}), ...(idMarker ? { UploadIdMarker: idMarker } : {}) }),
          ),
        );
        for (const u of r.Uploads ?? []) {
          if (!u.Key || !u.UploadId || keep.has(u.UploadId)) continue;
          if (!u.Initiated || u.Initiated.getTime() > staleBefore) continue;
          if (await this.abortQuiet({ path: '', target: this.id, key: u.Key, upload_id: u.UploadId, part_size: 0, bytes: 0, sha256: '', created_ms: 0 })) this.st.staleAborted++;
        }
        if (!r.IsTruncated) break;
        keyMarker = r.NextKeyMarker;
        idMarker = r.NextUploadIdMarker;
      }
    } catch (err) {
      const f = err as SyncFailure;
      if (f.code === 'S3_UNSUPPORTED') this.listUnsupported = true;
      else this.ctx.log.warn({ err: f.message }, 'S3 stale multipart sweep failed');
    }
  }

  async close(): Promise<void> {
    try {
      this.client.destroy();
    } catch {
      /* closing */
    }
    for (const a of this.agents) a.destroy();
  }
}

interface Expect {
  /** base64 SHA-256 of the whole object (single PUT). */
  sha256?: string;
  /** S3's composite SHA-256 of a multipart object (`…-N`). */
  composite?: string;
  /** hex MD5 of the whole object, when known. */
  md5?: string | null;
  /** S3's ETag of a multipart object (`…-N`). */
  multipartEtag?: string;
}

function expectOf(parts: PartRow[]): Expect {
  return { composite: compositeSha256(parts.map((p) => p.sha256)), multipartEtag: multipartEtag(parts.map((p) => p.md5)) };
}

function hexToB64(hex: string): string {
  return Buffer.from(hex, 'hex').toString('base64');
}
