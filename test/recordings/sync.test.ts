// Sync to a real nginx WebDAV target on loopback: verify before delete, no duplicate upload,
// capped retries with backoff, quarantine after N; cut connections, 500s, 401s, a target that
// stores truncated files.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { syncConfigSchema } from '../../recordings/config.js';
import { IndexDb, type SegmentRow } from '../../recordings/index-db.js';
import { silentLog } from '../../recordings/log.js';
import { sha256File } from '../../recordings/recovery.js';
import { createRecordingService } from '../../recordings/service.js';
import { Uploader, checksumHeader } from '../../recordings/sync.js';
import { config, newEngine, recordFixture, tempDir, waitFor } from './helpers.js';
import { makeCa, startCountingProxy, startCuttingProxy, startMemoryTarget, startNginx, startOverlapTarget, startTruncatingTarget } from './nginx.js';

function open(root: string): IndexDb {
  return IndexDb.openWriter(path.join(root, 'index.db'));
}

/** Files under dir this process holds open (/proc/self/fd), the index aside. */
function openFilesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      const target = fs.readlinkSync(`/proc/self/fd/${fd}`);
      if (target.startsWith(dir) && !/index\.db/.test(target)) out.push(target);
    } catch {
      /* closed meanwhile */
    }
  }
  return out;
}

function uploader(db: IndexDb, root: string, over: Record<string, unknown>): Uploader {
  const cfg = syncConfigSchema.parse({ retryInitialMs: 10, retryMaxMs: 50, pollMs: 50, timeoutMs: 5000, ...over });
  return new Uploader(cfg, root, db, silentLog, () => 0.5);
}

async function until(db: IndexDb, up: Uploader, done: (rows: SegmentRow[]) => boolean, what: string): Promise<SegmentRow[]> {
  up.start();
  let rows: SegmentRow[] = [];
  await waitFor(() => {
    rows = db.all();
    return done(rows);
  }, what, 30_000).catch((err: Error) => {
    throw new Error(`${err.message}: ${JSON.stringify(rows.map((r) => [r.path, r.state, r.attempts, r.last_error]))} ${JSON.stringify(up.stats())}`);
  });
  return rows;
}

test('uploads every closed segment, verifies by GET, deletes locally only after verify, never uploads twice', async (t) => {
  const dir = await tempDir(t);
  const root = path.join(dir, 'rec');
  await recordFixture(root, 5);
  const ng = await startNginx(t, path.join(dir, 'ng'));
  const db = open(root);
  t.after(() => db.close());
  const hashes = new Map(db.all().map((r) => [r.path, r.sha256]));
  // one worker: the PUT log's order is the start order (with more, completions interleave)
  const up = uploader(db, root, { url: `${ng.url}/robots/r1`, deleteAfterVerify: true, priority: ['*/*/gps'], concurrency: 1 });
  const rows = await until(db, up, (rs) => rs.every((r) => r.state === 'synced'), 'every segment synced');
  await up.close();
  const order = ng.log().filter((l) => l.startsWith('PUT')).map((l) => (l.includes('/gps/') ? 'gps' : 'cam'));
  assert.ok(order.indexOf('cam') > order.lastIndexOf('gps'), `priority track first: ${order}`);
  for (const r of rows) {
    assert.equal(r.present, 0);
    assert.equal(fs.existsSync(path.join(root, r.path)), false, 'local copy deleted after verify');
    const remote = path.join(ng.www, 'robots/r1', r.path);
    assert.equal(sha256File(remote), hashes.get(r.path), 'target holds the exact bytes');
  }
  const puts = ng.log().filter((l) => l.startsWith('PUT'));
  assert.equal(puts.length, rows.length, 'one PUT per segment');
  assert.ok(ng.log().some((l) => l.startsWith('GET')), 'verified by reading the copy back');
  // a second uploader over the same index finds nothing to do
  const up2 = uploader(db, root, { url: `${ng.url}/robots/r1` });
  assert.equal(await up2.runOnce(), 0);
  await up2.close();
  assert.equal(ng.log().filter((l) => l.startsWith('PUT')).length, rows.length, 'no duplicate upload');
});

