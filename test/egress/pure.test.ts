// Pure egress pieces: tables and fast-check properties (arbitrary input only ever gives the
// typed error; hostile lengths never allocate past the bounds).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { EdgeError } from '../../runtime/engine/api.js';
import { egressConfigSchema } from '../../runtime/egress/config.js';
import { H264Depacketizer, joinAnnexB, packetizeH264, ParamSetCache, splitAnnexB, nalType, NAL } from '../../runtime/egress/h264-rtp.js';
import { classifyClose, connectErrorCode, GopGate, pangSessionUrl, redactPangUrl, RepeatGate } from '../../runtime/egress/pang-link.js';
import { answerRejectsVideo, parseSdp, parseTrickleFragment, preferH264, trickleFragment, validateOffer } from '../../runtime/egress/sdp.js';
import { bearerOk } from '../../runtime/egress/whip-ingest.js';
import { sanitize } from '../../runtime/egress/pang-publisher.js';

const nal = (type: number, len: number, fill = 0x11): Buffer => {
  const b = Buffer.alloc(len, fill);
  b[0] = 0x60 | type;
  return b;
};

test('packetize → depacketize round-trips access units (single NAL and FU-A), marker on the last packet', () => {
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.constantFrom(1, 5, 6, 7, 8), fc.integer({ min: 2, max: 5000 })), { minLength: 1, maxLength: 6 }), fc.integer({ min: 100, max: 1400 }), (spec, mtu) => {
      const nals = spec.map(([t, len]) => nal(t, len));
      const au = joinAnnexB(nals);
      const pkts = packetizeH264(au, mtu);
      assert.ok(pkts.every((p) => p.length <= mtu));
      const d = new H264Depacketizer();
      // make it start at an IDR so the depacketizer's "wait for IDR" gate opens
      const first = d.push(Buffer.from(nal(5, 10)), 0, 1, true);
      assert.equal(first.length, 1);
      const out = pkts.flatMap((p, i) => d.push(p, (i + 1) & 0xffff, 2, i === pkts.length - 1));
      assert.equal(out.length, 1);
      assert.deepEqual(splitAnnexB(out[0]!.au), nals);
    }),
  );
});

test('depacketizer: arbitrary packets never throw, AUs stay within the bound, a gap waits for the next IDR', () => {
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.uint8Array({ maxLength: 300 }), fc.integer({ min: 0, max: 3 }), fc.boolean()), { maxLength: 60 }), (pkts) => {
      const d = new H264Depacketizer(1000);
      let seq = 0;
      let ts = 0;
      for (const [bytes, step, marker] of pkts) {
        seq = (seq + step) & 0xffff;
        ts += marker ? 3000 : 0;
        for (const au of d.push(Buffer.from(bytes), seq, ts, marker)) assert.ok(au.au.length <= 1000 + 4 * 64);
      }
    }),
  );
  const d = new H264Depacketizer();
  assert.equal(d.push(nal(1, 20), 0, 0, true).length, 0, 'no IDR yet: dropped');
  assert.equal(d.push(nal(5, 20), 1, 1, true).length, 1);
  assert.equal(d.push(nal(1, 20), 3, 2, true).length, 0, 'gap: dropped');
  assert.equal(d.push(nal(1, 20), 4, 3, true).length, 0, 'still waiting for an IDR');
  assert.equal(d.push(nal(5, 20), 5, 4, true).length, 1);
  assert.ok(d.counters.lossDiscards >= 3);
});

test('splitAnnexB never throws; ParamSetCache puts SPS/PPS in front of a bare IDR', () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 500 }), (b) => void splitAnnexB(Buffer.from(b))));
  const c = new ParamSetCache();
  const sps = nal(7, 10);
  const pps = nal(8, 5);
  c.apply(joinAnnexB([sps, pps, nal(5, 30)]));
  const bare = c.apply(joinAnnexB([nal(9, 2), nal(5, 30)]));
  assert.deepEqual(splitAnnexB(bare).map(nalType), [NAL.SPS, NAL.PPS, NAL.AUD, NAL.IDR]);
  const p = c.apply(joinAnnexB([nal(1, 30)]));
  assert.deepEqual(splitAnnexB(p).map(nalType), [NAL.SLICE], 'non-IDR untouched');
  assert.equal(c.prepended, 1);
});

