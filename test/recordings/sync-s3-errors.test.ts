// What an S3 error means for the sync (pure): whose fault it is (network, the whole target, this
// object) and a message that says what to fix — the region hint, the robot's clock, the bucket,
// the credentials — never holding a secret. Plus the multipart helpers S3's ETag/checksum rules need.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { test } from 'node:test';
import fc from 'fast-check';
import { s3Failure } from '../../recordings/sync-targets/s3-errors.js';
import { expandPrefix } from '../../recordings/sync-targets/s3.js';
import { compositeSha256, multipartEtag, partPlan } from '../../recordings/sync-targets/multipart-state.js';
import { asSyncFailure } from '../../recordings/sync-targets/target.js';
import { webdavStatusFailure } from '../../recordings/sync-targets/webdav.js';
import { syncConfigSchema } from '../../recordings/config.js';

const where = { bucket: 'fleet', key: 'r1/robot/base/cam/x.mp4', region: 'eu-central-1', endpoint: 'https://s3.eu-central-1.amazonaws.com', op: 'PutObject' };

test('wrong region: the region the bucket is in is named, with the key to set', () => {
  const f = s3Failure({ name: 'AuthorizationHeaderMalformed', status: 400, region: 'us-west-2', message: "the region 'eu-central-1' is wrong; expecting 'us-west-2'" }, where);
  assert.equal(f.code, 'S3_WRONG_REGION');
  assert.equal(f.scope, 'target');
  assert.equal(f.cls, 'refused');
  assert.match(f.message, /bucket is in region us-west-2: set recordings\.sync\.target\.region: us-west-2/);
  // a HEAD answers 301 with no body, only x-amz-bucket-region
  const h = s3Failure({ name: '301', status: 301, region: 'ap-southeast-2' }, { ...where, op: 'HeadObject' });
  assert.equal(h.code, 'S3_WRONG_REGION');
  assert.match(h.message, /region ap-southeast-2/);
  assert.match(s3Failure({ name: 'PermanentRedirect', status: 301 }, where).message, /another region or endpoint/);
});