test('a plain WebDAV target (no create_full_put_path): PUT refused (nginx: 500) → MKCOL the folders → PUT', async (t) => {
  const dir = await tempDir(t);
  const root = path.join(dir, 'rec');
  await recordFixture(root, 2);
  const ng = await startNginx(t, path.join(dir, 'ng'));
  const db = open(root);
  t.after(() => db.close());
  const up = uploader(db, root, { url: `${ng.url}/plain/fleet/r7` });
  const rows = await until(db, up, (rs) => rs.every((r) => r.state === 'synced'), 'synced');
  await up.close();
  for (const r of rows) assert.equal(sha256File(path.join(ng.www, 'plain/fleet/r7', r.path)), r.sha256);
  assert.ok(ng.log().some((l) => /^MKCOL \/plain\/fleet\/r7\/robot\/ 201$/.test(l)), ng.log().join('\n'));
});

test('index lost after sync: the rebuilt rows are found on the target and not uploaded again', async (t) => {
  const dir = await tempDir(t);
  const root = path.join(dir, 'rec');
  await recordFixture(root, 3);
  const ng = await startNginx(t, path.join(dir, 'ng'));
  let db = open(root);
  let up = uploader(db, root, { url: ng.url });
  await until(db, up, (rs) => rs.every((r) => r.state === 'synced'), 'synced');
  await up.close();
  const n = db.all().length;
  db.close();
  for (const s of ['', '-wal', '-shm']) fs.rmSync(path.join(root, `index.db${s}`), { force: true });
  const svc = createRecordingService({ config: config(root), source: newEngine() });
  await svc.start();
  await svc.close();
  db = open(root);
  t.after(() => db.close());
  assert.ok(db.all().every((r) => r.state === 'closed' && r.origin === 'rebuilt'));
  up = uploader(db, root, { url: ng.url });
  await until(db, up, (rs) => rs.every((r) => r.state === 'synced'), 'synced again');
  const st = up.stats();
  await up.close();
  assert.equal(st.alreadyOnTarget, n);
  assert.equal(st.uploads, 0);
  assert.equal(ng.log().filter((l) => l.startsWith('PUT')).length, n, 'still one PUT per segment');
});

test('connection cut mid-upload: retried, nothing half-stored is marked synced, no duplicates', async (t) => {
  const dir = await tempDir(t);
  const root = path.join(dir, 'rec');
  await recordFixture(root, 3, { width: 640, height: 360 });
  const ng = await startNginx(t, path.join(dir, 'ng'));
  const proxy = await startCuttingProxy(t, ng.port, 3, 64 * 1024);
  const db = open(root);
  t.after(() => db.close());
  const up = uploader(db, root, { url: proxy.url, deleteAfterVerify: true, maxAttempts: 10 });
  const rows = await until(db, up, (rs) => rs.every((r) => r.state === 'synced'), 'synced despite cuts');
  const st = up.stats();
  await up.close();
  assert.equal(proxy.cut(), 3, 'three uploads were cut');
  assert.deepEqual(openFilesUnder(root), [], 'a cut upload leaves no segment file open');
  assert.ok(st.failures >= 3);
  for (const r of rows) assert.equal(sha256File(path.join(ng.www, r.path)), r.sha256);
  const okPuts = ng.log().filter((l) => /^PUT .* 20[14]$/.test(l));
  assert.equal(okPuts.length, rows.length, 'exactly one complete PUT per segment');
});

test('500s: the target is down (network class) — retried on the fast ladder for as long as it lasts, nothing quarantined, nothing deleted (shipped ladders)', async (t) => {
  const dir = await tempDir(t);
  const root = path.join(dir, 'rec');
  await recordFixture(root, 3);
  const ng = await startNginx(t, path.join(dir, 'ng'));
  const db = open(root);
  t.after(() => db.close());
  const up = new Uploader(syncConfigSchema.parse({ url: `${ng.url}/broken`, deleteAfterVerify: true, maxAttempts: 3 }), root, db, silentLog);
  await until(db, up, () => up.stats().retry.network >= 7, 'seven network retries');
  const st = up.stats();
  await up.close();
  const rows = db.all();
  for (const r of rows) {
    assert.equal(r.attempts, 0, 'a 500 is no refusal of the segment');
    assert.notEqual(r.state, 'quarantined');
    assert.equal(r.present, 1);
    assert.ok(fs.existsSync(path.join(root, r.path)), 'kept');
  }
  assert.equal(st.quarantined, 0);
  assert.equal(st.targetState, 'unreachable');
  assert.match(st.targetError ?? '', /500/);
  assert.ok(st.retry.lastDelayMs <= 2000, 'the network ladder tops out at 2 s');
});