test('GopGate: after a video drop, nothing but a keyframe is sent; data records drop one by one', () => {
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 1, max: 200_000 }), fc.integer({ min: 0, max: 600_000 })), { maxLength: 200 }), (frames) => {
      const g = new GopGate(256 * 1024);
      let dropping = false;
      for (const [key, size, buffered] of frames) {
        const d = g.decide('video', key, size, buffered);
        if (d === 'send') {
          if (dropping) assert.ok(key, 'resumed at a keyframe');
          dropping = false;
          assert.ok(buffered === 0 || buffered + size <= 256 * 1024 || (key && buffered <= 128 * 1024));
        } else dropping = true;
      }
    }),
  );
  const g = new GopGate(1000);
  assert.equal(g.decide('data', true, 600, 600), 'drop-buffer-full');
  assert.equal(g.decide('data', true, 300, 600), 'send');
  assert.equal(g.decide('video', true, 5000, 0), 'send', 'an oversize keyframe on an empty socket still goes');
});

test('close classification, connect error codes, URLs and redaction', () => {
  assert.equal(classifyClose(1006, 5), 'refused');
  assert.equal(classifyClose(1006, 60_000), 'dropped');
  assert.equal(classifyClose(4401, 60_000), 'refused');
  assert.equal(classifyClose(1000, 5), 'closed');
  assert.equal(connectErrorCode({ code: 'ECONNREFUSED' }), 'UPSTREAM_CONN_REFUSED');
  assert.equal(connectErrorCode({ code: 'ENOTFOUND' }), 'UPSTREAM_DNS');
  assert.equal(connectErrorCode({ code: 'DEPTH_ZERO_SELF_SIGNED_CERT' }), 'UPSTREAM_TLS');
  assert.equal(connectErrorCode({ message: 'Unexpected server response: 403' }), 'UPSTREAM_HTTP_REFUSED');
  const u = pangSessionUrl({ url: 'wss://moth.example:8277/base/', instant: 'robot 1', key: 's3cr3t', source: 'base', track: 'video', timeoutSec: 30 }, 'pub');
  assert.equal(u, 'wss://moth.example:8277/base/pang/ws/pub?channel=instant&name=robot+1&source=base&track=video&timeout=30&key=s3cr3t');
  assert.ok(!redactPangUrl(u).includes('s3cr3t'));
  assert.ok(!redactPangUrl('wss://user:pw@h/x?token=abc').match(/pw|abc/));
  assert.equal(sanitize('connect to ws://h/?key=abc failed for abc', 'abc'), 'connect to ws://h/?key=*** failed for ***');
  const r = new RepeatGate(1000);
  assert.equal(r.hit(0), 1);
  assert.equal(r.hit(10), null);
  assert.equal(r.hit(20), null);
  assert.equal(r.hit(1500), 3);
});

const OFFER = [
  'v=0', 'o=- 1 2 IN IP4 127.0.0.1', 's=-', 't=0 0', 'a=group:BUNDLE 0',
  'm=video 9 UDP/TLS/RTP/SAVPF 96 102 106 108', 'c=IN IP4 0.0.0.0', 'a=mid:0', 'a=recvonly',
  'a=ice-ufrag:abcd', 'a=ice-pwd:0123456789012345678901', 'a=fingerprint:sha-256 AA:BB',
  'a=rtpmap:96 VP8/90000', 'a=rtpmap:102 H264/90000', 'a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f',
  'a=rtpmap:106 H264/90000', 'a=fmtp:106 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f',
  'a=rtpmap:108 H264/90000', 'a=fmtp:108 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f', '',
].join('\r\n');

