// Multipart uploads in progress, kept in the SQLite index (schema v4) so an upload resumes after a
// restart or a kill -9: the upload id, and every finished part with the ETag and checksums it was
// acknowledged with. Each write commits at once (a part is the unit that must survive a crash).
// Also pure helpers for what a multipart object's ETag and checksum are.
import crypto from 'node:crypto';
import type { IndexDb } from '../index-db.js';

export interface MultipartRow {
  path: string;
  /** The target's identity (endpoint, bucket): an upload is resumed only on the target that holds it. */
  target: string;
  key: string;
  upload_id: string;
  part_size: number;
  bytes: number;
  sha256: string;
  created_ms: number;
}

export interface PartRow {
  path: string;
  part: number;
  bytes: number;
  etag: string;
  /** hex */
  md5: string;
  /** base64, as x-amz-checksum-sha256 */
  sha256: string;
}

export class MultipartState {
  constructor(private readonly db: IndexDb) {}

  get(path: string): MultipartRow | undefined {
    return this.db.db.prepare('SELECT * FROM sync_multipart WHERE path=?').get(path) as MultipartRow | undefined;
  }

  parts(path: string): PartRow[] {
    return this.db.db.prepare('SELECT * FROM sync_multipart_parts WHERE path=? ORDER BY part').all(path) as PartRow[];
  }

  begin(r: MultipartRow): void {
    this.db.write(() => {
      this.db.db.prepare('DELETE FROM sync_multipart_parts WHERE path=?').run(r.path);
      this.db.db
        .prepare('INSERT OR REPLACE INTO sync_multipart(path, target, key, upload_id, part_size, bytes, sha256, created_ms) VALUES(@path, @target, @key, @upload_id, @part_size, @bytes, @sha256, @created_ms)')
        .run(r);
    });
  }

  partDone(p: PartRow): void {
    this.db.write(() => this.db.db.prepare('INSERT OR REPLACE INTO sync_multipart_parts(path, part, bytes, etag, md5, sha256) VALUES(@path, @part, @bytes, @etag, @md5, @sha256)').run(p));
  }

  forget(path: string): void {
    this.db.write(() => {
      this.db.db.prepare('DELETE FROM sync_multipart_parts WHERE path=?').run(path);
      this.db.db.prepare('DELETE FROM sync_multipart WHERE path=?').run(path);
    });
  }

  /**
   * Uploads no segment needs any more: the segment row is gone, its file is gone, it is synced or
   * quarantined, or the upload belongs to another target. Bounded per call.
   */
  orphans(target: string, limit = 100): MultipartRow[] {
    return this.db.db
      .prepare(
        `SELECT m.* FROM sync_multipart m LEFT JOIN segments s ON s.path = m.path
         WHERE s.id IS NULL OR s.present = 0 OR s.state NOT IN ('closed', 'uploading') OR s.sha256 IS NOT m.sha256 OR m.target <> ?
         ORDER BY m.created_ms LIMIT ?`,
      )
      .all(target, limit) as MultipartRow[];
  }

  /** Upload ids this index still means to finish on `target`. */
  activeIds(target: string): Set<string> {
    const rows = this.db.db.prepare('SELECT upload_id FROM sync_multipart WHERE target=?').all(target) as Array<{ upload_id: string }>;
    return new Set(rows.map((r) => r.upload_id));
  }
}

/** Byte ranges of the parts of an object of `bytes` in `partSize` parts (S3: at most 10 000 parts). */
export function partPlan(bytes: number, partSize: number): Array<{ part: number; start: number; length: number }> {
  // a segment too large for 10 000 parts of this size gets larger parts (still whole MiB)
  const size = Math.max(partSize, Math.ceil(bytes / 10_000 / 1048576) * 1048576);
  const out: Array<{ part: number; start: number; length: number }> = [];
  for (let start = 0, part = 1; start < bytes; start += size, part++) out.push({ part, start, length: Math.min(size, bytes - start) });
  return out;
}

/** S3's ETag of a multipart object: md5 of the parts' binary md5s, then `-<parts>`. */
export function multipartEtag(partMd5Hex: string[]): string {
  const h = crypto.createHash('md5');
  for (const m of partMd5Hex) h.update(Buffer.from(m, 'hex'));
  return `${h.digest('hex')}-${partMd5Hex.length}`;
}

/** S3's composite SHA-256 of a multipart object: sha256 of the parts' binary sha256s, base64, then `-<parts>`. */
export function compositeSha256(partSha256B64: string[]): string {
  const h = crypto.createHash('sha256');
  for (const s of partSha256B64) h.update(Buffer.from(s, 'base64'));
  return `${h.digest('base64')}-${partSha256B64.length}`;
}

/** An ETag without quotes, lower-cased. */
export function bareEtag(e: string | undefined | null): string {
  return (e ?? '').replace(/"/g, '').trim().toLowerCase();
}