test('401: the target refuses everything — nothing quarantined, no body sent (Expect: 100-continue), the error names the auth key; with Basic auth → synced; the secret never reaches stats', async (t) => {
  const dir = await tempDir(t);
  const root = path.join(dir, 'rec');
  await recordFixture(root, 3);
  const ng = await startNginx(t, path.join(dir, 'ng'));
  const db = open(root);
  t.after(() => db.close());
  let up = uploader(db, root, { url: `${ng.url}/auth`, maxAttempts: 1 });
  await until(db, up, () => up.stats().targetRefusals >= 3, 'refused three times');
  let st = up.stats();
  await up.close();
  assert.equal(st.targetState, 'refused');
  assert.match(st.targetError ?? '', /401 .*recordings\.sync\.target\.auth/);
  assert.equal(st.quarantined, 0);
  assert.ok(db.all().every((r) => r.state === 'closed' && r.attempts === 0), 'no segment blamed (maxAttempts 1)');
  assert.equal(st.targetStats.bodyBytesOnRefusal, 0, 'a refused PUT sent no body');
  assert.ok(Number(st.targetStats.expectContinueRefusals) >= 3);
  up = uploader(db, root, { url: `${ng.url}/auth`, auth: { type: 'basic', username: 'robot', password: 's3cret' } });
  const rows = await until(db, up, (rs) => rs.every((r) => r.state === 'synced'), 'synced with auth');
  st = up.stats();
  await up.close();
  for (const r of rows) assert.equal(sha256File(path.join(ng.www, 'auth', r.path)), r.sha256);
  assert.ok(!JSON.stringify(st).includes('s3cret'));
  assert.ok(!JSON.stringify(db.events(1000)).includes('s3cret'));
});

test('a refused upload does not send its body: 401s from the real nginx push near zero bytes (issue 15)', async (t) => {
  const dir = await tempDir(t);
  const root = path.join(dir, 'rec');
  await recordFixture(root, 5, { width: 640, height: 360 });
  const ng = await startNginx(t, path.join(dir, 'ng'));
  const proxy = await startCountingProxy(t, ng.port);
  const db = open(root);
  t.after(() => db.close());
  const total = db.all().reduce((a, r) => a + r.bytes, 0);
  const up = uploader(db, root, { url: `${proxy.url}/auth`, auth: { type: 'basic', username: 'robot', password: 'wrong' }, concurrency: 2 });
  await until(db, up, () => up.stats().targetRefusals >= 10, 'ten refused PUTs');
  const st = up.stats();
  await up.close();
  const refused = st.targetRefusals;
  const sent = proxy.upBytes();
  // each refused PUT costs its request head (~300 B): nothing of the body
  assert.ok(sent < refused * 1024, `${sent} B sent for ${refused} refused PUTs of segments totalling ${total} B`);
  assert.equal(st.targetStats.bodyBytesOnRefusal, 0);
  assert.equal(st.uploadedBytes, 0);
  t.diagnostic(`${refused} refused PUTs: ${sent} B on the wire (segments: ${total} B)`);
});

test('a target that ignores Expect: 100-continue (never sends 100): the body follows after a short wait, the upload completes', async (t) => {
  const dir = await tempDir(t);
  const root = path.join(dir, 'rec');
  await recordFixture(root, 2);
  const target = await startMemoryTarget(t, { ignoreExpect: true });
  const db = open(root);
  t.after(() => db.close());
  const n = db.all().length;
  const up = uploader(db, root, { url: target.url });
  assert.equal(await up.runOnce(), 0);
  const st = up.stats();
  await up.close();
  assert.equal(target.expects(), n, 'every PUT asked for 100-continue');
  assert.equal(st.verified, n);
});