test('clock skew: says the robot clock is off and how to fix it', () => {
  const f = s3Failure({ name: 'RequestTimeTooSkewed', status: 403, serverTime: '2026-05-01T10:00:00Z' }, where);
  assert.equal(f.code, 'S3_CLOCK_SKEW');
  assert.equal(f.scope, 'target');
  assert.match(f.message, /server time 2026-05-01T10:00:00Z/);
  assert.match(f.message, /robot's clock is off.*NTP/);
});

test('credentials, bucket, access denied, digests, busy servers, network errors: the right class and scope', () => {
  const cases: Array<[Parameters<typeof s3Failure>[0], string, 'network' | 'refused', 'object' | 'target']> = [
    [{ name: 'InvalidAccessKeyId', status: 403 }, 'S3_CREDENTIALS', 'refused', 'target'],
    [{ name: 'SignatureDoesNotMatch', status: 403 }, 'S3_CREDENTIALS', 'refused', 'target'],
    [{ name: 'ExpiredToken', status: 400 }, 'S3_CREDENTIALS', 'refused', 'target'],
    [{ name: 'CredentialsProviderError' }, 'S3_NO_CREDENTIALS', 'refused', 'target'],
    [{ name: 'NoSuchBucket', status: 404 }, 'S3_NO_BUCKET', 'refused', 'target'],
    [{ name: 'AccessDenied', status: 403 }, 'S3_ACCESS_DENIED', 'refused', 'object'],
    [{ name: 'Forbidden', status: 403 }, 'S3_ACCESS_DENIED', 'refused', 'object'],
    [{ name: 'BadDigest', status: 400 }, 'S3_BAD_DIGEST', 'refused', 'object'],
    [{ name: 'XAmzContentChecksumMismatch', status: 400 }, 'S3_BAD_DIGEST', 'refused', 'object'],
    [{ name: 'EntityTooLarge', status: 400 }, 'S3_REFUSED', 'refused', 'object'],
    [{ name: 'NotFound', status: 404 }, 'S3_NOT_FOUND', 'refused', 'object'],
    [{ name: 'NotImplemented', status: 501 }, 'S3_UNSUPPORTED', 'refused', 'object'],
    [{ name: 'SlowDown', status: 503 }, 'SYNC_NETWORK', 'network', 'target'],
    [{ name: 'InternalError', status: 500 }, 'SYNC_NETWORK', 'network', 'target'],
    [{ name: 'RequestTimeout', status: 400 }, 'SYNC_NETWORK', 'network', 'target'],
    [{ name: 'Unknown', status: 502 }, 'SYNC_NETWORK', 'network', 'target'],
    [{ name: 'Error', errno: 'ECONNREFUSED' }, 'SYNC_NETWORK', 'network', 'target'],
    [{ name: 'TimeoutError', errno: 'ETIMEDOUT' }, 'SYNC_NETWORK', 'network', 'target'],
  ];
  for (const [facts, code, cls, scope] of cases) {
    const f = s3Failure(facts, where);
    assert.deepEqual([f.code, f.cls, f.scope], [code, cls, scope], JSON.stringify(facts));
  }
  assert.match(s3Failure({ name: 'NoSuchBucket', status: 404 }, where).message, /bucket "fleet" does not exist at https:\/\/s3\.eu-central-1/);
  assert.match(s3Failure({ name: 'AccessDenied', status: 403 }, where).message, /s3:PutObject and s3:GetObject/);
});

test('property: any S3 error yields a classified failure whose message never holds the secret', () => {
  const secret = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';
  const redact = (s: string) => s.split(secret).join('***');
  fc.assert(
    fc.property(
      fc.record({
        name: fc.oneof(fc.constantFrom('AccessDenied', 'NoSuchBucket', 'RequestTimeTooSkewed', 'SignatureDoesNotMatch', 'BadDigest', 'SlowDown', 'Weird'), fc.string({ maxLength: 20 })),
        status: fc.option(fc.integer({ min: 100, max: 599 }), { nil: undefined }),
        message: fc.option(fc.oneof(fc.string({ maxLength: 400 }), fc.constant(`the key ${secret} is wrong`)), { nil: undefined }),
        region: fc.option(fc.constantFrom('us-east-1', 'auto'), { nil: undefined }),
        errno: fc.option(fc.constantFrom('ECONNRESET', 'EPIPE', 'X'), { nil: undefined }),
      }),
      (facts) => {
        const f = s3Failure(facts, where, redact);
        assert.ok(f.cls === 'network' || f.cls === 'refused');
        assert.ok(f.scope === 'object' || f.scope === 'target');
        assert.ok(!f.message.includes(secret));
        assert.ok(f.message.length < 1000);
      },
    ),
    { numRuns: 500 },
  );
});

test('WebDAV answers: 401 and 507 are the target, 403 this path, 5xx/408/429 the network', () => {
  assert.deepEqual(pick(webdavStatusFailure('PUT', 401)), ['SYNC_AUTH', 'refused', 'target']);
  assert.deepEqual(pick(webdavStatusFailure('PUT', 507)), ['SYNC_TARGET_FULL', 'refused', 'target']);
  assert.deepEqual(pick(webdavStatusFailure('PUT', 403)), ['SYNC_FORBIDDEN', 'refused', 'object']);
  assert.deepEqual(pick(webdavStatusFailure('PUT', 413)), ['SYNC_PUT', 'refused', 'object']);
  for (const s of [500, 502, 503, 408, 429]) assert.equal(webdavStatusFailure('PUT', s).cls, 'network', String(s));
  const tlsErr = Object.assign(new Error('self-signed certificate'), { code: 'DEPTH_ZERO_SELF_SIGNED_CERT' });
  assert.deepEqual(pick(asSyncFailure(tlsErr)), ['SYNC_TLS', 'refused', 'target']);
  assert.deepEqual(pick(asSyncFailure(Object.assign(new Error('x'), { code: 'ECONNRESET' }))), ['SYNC_NETWORK', 'network', 'target']);
});

function pick(f: { code: string; cls: string; scope: string }): [string, string, string] {
  return [f.code, f.cls, f.scope];
}

test("multipart: S3's multipart ETag and composite SHA-256, and the part plan (≤ 10 000 parts)", () => {
  const parts = [Buffer.from('a'.repeat(100)), Buffer.from('b'.repeat(50))];
  const md5s = parts.map((p) => crypto.createHash('md5').update(p).digest('hex'));
  const expect = crypto.createHash('md5').update(Buffer.concat(md5s.map((m) => Buffer.from(m, 'hex')))).digest('hex');
  assert.equal(multipartEtag(md5s), `${expect}-2`);
  const shas = parts.map((p) => crypto.createHash('sha256').update(p).digest('base64'));
  assert.match(compositeSha256(shas), /^[A-Za-z0-9+/]{43}=-2$/);
  const MiB = 1048576;
  assert.deepEqual(partPlan(12 * MiB + 5, 5 * MiB).map((p) => p.length), [5 * MiB, 5 * MiB, 2 * MiB + 5]);
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 200 * 1024 * MiB }), fc.integer({ min: 5, max: 64 }), (bytes, mib) => {
      const plan = partPlan(bytes, mib * MiB);
      assert.ok(plan.length <= 10_000);
      assert.equal(plan.reduce((a, p) => a + p.length, 0), bytes);
      plan.forEach((p, i) => assert.equal(p.part, i + 1));
    }),
  );
});

