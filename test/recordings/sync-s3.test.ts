// Sync to a real S3-compatible server (s3rver, started by each test; signature V4 checked, objects
// on disk) through a proxy that logs, corrupts, cuts and refuses requests: single PUT, multipart,
// resume after kill -9 mid-upload, cut mid-part, a flipped byte (caught: s3rver does not check
// x-amz-checksum-sha256, so the ETag/MD5 comparison must), 403 on one key, wrong key, wrong
// bucket, a network outage longer than the retry budget. The same basic suite runs against a real
// MinIO/S3 when MOTH_TEST_S3_* is set, else it is skipped with the reason printed.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import v8 from 'node:v8';
import vm from 'node:vm';
import { test, type TestContext } from 'node:test';
import { syncConfigSchema } from '../../recordings/config.js';
import { IndexDb, type SegmentRow } from '../../recordings/index-db.js';
import { silentLog } from '../../recordings/log.js';
import { sha256File } from '../../recordings/recovery.js';
import { Uploader, type UploaderStats } from '../../recordings/sync.js';
import { recordFixture, tempDir, waitFor } from './helpers.js';
import { envS3, S3RVER_KEY, startS3Proxy, startS3rver, type S3Proxy } from './s3.js';

const MiB = 1024 * 1024;
const FROM_SOURCE = import.meta.url.endsWith('.ts');
const CHILD = path.join(import.meta.dirname, FROM_SOURCE ? 'sync-child.ts' : 'sync-child.js');

function open(root: string): IndexDb {
  return IndexDb.openWriter(path.join(root, 'index.db'));
}

function s3Target(url: string, over: Record<string, unknown> = {}): Record<string, unknown> {
  return { kind: 's3', endpoint: url, region: 'us-east-1', bucket: 'rec', prefix: 'fleet/r1/', credentials: S3RVER_KEY, multipart: { thresholdBytes: 5 * MiB, partSizeBytes: 5 * MiB }, ...over };
}

/** Shipped retry ladders and timeouts unless a test says otherwise. */
function uploader(db: IndexDb, root: string, target: Record<string, unknown>, over: Record<string, unknown> = {}): Uploader {
  return new Uploader(syncConfigSchema.parse({ target, pollMs: 100, ...over }), root, db, silentLog);
}

async function until(db: IndexDb, up: Uploader, done: (rows: SegmentRow[], st: UploaderStats) => boolean, what: string, ms = 60_000): Promise<SegmentRow[]> {
  up.start();
  let rows: SegmentRow[] = [];
  await waitFor(() => {
    rows = db.all();
    return done(rows, up.stats());
  }, what, ms).catch((err: Error) => {
    throw new Error(`${err.message}: ${JSON.stringify(rows.map((r) => [r.path, r.state, r.attempts, r.last_error]))} ${JSON.stringify(up.stats())}`);
  });
  return rows;
}

/** A segment of `bytes` random bytes under track `track`, indexed as a closed recorder segment. */
function bigSegment(root: string, db: IndexDb, track: string, bytes: number, n = 0): SegmentRow {
  const rel = `robot/base/${track}/2026-01-01/10-00-0${n}.000.rec`;
  const abs = path.join(root, rel);
  fs.mkdirSync(path.dirname(abs), { recursive: true });
  const fd = fs.openSync(abs, 'w');
  for (let left = bytes; left > 0; left -= MiB) fs.writeSync(fd, crypto.randomBytes(Math.min(MiB, left)));
  fs.closeSync(fd);
  const t = Date.parse('2026-01-01T10:00:00Z') + n * 1000;
  db.write(() =>
    db.insert({
      path: rel, channel: 'robot', source: 'base', track, mime: 'application/octet-stream', kind: 'data', run: 'test', offset_us: 0,
      start_us: 0, end_us: 1, wall_start_ms: t, wall_end_ms: t + 1000, duration_ms: 1000, bytes, frames: 1, keyframes: 1,
      sha256: sha256File(abs), state: 'closed', created_ms: t, closed_ms: t, origin: 'recorder',
    }),
  );
  return db.get(rel)!;
}