test('issue 14: a target unreachable for longer than maxAttempts × the retry ladder quarantines nothing; back up, everything syncs once (shipped ladders)', async (t) => {
  const dir = await tempDir(t);
  const root = path.join(dir, 'rec');
  await recordFixture(root, 3);
  const ng = await startNginx(t, path.join(dir, 'ng'));
  const proxy = await startCountingProxy(t, ng.port);
  proxy.setDown(true);
  const db = open(root);
  t.after(() => db.close());
  const n = db.all().length;
  const up = new Uploader(syncConfigSchema.parse({ url: `${proxy.url}/robots`, maxAttempts: 2 }), root, db, silentLog);
  await until(db, up, () => up.stats().retry.network >= 6, 'six network retries: three times maxAttempts');
  let st = up.stats();
  assert.equal(st.quarantined, 0);
  assert.equal(st.targetState, 'unreachable');
  assert.match(st.targetError ?? '', /ECONNRESET|ECONNREFUSED|EPIPE|socket hang up/);
  assert.ok(db.all().every((r) => r.attempts === 0 && r.state !== 'quarantined'));
  proxy.setDown(false);
  const rows = await until(db, up, (rs) => rs.every((r) => r.state === 'synced'), 'synced once the target is back');
  st = up.stats();
  await up.close();
  assert.equal(rows.length, n);
  assert.equal(st.verified, n, 'every segment in = verified on the target, none lost, none quarantined');
  assert.equal(ng.log().filter((l) => /^PUT .* 201$/.test(l)).length, n, 'each sent once');
  for (const r of rows) assert.equal(sha256File(path.join(ng.www, 'robots', r.path)), r.sha256);
});

test('issue 14: a target answering 403 for one object quarantines that object only', async (t) => {
  const dir = await tempDir(t);
  const root = path.join(dir, 'rec');
  await recordFixture(root, 3);
  // one extra segment on a track the target refuses (nginx: location ~ /forbidden/ → 403)
  const db = open(root);
  t.after(() => db.close());
  const src = db.all().find((r) => r.kind === 'data')!;
  const rel = src.path.replace('/gps/', '/forbidden/');
  fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
  fs.copyFileSync(path.join(root, src.path), path.join(root, rel));
  const { id: _i, attempts: _a, last_error: _l, next_attempt_ms: _n, synced_ms: _s, present: _p, gone_ms: _g, ...row } = src;
  db.write(() => db.insert({ ...row, path: rel, track: 'forbidden' }));
  const ng = await startNginx(t, path.join(dir, 'ng'));
  const up = new Uploader(syncConfigSchema.parse({ url: `${ng.url}/deny`, maxAttempts: 2, concurrency: 1 }), root, db, silentLog);
  const rows = await until(db, up, (rs) => rs.every((r) => r.state === (r.path === rel ? 'quarantined' : 'synced')), 'the refused one quarantined, the rest synced');
  const st = up.stats();
  await up.close();
  const q = rows.find((r) => r.path === rel)!;
  assert.equal(q.attempts, 2);
  assert.match(q.last_error ?? '', /403/);
  assert.ok(fs.existsSync(path.join(root, rel)), 'kept');
  assert.equal(st.quarantined, 1);
  assert.equal(st.verified, rows.length - 1);
  assert.equal(st.targetState, 'ok');
});

for (const mode of ['truncate', 'pad'] as const) test(`a target that stores ${mode === 'pad' ? 'longer' : 'truncated'} files: verify fails, never synced, never deleted, quarantined after N`, async (t) => {
  const dir = await tempDir(t);
  const root = path.join(dir, 'rec');
  await recordFixture(root, 3);
  const target = await startTruncatingTarget(t, mode);
  const db = open(root);
  t.after(() => db.close());
  const up = uploader(db, root, { url: target.url, deleteAfterVerify: true, maxAttempts: 2 });
  const rows = await until(db, up, (rs) => rs.every((r) => r.state === 'quarantined'), 'quarantined');
  const st = up.stats();
  await up.close();
  assert.equal(st.verified, 0);
  assert.ok(st.verifyFailures >= rows.length);
  for (const r of rows) {
    assert.match(r.last_error ?? '', /target holds \d+ bytes, expected/);
    assert.ok(fs.existsSync(path.join(root, r.path)));
  }
});