test('SDP: offer validation, H.264 preference, answer checks, trickle fragments; fuzzed input gives only typed errors', () => {
  validateOffer(OFFER, { video: 'h264', direction: 'recv' });
  assert.throws(() => validateOffer(OFFER, { video: 'h264', direction: 'send' }), /SDP_MALFORMED/);
  const pref = preferH264(OFFER, '4d001f');
  assert.match(pref, /m=video 9 UDP\/TLS\/RTP\/SAVPF 108 106 102 96/);
  assert.match(preferH264(OFFER, undefined), /m=video 9 UDP\/TLS\/RTP\/SAVPF 106 108 102 96/);
  assert.equal(answerRejectsVideo(OFFER.replace('m=video 9', 'm=video 0')), true);
  assert.equal(answerRejectsVideo(OFFER), false);
  const frag = trickleFragment('u', 'p', '0', ['candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host'], true);
  assert.deepEqual(parseTrickleFragment(frag), { candidates: ['candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host'], end: true, ufrag: 'u', mid: '0' });
  // RFC 9725 §4.3.1 form: BUNDLE group, the first media's m= line and mid, then credentials and candidates.
  const frag2 = trickleFragment('EsAw', 'P2uYro0UCOQ4zxjKXaWCBui1', '0', ['candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host'], true, { mLine: 'm=video 9 UDP/TLS/RTP/SAVPF 96', bundle: ['0', '1'] });
  assert.equal(frag2, 'a=group:BUNDLE 0 1\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\na=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host\r\na=end-of-candidates\r\n');
  fc.assert(
    fc.property(fc.string({ maxLength: 400 }), (s) => {
      for (const f of [() => parseSdp(s), () => validateOffer(`v=0\r\n${s}`, { video: 'h264', direction: 'recv' }), () => parseTrickleFragment(s), () => preferH264(s, '42e01f')]) {
        try {
          f();
        } catch (e) {
          assert.ok(e instanceof EdgeError, String(e));
        }
      }
    }),
  );
});

test('egress config: defaults, key paths in errors, secrets accepted but typed', () => {
  const c = egressConfigSchema.parse({
    upstream: [{ url: 'wss://moth.example:8277', channel: '0123456789abcdefghij', key: 'k', from: 'cam/base/video' }],
    whip: [{ url: 'https://mediamtx.local:8889/robot/whip', token: 't', tracks: ['cam/base/video'] }],
  });
  assert.equal(c.upstream[0]!.maxBufferedBytes, 512 * 1024);
  assert.deepEqual(c.upstream[0]!.from, { channel: 'cam', source: 'base', track: 'video' });
  assert.equal(c.whep.enabled, true);
  assert.equal(c.whipIngest.enabled, false);
  assert.equal(c.backoff.maxMs, 60_000);
  const bad = egressConfigSchema.safeParse({ upstream: [{ url: 'http://x', from: 'cam/base', instant: 'x', channel: '0123456789abcdefghij' }] });
  assert.equal(bad.success, false);
  const paths = bad.error!.issues.map((i) => i.path.join('.'));
  assert.ok(paths.includes('upstream.0.url') && paths.includes('upstream.0.from'), paths.join(','));
});

test('bearer check is exact', () => {
  assert.equal(bearerOk('Bearer abc', 'abc'), true);
  assert.equal(bearerOk('bearer abc', 'abc'), true);
  assert.equal(bearerOk('Bearer abcd', 'abc'), false);
  assert.equal(bearerOk(undefined, 'abc'), false);
  assert.equal(bearerOk(undefined, undefined), true);
});

test('SessionTable (WHEP and WHIP ingest): admission bound, refusals by code, ends by reason, idempotent take, close', async () => {
  const { SessionTable } = await import('../../runtime/egress/session-table.js');
  const tb = new SessionTable<{ n: number }>('WHEP', 2);
  tb.admit('viewers');
  tb.add('a', { n: 1 });
  tb.add('b', { n: 2 });
  assert.throws(() => tb.admit('viewers'), (e: unknown) => (e as { code: string; status: number }).code === 'WHEP_TOO_MANY_SESSIONS' && (e as { status: number }).status === 503);
  assert.throws(() => tb.reject('SDP_MALFORMED', 400, 'bad'), (e: unknown) => (e as { status: number }).status === 400);
  assert.deepEqual(tb.take('a', 'deleted'), { n: 1 });
  assert.equal(tb.take('a', 'deleted'), undefined, 'ending twice counts once');
  assert.deepEqual(tb.close(), ['b']);
  assert.throws(() => tb.admit('viewers'), (e: unknown) => (e as { code: string }).code === 'WHEP_CLOSED');
  tb.take('b', 'peer failed');
  assert.deepEqual(tb.counters(), { created: 2, ended: 2, endedBy: { deleted: 1, 'peer failed': 1 }, rejected: { WHEP_TOO_MANY_SESSIONS: 1, SDP_MALFORMED: 1, WHEP_CLOSED: 1 } });
});