test('config: S3 target defaults, the older flat WebDAV form still accepted, bad keys named', () => {
  const c = syncConfigSchema.parse({ target: { kind: 's3', bucket: 'fleet-recordings' } });
  assert.equal(c.target.kind, 's3');
  if (c.target.kind !== 's3') return;
  assert.equal(c.target.region, 'us-east-1');
  assert.equal(c.target.prefix, '{hostname}/');
  assert.equal(c.target.multipart.thresholdBytes, 16 * 1024 * 1024);
  assert.equal(c.networkRetryInitialMs, 250);
  const old = syncConfigSchema.parse({ url: 'http://dav.example/robots', auth: { type: 'bearer', token: 't' } });
  assert.equal(old.target.kind, 'webdav');
  assert.equal(syncConfigSchema.safeParse({ target: { kind: 's3', bucket: 'Bad_Bucket' } }).success, false);
  assert.equal(syncConfigSchema.safeParse({ target: { kind: 's3', bucket: 'b-1', credentials: { accessKeyId: 'A' } } }).success, false, 'a key id without a secret');
  assert.equal(syncConfigSchema.safeParse({ target: { kind: 's3', bucket: 'b-1', sseKmsKeyId: 'k' } }).success, false, 'a KMS key without aws:kms');
  assert.equal(syncConfigSchema.safeParse({ target: { kind: 's3', bucket: 'b-1', multipart: { partSizeBytes: 1024 } } }).success, false, 'parts under 5 MiB');
  assert.equal(expandPrefix('{hostname}/cams/', 'robot 7.local'), 'robot-7.local/cams/');
});

test('--print-config hides the S3 secret key and session token', async (t) => {
  const { execFile } = await import('node:child_process');
  const fs = await import('node:fs');
  const os = await import('node:os');
  const path = await import('node:path');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'print-s3-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const f = path.join(dir, 'c.yaml');
  fs.writeFileSync(f, 'recordings:\n  sync:\n    target:\n      kind: s3\n      bucket: fleet\n      credentials: { accessKeyId: AKIAROBOT, secretAccessKey: very-secret-key-1, sessionToken: very-secret-token-2 }\n');
  const fromSource = import.meta.url.endsWith('.ts');
  const cli = path.join(import.meta.dirname, '..', '..', 'runtime', fromSource ? 'cli.ts' : 'cli.js');
  const out = await new Promise<string>((resolve, reject) =>
    execFile(process.execPath, [...(fromSource ? ['--import', 'tsx'] : []), cli, '--print-config', '--config', f], (err, stdout) => (err ? reject(err) : resolve(stdout))),
  );
  assert.ok(!out.includes('very-secret-key-1') && !out.includes('very-secret-token-2'), 'no secret printed');
  const cfg = JSON.parse(out) as { recordings: { sync: { target: { credentials: Record<string, string> } } } };
  assert.equal(cfg.recordings.sync.target.credentials.secretAccessKey, '***');
  assert.equal(cfg.recordings.sync.target.credentials.accessKeyId, 'AKIAROBOT');
});