test('bandwidth cap holds the upload rate', async (t) => {
  const dir = await tempDir(t);
  const root = path.join(dir, 'rec');
  await recordFixture(root, 2);
  const ng = await startNginx(t, path.join(dir, 'ng'));
  const db = open(root);
  t.after(() => db.close());
  const total = db.all().reduce((a, r) => a + r.bytes, 0);
  const cap = Math.max(64 * 1024, Math.floor(total / 2)); // ≈ 2 s of uploading
  const up = uploader(db, root, { url: ng.url, bandwidthBytesPerSec: cap });
  const t0 = Date.now();
  await until(db, up, (rs) => rs.every((r) => r.state === 'synced'), 'synced');
  const secs = (Date.now() - t0) / 1000;
  await up.close();
  // the first burst (1/8 s of budget) is free; the rest is paced
  assert.ok(secs >= (total - cap / 8) / cap - 0.2, `uploaded ${total} B in ${secs} s under a ${cap} B/s cap`);
});

test("the uplink scheduler's leftover caps the sync too (the lower of it and bandwidthBytesPerSec)", async (t) => {
  const dir = await tempDir(t);
  const root = path.join(dir, 'rec');
  await recordFixture(root, 2);
  const ng = await startNginx(t, path.join(dir, 'ng'));
  const db = open(root);
  t.after(() => db.close());
  const total = db.all().reduce((a, r) => a + r.bytes, 0);
  const cap = Math.max(64 * 1024, Math.floor(total / 2));
  const up = uploader(db, root, { url: ng.url, bandwidthBytesPerSec: cap * 10 });
  assert.equal(up.stats().rateLimitBytesPerSec, cap * 10);
  up.setUplinkCap(cap);
  assert.equal(up.stats().rateLimitBytesPerSec, cap);
  assert.equal(up.stats().uplinkCapBytesPerSec, cap);
  const t0 = Date.now();
  await until(db, up, (rs) => rs.every((r) => r.state === 'synced'), 'synced');
  const secs = (Date.now() - t0) / 1000;
  await up.close();
  assert.ok(secs >= (total - cap / 8) / cap - 0.2, `uploaded ${total} B in ${secs} s under a ${cap} B/s uplink share`);
  up.setUplinkCap(null);
  assert.equal(up.stats().rateLimitBytesPerSec, cap * 10, 'back to the configured cap when the scheduler stops measuring');
});

test('bounded concurrency: uploads overlap, never more than `concurrency` at once; one index commit per synced segment', async (t) => {
  const dir = await tempDir(t);
  const root = path.join(dir, 'rec');
  await recordFixture(root, 5);
  const target = await startOverlapTarget(t, 1000);
  const db = open(root);
  t.after(() => db.close());
  const n = db.all().length;
  assert.ok(n >= 6, `fixture has ${n} segments`);
  const up = uploader(db, root, { url: target.url, concurrency: 2 });
  const tx0 = db.stats().transactions;
  assert.equal(await up.runOnce(), 0);
  const st = up.stats();
  await up.close();
  assert.equal(st.verified, n);
  assert.equal(target.puts(), n, 'one PUT per segment');
  assert.ok(target.overlapped() > 0, 'a second PUT started while the first was in progress');
  assert.equal(target.maxConcurrent(), 2, 'never more than 2 uploads at once');
  assert.equal(st.inFlightCount, 0);
  assert.equal(st.verifyFallbacks, 0, 'a Content-Length body is hashed by the raw reader');
  assert.ok(st.putMs > 0 && st.verifyMs > 0 && st.verifiedBytesRead === db.all().reduce((a, r) => a + r.bytes, 0));
  // the `uploading` mark rides in the same commit as `synced`: one transaction per segment
  assert.equal(db.stats().transactions - tx0, n);
  assert.ok(db.all().every((r) => r.state === 'synced'));
});

test('verify GET: a target answering in chunked encoding is read by the http client instead (fallback), still size + sha256', async (t) => {
  const dir = await tempDir(t);
  const root = path.join(dir, 'rec');
  await recordFixture(root, 2);
  const target = await startMemoryTarget(t, { chunked: true });
  const db = open(root);
  t.after(() => db.close());
  const n = db.all().length;
  const up = uploader(db, root, { url: target.url });
  assert.equal(await up.runOnce(), 0);
  const st = up.stats();
  await up.close();
  assert.equal(st.verified, n);
  assert.equal(st.verifyFallbacks, n);
  assert.ok(db.all().every((r) => r.state === 'synced'));
});