/** global.gc without --expose-gc (the flag can be set at run time; a fresh context picks it up). */
function forceGc(): () => void {
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as () => void;
}

const puts = (p: S3Proxy, re: RegExp) => p.log.filter((l) => re.test(l));

async function rig(t: TestContext, segments: 'video' | 'none' = 'video') {
  const dir = await tempDir(t, 'sync-s3-');
  const root = path.join(dir, 'rec');
  if (segments === 'video') await recordFixture(root, 3);
  else fs.mkdirSync(root, { recursive: true });
  const s3 = await startS3rver(t, path.join(dir, 's3'), ['rec']);
  const proxy = await startS3Proxy(t, s3.port);
  const db = open(root);
  t.after(() => db.close());
  return { dir, root, s3, proxy, db };
}

test('single PUT per segment: verified by HEAD (ETag = MD5 of the file), no read-back, deleted locally only after; never uploaded twice', async (t) => {
  const { root, s3, proxy, db } = await rig(t);
  const hashes = new Map(db.all().map((r) => [r.path, r.sha256]));
  const up = uploader(db, root, s3Target(proxy.url), { deleteAfterVerify: true });
  const rows = await until(db, up, (rs) => rs.every((r) => r.state === 'synced'), 'every segment synced');
  const st = up.stats();
  await up.close();
  for (const r of rows) {
    const stored = s3.object('rec', `fleet/r1/${r.path}`);
    assert.ok(stored, `stored ${r.path}`);
    assert.equal(crypto.createHash('sha256').update(stored).digest('hex'), hashes.get(r.path));
    assert.equal(r.present, 0);
    assert.equal(fs.existsSync(path.join(root, r.path)), false);
  }
  assert.equal(puts(proxy, /^PUT \/rec\/fleet\/r1\/.* 200$/).length, rows.length, 'one PUT per segment');
  assert.equal(puts(proxy, /^HEAD /).length, rows.length, 'one HEAD per segment');
  assert.equal(puts(proxy, /^GET \/rec\/fleet\//).length, 0, 'verified without downloading the copy');
  // s3rver does not store or return x-amz-checksum-sha256: the ETag (its MD5) is what proves the copy
  assert.equal(st.verifiedBy.etag, rows.length);
  assert.equal(st.targetStats.serverChecksums, false);
  assert.equal(st.target, 's3');
  assert.match(st.where ?? '', /^s3:\/\/rec\/fleet\/r1\//);
  const up2 = uploader(db, root, s3Target(proxy.url));
  assert.equal(await up2.runOnce(), 0);
  await up2.close();
  assert.equal(puts(proxy, /^PUT /).length, rows.length, 'no duplicate upload');
});

test('multipart above the threshold: parts streamed from disk, each checked against its ETag, completed, verified; index state cleared', async (t) => {
  const { root, s3, proxy, db } = await rig(t, 'none');
  const seg = bigSegment(root, db, 'big', 12 * MiB + 12345);
  const up = uploader(db, root, s3Target(proxy.url));
  // bounded memory: parts are streamed from disk, never held whole (concurrency × partSize = 10 MiB
  // is the bound the issue allows; a part buffered in memory would show as +5 MiB of buffers)
  // live buffers only: a full GC before each sample (garbage of already-sent chunks is not held)
  const gc = forceGc();
  gc();
  const base = process.memoryUsage().arrayBuffers;
  let peak = base;
  const sampler = setInterval(() => {
    gc();
    peak = Math.max(peak, process.memoryUsage().arrayBuffers);
  }, 20);
  await until(db, up, (rs) => rs.every((r) => r.state === 'synced'), 'multipart synced');
  clearInterval(sampler);
  const st = up.stats();
  await up.close();
  t.diagnostic(`Buffer memory during the multipart upload: +${((peak - base) / MiB).toFixed(2)} MiB (s3rver and the proxy in this process included)`);
  assert.ok(peak - base < 5 * MiB, `buffers grew by ${peak - base} B: less than one part`);
  const stored = s3.object('rec', `fleet/r1/${seg.path}`)!;
  assert.equal(crypto.createHash('sha256').update(stored).digest('hex'), seg.sha256);
  assert.equal(puts(proxy, /^POST .*\?uploads=? 200$/).length, 1, 'one CreateMultipartUpload');
  assert.equal(puts(proxy, /^PUT .*partNumber=\d+.* 200$/).length, 3, '3 parts of 5 MiB');
  assert.equal(puts(proxy, /^POST .*\?uploadId=.* 200$/).length, 1, 'one CompleteMultipartUpload');
  assert.equal(puts(proxy, /^GET \/rec\/fleet\//).length, 0);
  assert.equal(st.targetStats.partsUploaded, 3);
  assert.equal(st.targetStats.multipartCompleted, 1);
  assert.equal(st.verifiedBy.etag, 1);
  assert.equal((db.db.prepare('SELECT COUNT(*) AS n FROM sync_multipart').get() as { n: number }).n, 0);
  assert.equal((db.db.prepare('SELECT COUNT(*) AS n FROM sync_multipart_parts').get() as { n: number }).n, 0);
});

test('kill -9 mid-multipart: the restarted uploader resumes at the first missing part (parts already acknowledged are not sent again)', async (t) => {
  const { root, s3, proxy, db } = await rig(t, 'none');
  const seg = bigSegment(root, db, 'big', 16 * MiB);
  db.close();
  // 4 MiB/s: a 5 MiB part takes > 1 s, so the kill lands mid-upload
  const cfg = { target: s3Target(proxy.url), bandwidthBytesPerSec: 4 * MiB, pollMs: 100 };
  const args = [...(FROM_SOURCE ? ['--import', 'tsx'] : []), CHILD, root, path.join(root, 'index.db'), JSON.stringify(cfg)];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let exited = false;
  child.once('exit', () => (exited = true));
  t.after(() => void (exited || child.kill('SIGKILL')));
  let last: UploaderStats | null = null;
  readline.createInterface({ input: child.stdout! }).on('line', (l) => {
    if (l.startsWith('{')) last = JSON.parse(l) as UploaderStats;
  });
  const reader = IndexDb.openReader(path.join(root, 'index.db'));
  const partsDone = () => (reader.db.prepare('SELECT COUNT(*) AS n FROM sync_multipart_parts').get() as { n: number }).n;
  await waitFor(() => partsDone() >= 1, 'the child to finish a part', 60_000);
  // and be inside the next one
  await waitFor(() => (last?.uploadedBytes ?? 0) > 6 * MiB, 'the child to be sending part 2', 30_000);
  child.kill('SIGKILL');
  await new Promise<void>((r) => (exited ? r() : child.once('exit', () => r())));
  const doneAtKill = partsDone();
  reader.close();
  assert.ok(doneAtKill >= 1 && doneAtKill < 4, `killed with ${doneAtKill} of 4 parts done`);
  const row = IndexDb.openReader(path.join(root, 'index.db'));
  assert.equal(row.get(seg.path)!.state, 'uploading', 'left uploading by the kill');
  row.close();

  const db2 = open(root);
  t.after(() => db2.close());
  // what start-up recovery does with an `uploading` row
  db2.write(() => db2.update(seg.path, { state: 'closed' }));
  const up = uploader(db2, root, s3Target(proxy.url));
  await until(db2, up, (rs) => rs.every((r) => r.state === 'synced'), 'synced after restart');
  const st = up.stats();
  await up.close();
  assert.equal(st.targetStats.multipartResumed, 1);
  assert.equal(st.targetStats.partsSkipped, doneAtKill, 'acknowledged parts were not sent again');
  assert.equal(st.targetStats.partsUploaded, 4 - doneAtKill);
  for (let p = 1; p <= doneAtKill; p++) assert.equal(puts(proxy, new RegExp(`^PUT .*partNumber=${p}&.* 200$|^PUT .*partNumber=${p} .* 200$`)).length, 1, `part ${p} sent once`);
  assert.equal(puts(proxy, /^POST .*\?uploads=? /).length, 1, 'the same upload id was resumed');
  const stored = s3.object('rec', `fleet/r1/${seg.path}`)!;
  assert.equal(crypto.createHash('sha256').update(stored).digest('hex'), seg.sha256);
});

test('connection cut mid-part: a network failure (no attempt counted), resumed from the parts done, completed', async (t) => {
  const { root, s3, proxy, db } = await rig(t, 'none');
  const seg = bigSegment(root, db, 'big', 11 * MiB);
  proxy.rules.push({ match: (m, u) => m === 'PUT' && /partNumber=2\b/.test(u), cutAfter: 1 * MiB, times: 1 });
  const up = uploader(db, root, s3Target(proxy.url), { maxAttempts: 1 });
  const rows = await until(db, up, (rs) => rs.every((r) => r.state === 'synced'), 'synced despite the cut');
  const st = up.stats();
  await up.close();
  assert.ok(proxy.log.some((l) => /partNumber=2.* CUT$/.test(l)), proxy.log.join('\n'));
  assert.ok(st.networkFailures >= 1);
  assert.equal(rows[0]!.attempts, 0, 'a cut is the network: no attempt counted (maxAttempts 1 would have quarantined it)');
  assert.equal(st.quarantined, 0);
  assert.equal(puts(proxy, /^PUT .*partNumber=1\b.* 200$/).length, 1, 'part 1 not sent again');
  assert.equal(crypto.createHash('sha256').update(s3.object('rec', `fleet/r1/${seg.path}`)!).digest('hex'), seg.sha256);
});

test('a byte flipped in a part on the way: caught by its ETag (s3rver ignores x-amz-checksum-sha256), the part is sent again, the object verifies', async (t) => {
  const { root, s3, proxy, db } = await rig(t, 'none');
  const seg = bigSegment(root, db, 'big', 11 * MiB);
  proxy.rules.push({ match: (m, u) => m === 'PUT' && /partNumber=2\b/.test(u), flipAt: 777_777, times: 1 });
  const up = uploader(db, root, s3Target(proxy.url), { deleteAfterVerify: true });
  await until(db, up, (rs) => rs.every((r) => r.state === 'synced'), 'synced');
  const st = up.stats();
  await up.close();
  assert.equal(st.targetStats.partsResent, 1, 'the corrupted part was caught and sent again');
  assert.equal(puts(proxy, /^PUT .*partNumber=2\b.* 200$/).length, 2);
  assert.equal(crypto.createHash('sha256').update(s3.object('rec', `fleet/r1/${seg.path}`)!).digest('hex'), seg.sha256, 'the stored object is the file');
});

test('a byte flipped in a single PUT: the copy does not verify → not synced, not deleted, retried → synced; flipped every time → quarantined, kept', async (t) => {
  const { root, s3, proxy, db } = await rig(t);
  const victim = db.all().find((r) => r.kind === 'video')!;
  const key = `/rec/fleet/r1/${victim.path}`;
  proxy.rules.push({ match: (m, u) => m === 'PUT' && u.split('?')[0] === key, flipAt: 1000, times: 1 });
  let up = uploader(db, root, s3Target(proxy.url), { deleteAfterVerify: true });
  await until(db, up, (rs) => rs.every((r) => r.state === 'synced'), 'synced after the retry');
  let st = up.stats();
  await up.close();
  assert.equal(st.verifyFailures, 1);
  assert.equal(db.get(victim.path)!.attempts, 1, 'a copy that does not verify counts as a refusal of that segment');
  const ev = db.events(1000).reverse().filter((e) => e.path === victim.path).map((e) => e.kind);
  assert.deepEqual(ev, ['synced'], 'synced (and deleted) only once, after the good copy');
  assert.equal(crypto.createHash('sha256').update(s3.object('rec', `fleet/r1/${victim.path}`)!).digest('hex'), victim.sha256);

  // corrupted on every try: never verified, never deleted, quarantined after maxAttempts
  const dir2 = path.join(root, '..', 'rec2');
  await recordFixture(dir2, 3);
  const db2 = open(dir2);
  t.after(() => db2.close());
  proxy.rules.length = 0;
  proxy.rules.push({ match: (m, u) => m === 'PUT' && u.startsWith('/rec/fleet/r2/'), flipAt: 10 });
  up = uploader(db2, dir2, s3Target(proxy.url, { prefix: 'fleet/r2/' }), { deleteAfterVerify: true, maxAttempts: 2, retryInitialMs: 100 });
  const rows = await until(db2, up, (rs) => rs.every((r) => r.state === 'quarantined'), 'quarantined');
  st = up.stats();
  await up.close();
  assert.equal(st.verified, 0);
  for (const r of rows) {
    assert.equal(r.present, 1);
    assert.ok(fs.existsSync(path.join(dir2, r.path)), 'kept');
    assert.match(r.last_error ?? '', /ETag .* ≠ MD5/);
  }
});

test('AccessDenied on one key: that segment is quarantined, the others sync, the target stays ok', async (t) => {
  const { root, proxy, db } = await rig(t);
  const victim = db.all().find((r) => r.kind === 'data')!;
  const key = `/rec/fleet/r1/${victim.path}`;
  proxy.rules.push({ match: (_m, u) => u.startsWith(key), refuse: { status: 403, code: 'AccessDenied' } });
  const up = uploader(db, root, s3Target(proxy.url), { maxAttempts: 2 });
  const rows = await until(db, up, (rs) => rs.every((r) => r.state === (r.path === victim.path ? 'quarantined' : 'synced')), 'one quarantined, the rest synced');
  const st = up.stats();
  await up.close();
  const q = rows.find((r) => r.path === victim.path)!;
  assert.equal(q.attempts, 2);
  assert.match(q.last_error ?? '', /S3_ACCESS_DENIED.*s3:PutObject/);
  assert.equal(st.quarantined, 1);
  assert.equal(st.targetState, 'ok');
  assert.equal(st.verified, rows.length - 1);
});

test('wrong key → 403: the target refuses everything — nothing quarantined, the error says to fix the credentials, no secret anywhere', async (t) => {
  const { root, proxy, db } = await rig(t);
  const secret = 'not-the-secret-0123456789';
  const up = uploader(db, root, s3Target(proxy.url, { credentials: { accessKeyId: 'WRONGKEY', secretAccessKey: secret } }), { maxAttempts: 1 });
  await until(db, up, (_rs, st) => st.targetRefusals >= 2, 'refused twice (shipped 1 s refusal ladder)');
  const st = up.stats();
  await up.close();
  assert.equal(st.targetState, 'refused');
  assert.match(st.targetError ?? '', /InvalidAccessKeyId.*credentials/);
  assert.equal(st.quarantined, 0);
  assert.ok(db.all().every((r) => r.state === 'closed' && r.attempts === 0), 'no segment blamed (maxAttempts 1)');
  assert.ok(proxy.log.some((l) => / 403$/.test(l)));
  // (a right key id with a wrong secret cannot be tried here: s3rver does not check V4 signatures;
  // the real-S3 suite below does, and sync-s3-errors.test.ts maps SignatureDoesNotMatch)
  const all = JSON.stringify([st, db.all(), db.events(1000)]);
  assert.ok(!all.includes(secret), 'the secret never reaches stats, rows or events');
  assert.ok(db.all().every((r) => r.state === 'closed'));
});

test('wrong bucket: the error names the missing bucket; nothing quarantined; the right bucket then syncs everything', async (t) => {
  const { root, proxy, db } = await rig(t);
  let up = uploader(db, root, s3Target(proxy.url, { bucket: 'no-such-bucket' }), { maxAttempts: 1 });
  await until(db, up, (_rs, st) => st.targetRefusals >= 1, 'refused');
  const st = up.stats();
  await up.close();
  assert.match(st.targetError ?? '', /S3_NO_BUCKET: .*bucket "no-such-bucket" does not exist/);
  assert.equal(st.quarantined, 0);
  up = uploader(db, root, s3Target(proxy.url));
  await until(db, up, (rs) => rs.every((r) => r.state === 'synced'), 'synced to the right bucket');
  await up.close();
});

test('network outage longer than maxAttempts × the retry ladder (shipped defaults): nothing quarantined; every segment synced once the target is back', async (t) => {
  const { root, proxy, db } = await rig(t);
  const n = db.all().length;
  proxy.mode = 'down';
  const up = uploader(db, root, s3Target(proxy.url), { maxAttempts: 2 });
  // 2 × maxAttempts network failures: far beyond what would have quarantined a segment
  await until(db, up, (_rs, st) => st.retry.network >= 5, 'five network retries', 60_000);
  let st = up.stats();
  assert.equal(st.targetState, 'unreachable');
  assert.equal(st.quarantined, 0);
  assert.ok(db.all().every((r) => r.state !== 'quarantined' && r.state !== 'synced' && r.attempts === 0), 'an outage is no segment\'s fault');
  assert.ok(st.retry.network >= 5 && st.retry.lastDelayMs <= 2000, `network ladder (≤ 2 s): ${JSON.stringify(st.retry)}`);
  proxy.mode = 'up';
  const rows = await until(db, up, (rs) => rs.every((r) => r.state === 'synced'), 'synced after the outage');
  st = up.stats();
  await up.close();
  assert.equal(rows.length, n);
  assert.equal(st.verified, n, 'every segment in = verified on the target');
  assert.equal(st.targetState, 'ok');
});

test('stale multipart state: an upload whose segment is gone is aborted (or forgotten where the server cannot abort) by housekeeping', async (t) => {
  const { root, proxy, db } = await rig(t, 'none');
  const seg = bigSegment(root, db, 'big', 6 * MiB);
  proxy.rules.push({ match: (m, u) => m === 'PUT' && /partNumber=2\b/.test(u), refuse: { status: 503, code: 'SlowDown' } });
  const up = uploader(db, root, s3Target(proxy.url));
  await until(db, up, (_rs, st) => Number(st.targetStats.partsUploaded) >= 1 && st.networkFailures >= 1, 'part 1 done, part 2 refused (busy)');
  // retention removed the segment meanwhile
  db.write(() => db.update(seg.path, { present: 0, state: 'missing' }));
  await up.close();
  assert.equal((db.db.prepare('SELECT COUNT(*) AS n FROM sync_multipart').get() as { n: number }).n, 1);
  const up2 = uploader(db, root, s3Target(proxy.url));
  up2.start();
  await waitFor(() => (db.db.prepare('SELECT COUNT(*) AS n FROM sync_multipart').get() as { n: number }).n === 0, 'orphan forgotten', 20_000);
  await waitFor(() => up2.stats().targetStats.staleSweepUnsupported === true, 'stale sweep tried', 20_000);
  const st = up2.stats();
  await up2.close();
  // s3rver implements neither AbortMultipartUpload nor ListMultipartUploads: said so in stats
  assert.ok(proxy.log.some((l) => /^DELETE .*uploadId=/.test(l)), 'abort was asked');
  assert.equal(st.targetStats.abortUnsupported, true);
  assert.equal((db.db.prepare('SELECT COUNT(*) AS n FROM sync_multipart_parts').get() as { n: number }).n, 0);
});

test('close() of an idle uploader (long poll, housekeeping done) does not wait for the poll: a stop is prompt', async (t) => {
  const { root, proxy, db } = await rig(t);
  const up = uploader(db, root, s3Target(proxy.url), { pollMs: 600_000 });
  await until(db, up, (rs) => rs.every((r) => r.state === 'synced'), 'synced');
  // the stale sweep ran (s3rver answers ListMultipartUploads with 501): the loop is now idle
  await waitFor(() => proxy.log.some((l) => /^GET \/rec\/\?.*uploads/.test(l)), 'housekeeping', 20_000);
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('close() waited for the poll')), 15_000)));
  await Promise.race([up.close(), bound]);
  clearTimeout(timer);
});

test('the S3 SDK is loaded only with an S3 target: the whole runtime with a WebDAV target (or none) never loads it', async (t) => {
  const dir = await tempDir(t, 'lazy-s3-');
  const child = path.join(import.meta.dirname, FROM_SOURCE ? 'lazy-s3-child.ts' : 'lazy-s3-child.js');
  const run = (recordings: Record<string, unknown>) =>
    new Promise<{ sdkModules: number; target: string | null; where: string | null; rssMb: number }>((resolve, reject) => {
      const cfg = { server: { port: 0 }, channels: [], recordings: { root: path.join(dir, String(Math.random())), retention: { minFreeBytes: 0 }, ...recordings } };
      const c = spawn(process.execPath, [...(FROM_SOURCE ? ['--import', 'tsx'] : []), child, JSON.stringify(cfg)], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      c.stdout!.on('data', (b: Buffer) => (out += b.toString()));
      c.stderr!.on('data', (b: Buffer) => (err += b.toString()).length > 8192 && (err = err.slice(-8192)));
      c.on('exit', (code) => {
        const line = out.split('\n').find((l) => l.startsWith('{'));
        if (code !== 0 || !line) reject(new Error(`child exited ${code}: ${err}`));
        else resolve(JSON.parse(line));
      });
    });
  const none = await run({});
  assert.equal(none.sdkModules, 0);
  const dav = await run({ sync: { target: { kind: 'webdav', url: 'http://127.0.0.1:9/x' }, pollMs: 60_000 } });
  assert.equal(dav.target, 'webdav');
  assert.equal(dav.sdkModules, 0, 'a WebDAV target does not load the S3 SDK');
  const s3 = await run({ sync: { target: { kind: 's3', endpoint: 'http://127.0.0.1:9', bucket: 'rec', credentials: S3RVER_KEY }, pollMs: 60_000 } });
  assert.equal(s3.target, 's3');
  assert.ok(s3.sdkModules > 0, 'an S3 target loads it');
  t.diagnostic(`RSS: no sync ${none.rssMb} MB, WebDAV ${dav.rssMb} MB, S3 ${s3.rssMb} MB`);
});

// ---- the same basic suite against a real MinIO / S3 from the environment ---------------------
{
  const env = envS3();
  const opts = 'skip' in env ? { skip: env.skip } : {};
  if ('skip' in env) console.log(`# real S3 suite skipped: ${env.skip}`);
  test('real S3/MinIO (MOTH_TEST_S3_*): single PUT and multipart, verified by the stored SHA-256 (or ETag), resumable', opts, async (t) => {
    if ('skip' in env) return;
    const dir = await tempDir(t, 'sync-s3-env-');
    const root = path.join(dir, 'rec');
    await recordFixture(root, 3);
    const db = open(root);
    t.after(() => db.close());
    bigSegment(root, db, 'big', 11 * MiB);
    const target = { ...env.target, multipart: { thresholdBytes: 5 * MiB, partSizeBytes: 5 * MiB } };
    const up = uploader(db, root, target);
    await until(db, up, (rs) => rs.every((r) => r.state === 'synced'), 'synced to the real target', 300_000);
    const st = up.stats();
    await up.close();
    assert.equal(st.verified, db.all().length);
    assert.equal(st.verifiedBy.get, 0, 'a real S3 proves the copy without a read-back');
    assert.equal(st.targetStats.multipartCompleted, 1);
  });
  test('real S3/MinIO (MOTH_TEST_S3_*): wrong secret → the target refuses, nothing quarantined', opts, async (t) => {
    if ('skip' in env) return;
    const dir = await tempDir(t, 'sync-s3-env-');
    const root = path.join(dir, 'rec');
    await recordFixture(root, 2);
    const db = open(root);
    t.after(() => db.close());
    const up = uploader(db, root, { ...env.target, credentials: { accessKeyId: process.env.AWS_ACCESS_KEY_ID ?? 'x', secretAccessKey: 'wrong-secret-for-the-test' } }, { maxAttempts: 1 });
    await until(db, up, (_rs, s) => s.targetRefusals >= 1, 'refused', 60_000);
    const st = up.stats();
    await up.close();
    assert.equal(st.targetState, 'refused');
    assert.equal(st.quarantined, 0);
  });
}