test('checksum headers of the common targets are understood', () => {
  const hex = 'a'.repeat(64);
  assert.equal(checksumHeader({ 'x-checksum-sha256': hex }), hex);
  assert.equal(checksumHeader({ 'oc-checksum': `SHA256:${hex}` }), hex);
  assert.equal(checksumHeader({ 'repr-digest': `sha-256=:${Buffer.from(hex, 'hex').toString('base64')}:` }), hex);
  assert.equal(checksumHeader({ etag: '"x"' }), null);
});

test('the running service uploads segments as they close; an upload cut by a crash (row left uploading) is re-sent after restart', async (t) => {
  const dir = await tempDir(t);
  const root = path.join(dir, 'rec');
  const ng = await startNginx(t, path.join(dir, 'ng'));
  const engine = newEngine();
  engine.addStaticChannel({ id: 'robot' });
  const sync = { url: `${ng.url}/live`, retryInitialMs: 10, retryMaxMs: 50, pollMs: 50 };
  const svc = createRecordingService({ config: config(root, { segmentDurationMs: 1000, fragmentDurationMs: 500, sync }), source: engine });
  t.after(() => svc.close());
  await svc.start();
  const cam = engine.publisher({ channel: 'robot', source: 'base', track: 'cam' }, { label: 't' });
  cam.setMime('video/h264');
  svc.discover();
  const { h264Units } = await import('./helpers.js');
  const { captureClockUs } = await import('../../runtime/engine/api.js');
  const aus = h264Units({ seconds: 4 });
  const t0 = captureClockUs();
  for (let i = 0; i < aus.length; i++) {
    cam.write({ ts: t0 + Math.round((i * 1e6) / 30), wallclock: Date.now(), key: aus[i]!.key, data: aus[i]!.data });
    await svc.settled();
  }
  // segments closed so far get uploaded while recording goes on
  await waitFor(() => (svc.stats().sync?.verified ?? 0) >= 2, 'live uploads', 20_000);
  await svc.close();

  // a crash mid-upload leaves a row `uploading` (and maybe a partial copy): restart re-sends it
  const db = open(root);
  const victim = db.all().find((r) => r.state === 'synced')!;
  db.write(() => db.update(victim.path, { state: 'uploading' }));
  fs.writeFileSync(path.join(ng.www, 'live', victim.path), 'half');
  db.close();
  const svc2 = createRecordingService({ config: config(root, { sync }), source: newEngine() });
  t.after(() => svc2.close());
  await svc2.start();
  assert.equal(svc2.stats().recovery!.uploadsReset, 1);
  const db2 = IndexDb.openReader(path.join(root, 'index.db'));
  t.after(() => db2.close());
  await waitFor(() => db2.all().every((r) => r.state === 'synced'), 'everything synced after restart', 20_000);
  await svc2.close();
  assert.equal(sha256File(path.join(ng.www, 'live', victim.path)), victim.sha256, 'the half copy was replaced and verified');
});

test('https target with a private CA: refused without caFile (nothing quarantined), synced with it (Bearer auth header sent, never logged)', async (t) => {
  const dir = await tempDir(t);
  const root = path.join(dir, 'rec');
  await recordFixture(root, 2);
  const pki = makeCa(path.join(dir, 'pki'));
  const ng = await startNginx(t, path.join(dir, 'ng'), { tls: { cert: pki.cert, key: pki.key } });
  assert.match(ng.url, /^https:/);
  const db = open(root);
  t.after(() => db.close());
  let up = uploader(db, root, { url: ng.url, maxAttempts: 1, auth: { type: 'bearer', token: 'tok-123' } });
  await until(db, up, () => up.stats().targetRefusals >= 2, 'refused: unknown CA');
  await up.close();
  assert.equal(up.stats().targetState, 'refused');
  assert.match(up.stats().targetError ?? '', /certificate.*caFile/i);
  assert.ok(db.all().every((r) => r.state === 'closed' && r.attempts === 0), 'a TLS config problem blames no segment');
  up = uploader(db, root, { url: ng.url, caFile: pki.ca, auth: { type: 'bearer', token: 'tok-123' } });
  const rows = await until(db, up, (rs) => rs.every((r) => r.state === 'synced'), 'synced over https');
  const st = up.stats();
  await up.close();
  for (const r of rows) assert.equal(sha256File(path.join(ng.www, r.path)), r.sha256);
  assert.ok(!JSON.stringify(st).includes('tok-123'));
});
