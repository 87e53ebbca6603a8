// The native RTSP client's pure modules: RTSP framing ($-interleaved included), Basic/Digest auth
// (stale nonce), SDP (control URLs, sprop-parameter-sets), Transport/Session headers, RTP and the
// H.264 depacketizer (single NAL, STAP-A, FU-A, gaps → next keyframe, SPS/PPS injection), the
// RTP clock (wrap). fast-check: arbitrary bytes end only in the typed error, and no hostile length
// makes anything buffer without bound.

import test from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { RtspAuth } from '../../drivers/camera/rtsp-client/auth.js';
import {
  interleave,
  MAX_BODY_BYTES,
  MAX_HEADER_BYTES,
  parseSessionHeader,
  parseTransportHeader,
  RtspError,
  RtspReader,
  serializeRequest,
  type RtspMessage,
} from '../../drivers/camera/rtsp-client/message.js';
import { H264Depacketizer, parseRtp, readRtpHeader, RtpClock, RtpReorderBuffer, SEQ_RESYNC_AFTER, type DepacketizedUnit, type RtpHeader, type RtpPacket } from '../../drivers/camera/rtsp-client/rtp-h264.js';
import { parseSdp, resolveControl } from '../../drivers/camera/rtsp-client/sdp.js';
import { parseAuthorization, verifyAuthorization } from '../../drivers/ptz/digest.js';
import { packetizeH264 } from '../../runtime/egress/h264-rtp.js';
import { nalUnits } from '../../runtime/engine/h264.js';
import { encodeH264 } from '../support/app.js';
import { tempDir } from './helpers.js';

const isRtspError = (e: unknown) => e instanceof RtspError;

// ------------------------------------------------------------------ framing

const DESCRIBE_REPLY =
  'RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Base: rtsp://10.0.0.5/live/\r\nContent-Type: application/sdp\r\nContent-Length: 10\r\n\r\nv=0\r\no=- 1\r\n';

test('RTSP reader: responses, server requests and $-frames on one stream, split at every byte', () => {
  const rtp = Buffer.from([0x80, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0x65, 1, 2]);
  const stream = Buffer.concat([
    Buffer.from(DESCRIBE_REPLY, 'latin1'),
    interleave(0, rtp),
    Buffer.from('\r\n'),
    Buffer.from('GET_PARAMETER rtsp://10.0.0.9/ RTSP/1.0\r\nCSeq: 7\r\n\r\n', 'latin1'),
    interleave(1, Buffer.alloc(8, 0x81)),
    Buffer.from('RTSP/1.0 401 Unauthorized\r\nCSeq: 3\r\nWWW-Authenticate: Basic realm="a"\r\nWWW-Authenticate: Digest realm="a", nonce="n"\r\n\r\n', 'latin1'),
  ]);
  const check = (msgs: RtspMessage[]) => {
    assert.deepEqual(msgs.map((m) => m.type), ['response', 'interleaved', 'request', 'interleaved', 'response']);
    const [d, i0, rq, , u] = msgs as [Extract<RtspMessage, { type: 'response' }>, Extract<RtspMessage, { type: 'interleaved' }>, Extract<RtspMessage, { type: 'request' }>, unknown, Extract<RtspMessage, { type: 'response' }>];
    assert.equal(d.status, 200);
    assert.equal(d.headers.get('content-base')![0], 'rtsp://10.0.0.5/live/');
    assert.equal(d.body.toString(), 'v=0\r\no=- 1');
    assert.equal(i0.channel, 0);
    assert.deepEqual(i0.data, rtp);
    assert.equal(rq.method, 'GET_PARAMETER');
    assert.equal(u.status, 401);
    assert.equal(u.headers.get('www-authenticate')!.length, 2, 'repeated headers keep every value');
  };
  check(new RtspReader().push(stream));
  for (let cut = 1; cut < stream.length; cut++) {
    const r = new RtspReader();
    check([...r.push(stream.subarray(0, cut)), ...r.push(stream.subarray(cut))]);
    assert.equal(r.buffered, 0);
    // the socket path: chunks in one reused buffer, frames handed over as ranges
    const shared = Buffer.alloc(stream.length);
    const frames: Array<[number, string]> = [];
    const onFrame = (ch: number, b: Buffer, s: number, e: number) => frames.push([ch, b.toString('hex', s, e)]);
    const t = new RtspReader();
    stream.copy(shared, 0, 0, cut);
    const m1 = t.push(shared.subarray(0, cut), true, onFrame);
    shared.fill(0x55);
    stream.copy(shared, 0, cut);
    const m2 = t.push(shared.subarray(0, stream.length - cut), true, onFrame);
    assert.deepEqual([...m1, ...m2].map((m) => m.type), ['response', 'request', 'response']);
    assert.deepEqual(frames, [[0, rtp.toString('hex')], [1, '81'.repeat(8)]], `cut ${cut}`);
  }
});

test('RTSP reader: a header block or body over the bound is a typed error, not a buffer', () => {
  const r = new RtspReader();
  assert.throws(() => r.push(Buffer.from('RTSP/1.0 200 OK\r\nX: ' + 'a'.repeat(MAX_HEADER_BYTES + 10), 'latin1')), (e: unknown) => isRtspError(e) && (e as RtspError).code === 'RTSP_BAD_MESSAGE');
  assert.throws(() => new RtspReader().push(Buffer.from(`RTSP/1.0 200 OK\r\nContent-Length: ${MAX_BODY_BYTES + 1}\r\n\r\n`, 'latin1')), isRtspError);
  assert.throws(() => new RtspReader().push(Buffer.from('RTSP/1.0 200 OK\r\nContent-Length: -5\r\n\r\n', 'latin1')), isRtspError);
  assert.throws(() => new RtspReader().push(Buffer.from([0x00, 0xff, 0x13, 0x37, 0x99, 0x01])), isRtspError, 'binary junk fails at once');
  assert.throws(() => serializeRequest('OPTIONS', 'rtsp://h/x', [['X', 'a\r\nInjected: 1']]), isRtspError, 'no header injection');
  const req = serializeRequest('SETUP', 'rtsp://h/x/trackID=1', [['CSeq', '3'], ['Transport', 'RTP/AVP/TCP;unicast;interleaved=0-1']]).toString('latin1');
  assert.equal(req, 'SETUP rtsp://h/x/trackID=1 RTSP/1.0\r\nCSeq: 3\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n');
});

test('RTSP reader fuzz: arbitrary bytes in arbitrary chunks → messages or RtspError, bounded buffer', () => {
  const piece = fc.oneof(
    fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a)),
    fc.constantFrom('RTSP/1.0 200 OK\r\n', 'CSeq: 1\r\n', 'Content-Length: 5\r\n', 'Content-Length: 99999999\r\n', '\r\n', '$', 'OPTIONS * RTSP/1.0\r\n').map((s) => Buffer.from(s, 'latin1')),
    fc.tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 0xffff })).map(([c, l]) => Buffer.from([0x24, c, l >> 8, l & 0xff])),
  );
  fc.assert(
    fc.property(fc.array(piece, { maxLength: 40 }), (pieces) => {
      const r = new RtspReader();
      try {
        for (const p of pieces) {
          r.push(p);
          assert.ok(r.buffered <= MAX_HEADER_BYTES + MAX_BODY_BYTES + 4, `buffered ${r.buffered}`);
        }
      } catch (e) {
        if (!isRtspError(e)) throw e;
      }
    }),
    { numRuns: 2000 },
  );
});

test('RTSP reader fuzz: frames and messages cut at arbitrary chunk boundaries in one reused read buffer → the same as one big chunk', () => {
  const item = fc.oneof(
    { weight: 6, arbitrary: fc.tuple(fc.integer({ min: 0, max: 3 }), fc.uint8Array({ maxLength: 3000 })).map(([c, p]) => interleave(c, Buffer.from(p))) },
    { weight: 1, arbitrary: fc.constantFrom(DESCRIBE_REPLY, 'RTSP/1.0 200 OK\r\nCSeq: 9\r\n\r\n', 'GET_PARAMETER rtsp://h/ RTSP/1.0\r\nCSeq: 4\r\n\r\n', '\r\n').map((t) => Buffer.from(t, 'latin1')) },
  );
  const collect = (r: RtspReader, chunks: Buffer[]) => {
    const seen: string[] = [];
    const shared = Buffer.alloc(Math.max(1, ...chunks.map((c) => c.length)));
    for (const c of chunks) {
      c.copy(shared);
      r.feed(shared, c.length, (ch, b, s, e) => seen.push(`$${ch}:${b.toString('hex', s, e)}`), (m) => seen.push(m.type === 'response' ? `R${m.status}:${m.body.toString('hex')}` : `Q${m.method}`));
      shared.fill(0x24); // the socket reuses its buffer: nothing may be read from it later
    }
    return seen;
  };
  fc.assert(
    fc.property(fc.array(item, { minLength: 1, maxLength: 20 }), fc.array(fc.nat(), { maxLength: 30 }), (items, cutsRaw) => {
      const stream = Buffer.concat(items);
      const cuts = [...new Set(cutsRaw.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
      const chunks: Buffer[] = [];
      let at = 0;
      for (const c of [...cuts, stream.length]) {
        chunks.push(stream.subarray(at, c));
        at = c;
      }
      const whole = new RtspReader();
      const expected = collect(whole, [stream]);
      assert.equal(expected.length, items.length - items.filter((i) => i.toString('latin1') === '\r\n').length);
      const split = new RtspReader();
      assert.deepEqual(collect(split, chunks), expected);
      assert.equal(split.buffered, 0);
      assert.equal(split.interleavedFrames, whole.interleavedFrames);
    }),
    { numRuns: 500 },
  );
});

test('Transport and Session headers', () => {
  assert.deepEqual(parseTransportHeader('RTP/AVP/TCP;unicast;interleaved=2-3;ssrc=1A2B3C4D;mode="PLAY"'), { protocol: 'tcp', interleaved: [2, 3], ssrc: 0x1a2b3c4d });
  assert.deepEqual(parseTransportHeader('RTP/AVP;unicast;client_port=50000-50001;server_port=6970-6971;source=10.0.0.5'), {
    protocol: 'udp', clientPort: [50000, 50001], serverPort: [6970, 6971], source: '10.0.0.5',
  });
  assert.deepEqual(parseTransportHeader('RTP/AVP/TCP;unicast').interleaved, [0, 1], 'interleaved defaults to 0-1');
  assert.throws(() => parseTransportHeader('RAW/RAW/UDP;unicast'), isRtspError);
  assert.deepEqual(parseSessionHeader('4F2A8D9C;timeout=30'), { id: '4F2A8D9C', timeoutS: 30 });
  assert.deepEqual(parseSessionHeader('abc'), { id: 'abc', timeoutS: 60 });
  assert.throws(() => parseSessionHeader('bad id\r\n'), isRtspError);
  fc.assert(fc.property(fc.string({ maxLength: 200 }), (s) => {
    for (const f of [parseTransportHeader, parseSessionHeader]) {
      try {
        f(s);
      } catch (e) {
        if (!isRtspError(e)) throw e;
      }
    }
  }));
});

// ------------------------------------------------------------------ auth

test('RTSP auth: Digest preferred over Basic, verifies server-side, stale nonce → one retry, a refused password → false', () => {
  const a = new RtspAuth({ username: 'admin', password: 'p@ss:w0rd/#' });
  assert.equal(a.authorization('DESCRIBE', 'rtsp://h/cam'), undefined, 'nothing before a challenge');
  assert.equal(a.onUnauthorized(['Basic realm="cam"', 'Digest realm="cam", nonce="n1"']), true);
  assert.equal(a.method, 'digest');
  const h1 = a.authorization('DESCRIBE', 'rtsp://h/cam')!;
  const parsed = parseAuthorization(h1);
  assert.equal(parsed.uri, 'rtsp://h/cam');
  assert.ok(verifyAuthorization(parsed, 'p@ss:w0rd/#', 'DESCRIBE'), 'a server with the password accepts it');
  assert.ok(!verifyAuthorization(parsed, 'wrong', 'DESCRIBE'));
  assert.ok(!h1.includes('p@ss'), 'the password is not in the header');
  // qop=auth: nc counts up
  const q = new RtspAuth({ username: 'u', password: 'p' });
  q.onUnauthorized(['Digest realm="r", nonce="abc", qop="auth", opaque="xyz"']);
  const p1 = parseAuthorization(q.authorization('SETUP', 'rtsp://h/cam/trackID=0')!);
  const p2 = parseAuthorization(q.authorization('PLAY', 'rtsp://h/cam/')!);
  assert.equal(p1.nc, '00000001');
  assert.equal(p2.nc, '00000002');
  assert.ok(verifyAuthorization(p2, 'p', 'PLAY'));
  assert.equal(q.onUnauthorized(['Digest realm="r", nonce="def", qop="auth", stale=true']), true, 'stale nonce: retry');
  assert.equal(q.staleRetries, 1);
  assert.equal(q.onUnauthorized(['Digest realm="r", nonce="def", qop="auth"']), false, 'same nonce refused again: wrong password');
  // Basic
  const b = new RtspAuth({ username: 'u', password: 'pw' });
  assert.equal(b.onUnauthorized(['Basic realm="x"']), true);
  assert.equal(b.authorization('DESCRIBE', 'rtsp://h/'), `Basic ${Buffer.from('u:pw').toString('base64')}`);
  assert.equal(b.onUnauthorized(['Basic realm="x"']), false);
  // no credentials, or nothing usable
  assert.throws(() => new RtspAuth(undefined).onUnauthorized(['Digest realm="r", nonce="n"']), (e: unknown) => (e as RtspError).code === 'RTSP_AUTH_FAILED');
  assert.throws(() => new RtspAuth({ username: 'u', password: 'p' }).onUnauthorized(['Negotiate abc']), (e: unknown) => (e as RtspError).code === 'RTSP_AUTH_FAILED');
  fc.assert(fc.property(fc.array(fc.string({ maxLength: 300 }), { maxLength: 4 }), (hs) => {
    try {
      new RtspAuth({ username: 'u', password: 'p' }).onUnauthorized(hs);
    } catch (e) {
      if (!(e instanceof Error && 'code' in e)) throw e;
    }
  }));
});

// ------------------------------------------------------------------ SDP

const GST_SDP = [
  'v=0', 'o=- 1188340656180883 1 IN IP4 127.0.0.1', 's=Session streamed with GStreamer', 't=0 0', 'a=tool:GStreamer', 'a=type:broadcast', 'a=control:*', 'a=range:npt=now-',
  'm=audio 0 RTP/AVP 0', 'a=control:stream=1',
  'm=video 0 RTP/AVP 96', 'c=IN IP4 0.0.0.0', 'b=AS:500', 'a=rtpmap:96 H264/90000',
  'a=fmtp:96 packetization-mode=1;sprop-parameter-sets=Z0LADZZUCg/QgAAAAwCAAAAZR4oVSw==,aM48gA==;profile-level-id=42c00d;level-asymmetry-allowed=1',
  'a=control:stream=0', '',
].join('\r\n');

test('SDP: the H.264 media, its control URL against Content-Base, sprop-parameter-sets, packetization-mode', () => {
  const s = parseSdp(GST_SDP, 'rtsp://127.0.0.1:8554/cam/');
  assert.equal(s.sessionControl, 'rtsp://127.0.0.1:8554/cam/');
  assert.deepEqual(s.media, ['audio', 'video']);
  const v = s.h264!;
  assert.equal(v.control, 'rtsp://127.0.0.1:8554/cam/stream=0');
  assert.equal(v.payloadType, 96);
  assert.equal(v.clockRate, 90000);
  assert.equal(v.packetizationMode, 1);
  assert.equal(v.profileLevelId, '42c00d');
  assert.equal(v.sps.length, 1);
  assert.equal(v.sps[0]![0]! & 0x1f, 7);
  assert.equal(v.pps[0]![0]! & 0x1f, 8);
  // absolute control (Hikvision style), no Content-Base slash
  const hik = parseSdp('v=0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=control:rtsp://10.0.0.5:554/Streaming/Channels/101/trackID=1\r\n', 'rtsp://10.0.0.5:554/Streaming/Channels/101');
  assert.equal(hik.h264!.control, 'rtsp://10.0.0.5:554/Streaming/Channels/101/trackID=1');
  assert.equal(hik.h264!.packetizationMode, 0);
  assert.equal(resolveControl('rtsp://h/live', 'trackID=0'), 'rtsp://h/live/trackID=0');
  assert.equal(resolveControl('rtsp://h/live/', 'trackID=0'), 'rtsp://h/live/trackID=0');
  assert.equal(resolveControl('rtsp://h/live', '*'), 'rtsp://h/live');
  assert.equal(resolveControl('rtsp://h/live', undefined), 'rtsp://h/live');
  assert.equal(parseSdp('v=0\r\nm=video 0 RTP/AVP 26\r\na=rtpmap:26 JPEG/90000\r\n', 'rtsp://h/').h264, undefined, 'MJPEG only: no H.264 track');
  assert.throws(() => parseSdp('v=0\r\nm=video 0 RTP/AVP 97\r\na=rtpmap:97 H264/90000\r\na=fmtp:97 packetization-mode=2\r\n', 'rtsp://h/'), (e: unknown) => (e as RtspError).code === 'RTSP_UNSUPPORTED');
  assert.throws(() => parseSdp('<html>', 'rtsp://h/'), (e: unknown) => (e as RtspError).code === 'RTSP_BAD_SDP');
});

test('SDP fuzz: arbitrary text never throws anything but RtspError', () => {
  const line = fc.oneof(fc.string({ maxLength: 80 }), fc.constantFrom('v=0', 'm=video 0 RTP/AVP 96', 'a=rtpmap:96 H264/90000', 'a=fmtp:96 sprop-parameter-sets=####,AAAA', 'a=control:', 'a=fmtp:96 packetization-mode=9'));
  fc.assert(fc.property(fc.array(line, { maxLength: 30 }), (ls) => {
    try {
      parseSdp(ls.join('\r\n'), 'rtsp://h/x');
    } catch (e) {
      if (!isRtspError(e)) throw e;
    }
  }), { numRuns: 1000 });
});

// ------------------------------------------------------------------ RTP + depacketizer

function rtpPacket(payload: Buffer, seq: number, ts: number, marker: boolean, pt = 96): Buffer {
  const h = Buffer.alloc(12);
  h[0] = 0x80;
  h[1] = (marker ? 0x80 : 0) | pt;
  h.writeUInt16BE(seq & 0xffff, 2);
  h.writeUInt32BE(ts >>> 0, 4);
  h.writeUInt32BE(0x1234, 8);
  return Buffer.concat([h, payload]);
}

/** RTP packets of Annex-B access units (the egress packetizer: single NAL + FU-A), SPS+PPS as one STAP-A. */
function packetize(aus: Buffer[], opts: { mtu?: number; stapA?: boolean; seq0?: number; ts0?: number } = {}): RtpPacket[] {
  const out: RtpPacket[] = [];
  let seq = opts.seq0 ?? 1000;
  let ts = opts.ts0 ?? 5000;
  for (const au of aus) {
    let payloads = packetizeH264(au, opts.mtu ?? 1200);
    if (opts.stapA) {
      const ps = payloads.filter((p) => (p[0]! & 0x1f) === 7 || (p[0]! & 0x1f) === 8);
      if (ps.length === 2) {
        const stap = Buffer.concat([Buffer.from([24]), ...ps.flatMap((p) => [Buffer.from([p.length >> 8, p.length & 0xff]), p])]);
        payloads = [stap, ...payloads.filter((p) => !ps.includes(p))];
      }
    }
    payloads.forEach((p, i) => out.push(parseRtp(rtpPacket(p, seq++, ts, i === payloads.length - 1))));
    ts = (ts + 3600) >>> 0;
  }
  return out;
}

const nalsOf = (b: Buffer) => nalUnits(b).filter((n) => (n[0]! & 0x1f) !== 9).map((n) => n.toString('hex'));

test('depacketizer: single NAL, FU-A and STAP-A round trip to the same access units (ffmpeg-encoded stream)', async (t) => {
  const dir = await tempDir(t, 'rtsp-depack-');
  const stream = await encodeH264(dir, { width: 320, height: 240, fps: 25, frames: 30, gop: 10 });
  const { AnnexBSplitter } = await import('../../runtime/engine/h264.js');
  const aus = new AnnexBSplitter({ repeatParamSets: false }).push(Buffer.concat([stream, Buffer.from([0, 0, 0, 1, 9, 0xf0])])).map((a) => a.data);
  for (const [mtu, stapA] of [[1200, false], [200, true], [100, false]] as const) {
    const d = new H264Depacketizer();
    const got: DepacketizedUnit[] = [];
    for (const p of packetize(aus, { mtu, stapA, seq0: 65530, ts0: 0xfffff000 })) got.push(...d.push(p));
    got.push(...d.end());
    assert.equal(got.length, aus.length, `mtu ${mtu}: one unit per access unit`);
    for (let i = 0; i < aus.length; i++) assert.deepEqual(nalsOf(got[i]!.data), nalsOf(aus[i]!), `mtu ${mtu} unit ${i}`);
    assert.equal(got.filter((u) => u.key).length, 3, 'keyframes every 10');
    assert.equal(d.seqGaps, 0);
  }
});

test('depacketizer: a lost packet drops to the next keyframe (counted); SPS/PPS from sprop go in front of bare IDRs', async (t) => {
  const dir = await tempDir(t, 'rtsp-depack-');
  const stream = await encodeH264(dir, { width: 320, height: 240, fps: 25, frames: 30, gop: 10 });
  const { AnnexBSplitter } = await import('../../runtime/engine/h264.js');
  const aus = new AnnexBSplitter({ repeatParamSets: false }).push(Buffer.concat([stream, Buffer.from([0, 0, 0, 1, 9, 0xf0])])).map((a) => a.data);
  const sps = nalUnits(aus[0]!).find((n) => (n[0]! & 0x1f) === 7)!;
  const pps = nalUnits(aus[0]!).find((n) => (n[0]! & 0x1f) === 8)!;
  // a camera that never repeats SPS/PPS in-band: strip them; only the SDP has them
  const bare = aus.map((a) => Buffer.concat(nalUnits(a).filter((n) => ![7, 8].includes(n[0]! & 0x1f)).flatMap((n) => [Buffer.from([0, 0, 0, 1]), n])));
  const pkts = packetize(bare, { mtu: 300 });
  // lose one packet inside access unit 3 (a P-frame)
  const lostAt = pkts.findIndex((p) => p.timestamp === pkts[0]!.timestamp + 3 * 3600) + 1;
  const d = new H264Depacketizer({ sps: [sps], pps: [pps] });
  const got: DepacketizedUnit[] = [];
  pkts.forEach((p, i) => i !== lostAt && got.push(...d.push(p)));
  got.push(...d.end());
  assert.equal(d.seqGaps, 1);
  assert.equal(d.packetsLost, 1);
  // units 0..2 pass, 3 is broken, 4..9 wait for the keyframe at 10, then 10..end
  assert.deepEqual(got.map((u) => (u.timestamp - 5000) / 3600), [0, 1, 2, ...aus.slice(10).map((_, i) => 10 + i)]);
  assert.ok(d.droppedBroken >= 1 && d.droppedUntilKeyframe >= 5, JSON.stringify(d.stats()));
  assert.equal(got[3]!.key, true, 'resumes at the next keyframe');
  for (const u of got.filter((x) => x.key)) {
    const types = nalUnits(u.data).map((n) => n[0]! & 0x1f);
    assert.deepEqual(types.filter((x) => x === 7 || x === 8), [7, 8], 'SPS and PPS injected');
    assert.ok(types.indexOf(7) < types.indexOf(5));
  }
  assert.equal(d.paramSetsInserted, 3);
  // without sprop and without in-band parameter sets no unit is a keyframe: nothing passes
  const none = new H264Depacketizer();
  const n: DepacketizedUnit[] = [];
  for (const p of packetize(bare)) n.push(...none.push(p));
  assert.equal(n.length, 0);
});

test('depacketizer: parameter sets between the slices of one picture move in front (GStreamer rtph264pay)', () => {
  const sps = Buffer.from('6742c00d965', 'hex');
  const pps = Buffer.from('68ce3c80', 'hex');
  const s1 = Buffer.from('6588840010', 'hex');
  const s2 = Buffer.from('650100a0ff', 'hex');
  const d = new H264Depacketizer();
  const out = [sps, pps, s1, sps, pps, s2].flatMap((n, i, a) => d.push(parseRtp(rtpPacket(n, i, 90000, i === a.length - 1))));
  assert.equal(out.length, 1);
  assert.deepEqual(nalUnits(out[0]!.data).map((n) => n[0]! & 0x1f), [7, 8, 5, 5]);
  assert.equal(d.nalsMoved, 1);
});

test('RTP parse fuzz and depacketizer fuzz: only RtspError, never an access unit over the bound', () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 80 }), (a) => {
    try {
      const p = parseRtp(Buffer.from(a));
      assert.ok(p.payload.length <= a.length);
    } catch (e) {
      if (!isRtspError(e)) throw e;
    }
  }), { numRuns: 3000 });
  const pkt = fc.record({
    payload: fc.oneof(fc.uint8Array({ minLength: 1, maxLength: 60 }), fc.constantFrom(Uint8Array.from([0x7c, 0x85, 1, 2]), Uint8Array.from([0x7c, 0x45, 3]), Uint8Array.from([0x18, 0, 2, 0x67, 1, 0, 2, 0x68, 1]), Uint8Array.from([0x65, 1]))),
    seqStep: fc.constantFrom(1, 1, 1, 2, 0, 65535),
    tsStep: fc.constantFrom(0, 0, 3600, -3600),
    marker: fc.boolean(),
  });
  fc.assert(fc.property(fc.array(pkt, { maxLength: 60 }), (list) => {
    const d = new H264Depacketizer({ maxAuBytes: 256, maxNals: 8 });
    let seq = 0;
    let ts = 0;
    for (const p of list) {
      seq = (seq + p.seqStep) & 0xffff;
      ts = (ts + p.tsStep) >>> 0;
      for (const u of d.push(parseRtp(rtpPacket(Buffer.from(p.payload), seq, ts, p.marker)))) {
        assert.ok(u.data.length <= 256 + 64, `unit of ${u.data.length} bytes`);
      }
    }
    d.end();
  }), { numRuns: 1000 });
});

test('RTP header in place (the TCP hot path) agrees with parseRtp on arbitrary bytes at any offset', () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 80 }), fc.nat({ max: 8 }), (a, pad) => {
    const buf = Buffer.concat([Buffer.alloc(pad, 0xee), Buffer.from(a), Buffer.alloc(3, 0xdd)]);
    const h: RtpHeader = { marker: false, payloadType: 0, seq: 0, timestamp: 0, ssrc: 0, payloadStart: 0, payloadEnd: 0 };
    let p: RtpPacket | RtspError;
    try {
      p = parseRtp(Buffer.from(a));
    } catch (e) {
      if (!isRtspError(e)) throw e;
      p = e as RtspError;
    }
    try {
      readRtpHeader(buf, pad, pad + a.length, h);
      assert.ok(!(p instanceof RtspError), 'both accept');
      const q = p as RtpPacket;
      assert.deepEqual([h.marker, h.payloadType, h.seq, h.timestamp, h.ssrc], [q.marker, q.payloadType, q.seq, q.timestamp, q.ssrc]);
      assert.deepEqual(buf.subarray(h.payloadStart, h.payloadEnd), q.payload);
    } catch (e) {
      if (!isRtspError(e)) throw e;
      assert.ok(p instanceof RtspError, 'both refuse');
    }
  }), { numRuns: 3000 });
});

test('RTP clock: 90 kHz across the 32-bit wrap, never backwards, re-anchors when far behind arrival', () => {
  const c = new RtpClock(90000, 1_000_000);
  const start = 0xffffffff - 9000 * 2; // wraps after 2 frames of 100 ms
  let arrival = 10_000_000;
  const got: number[] = [];
  for (let i = 0; i < 6; i++) {
    got.push(c.toCapture((start + i * 9000) >>> 0, arrival));
    arrival += 100_000 + 500; // a little network delay each time: the mapped time stays behind arrival
  }
  assert.deepEqual(got.map((x) => x - got[0]!), [0, 100_000, 200_000, 300_000, 400_000, 500_000], 'the wrap is invisible');
  assert.equal(c.reanchors, 0);
  // the camera stops for 5 s and resumes with the next timestamp: re-anchored to arrival
  const after = c.toCapture((start + 6 * 9000) >>> 0, arrival + 5_000_000);
  assert.equal(after, arrival + 5_000_000);
  assert.equal(c.reanchors, 1);
  // a timestamp going backwards never makes the output go backwards
  const back = c.toCapture((start + 2 * 9000) >>> 0, arrival + 5_000_100);
  assert.ok(back > after);
});

test('UDP reorder buffer: packets displaced less than the window come out in order (across the 16-bit wrap); a hole is given up after the window', () => {
  const pk = (seq: number): RtpPacket => ({ marker: false, payloadType: 96, seq: seq & 0xffff, timestamp: 0, ssrc: 1, payload: Buffer.alloc(0) });
  fc.assert(fc.property(fc.integer({ min: 0, max: 0xffff }), fc.array(fc.integer({ min: 0, max: 7 }), { minLength: 1, maxLength: 200 }), (start, jitter) => {
    // each packet arrives up to 7 places late: a bounded displacement (the first one defines the start)
    const order = jitter.map((j, i) => ({ i, key: i === 0 ? -1 : i + j })).sort((a, b) => a.key - b.key || a.i - b.i).map((x) => x.i);
    const r = new RtpReorderBuffer(16);
    const out: number[] = [];
    for (const i of order) for (const p of r.push(pk(start + i))) out.push(p.seq);
    assert.deepEqual(out, order.map((_, i) => (start + i) & 0xffff).slice(0, out.length));
    assert.equal(out.length, jitter.length - Number(r.stats().reorderHeld), 'all but what is still held');
    assert.equal(r.stats().reorderLate, 0);
  }), { numRuns: 300 });
  // a lost packet: released as a gap once 4 later ones wait
  const r = new RtpReorderBuffer(4);
  const got: number[] = [];
  for (const s of [65534, 65535, 1, 2, 3, 4, 5]) for (const p of r.push(pk(s))) got.push(p.seq);
  assert.deepEqual(got, [65534, 65535, 1, 2, 3, 4, 5], 'seq 0 never came: skipped after the window');
  assert.deepEqual(r.push(pk(0)), [], 'it arrives too late: dropped, counted');
  assert.equal(r.stats().reorderLate, 1);
  assert.deepEqual(r.push(pk(5)), [], 'a duplicate of a released packet is late too');
});

test('UDP reorder + depacketizer: a reordered stream gives the same access units as the ordered one', async (t) => {
  const dir = await tempDir(t, 'rtsp-reorder-');
  const stream = await encodeH264(dir, { width: 320, height: 240, fps: 25, frames: 20, gop: 10 });
  const { AnnexBSplitter } = await import('../../runtime/engine/h264.js');
  const aus = new AnnexBSplitter({ repeatParamSets: false }).push(Buffer.concat([stream, Buffer.from([0, 0, 0, 1, 9, 0xf0])])).map((a) => a.data);
  const pkts = packetize(aus, { mtu: 300 });
  // swap neighbours every 5 packets (after the first, which defines where the sequence starts)
  for (let i = 1; i + 1 < pkts.length; i += 5) [pkts[i], pkts[i + 1]] = [pkts[i + 1]!, pkts[i]!];
  const r = new RtpReorderBuffer();
  const d = new H264Depacketizer();
  const got: DepacketizedUnit[] = [];
  for (const p of pkts) for (const q of r.push(p)) got.push(...d.push(q));
  assert.equal(d.seqGaps, 0);
  assert.equal(got.length, aus.length);
  for (let i = 0; i < aus.length; i++) assert.deepEqual(nalsOf(got[i]!.data), nalsOf(aus[i]!));
  assert.ok(Number(r.stats().reorderFixed) > 0);
});

// ------------------------------------------------------------------ session: read coalescing (TCP)

/**
 * A scripted RTSP camera on loopback: answers OPTIONS/DESCRIBE/SETUP/PLAY/TEARDOWN, then sends
 * `frames` access units as interleaved RTP, each cut into FU-A packets written one per write
 * (TCP_NODELAY, like a camera pushing a frame's packets out as the payloader makes them). `gap`
 * schedules the packets of one frame: 'tick' = one per setImmediate (a burst), or a number of ms
 * between packets (a sender slower than the hold window).
 */
async function scriptedCamera(t: import('node:test').TestContext, o: { frames: number; packetsPerFrame: number; gap: 'tick' | number; tailPacket?: boolean }) {
  const { createServer } = await import('node:net');
  const sps = Buffer.from([0x67, 0x42, 0xc0, 0x1e, 0xd9, 0x00, 0xa0, 0x47, 0xfe, 0xc8]);
  const pps = Buffer.from([0x68, 0xce, 0x3c, 0x80]);
  // NAL bodies without zero bytes: no start-code emulation to worry about when comparing
  const nal = (type: number, i: number, len: number) => {
    const b = Buffer.alloc(len);
    b[0] = type;
    for (let k = 1; k < len; k++) b[k] = 1 + ((i * 31 + k * 7) % 255);
    return b;
  };
  const START = Buffer.from([0, 0, 0, 1]);
  const nals = Array.from({ length: o.frames }, (_, i) => nal(i === 0 ? 0x65 : 0x41, i, 600 * o.packetsPerFrame - 300));
  const expected = nals.map((n, i) => (i === 0 ? Buffer.concat([START, sps, START, pps, START, n]) : Buffer.concat([START, n])));
  const fuA = (n: Buffer, parts: number): Buffer[] => {
    const body = n.subarray(1);
    const size = Math.ceil(body.length / parts);
    const out: Buffer[] = [];
    for (let p = 0; p < parts; p++) {
      const fh = (p === 0 ? 0x80 : 0) | (p === parts - 1 ? 0x40 : 0) | (n[0]! & 0x1f);
      out.push(Buffer.concat([Buffer.from([(n[0]! & 0xe0) | 28, fh]), body.subarray(p * size, Math.min(body.length, (p + 1) * size))]));
    }
    return out;
  };
  let bytesOut = 0;
  const methods: string[] = [];
  let seq = 100;
  const server = createServer((sock) => {
    sock.setNoDelay(true);
    const write = (b: Buffer) => {
      if (sock.destroyed) return;
      bytesOut += b.length;
      sock.write(b);
    };
    const packet = (payload: Buffer, ts: number, marker: boolean) => {
      const h = Buffer.alloc(12);
      h[0] = 0x80;
      h[1] = (marker ? 0x80 : 0) | 96;
      h.writeUInt16BE(seq++ & 0xffff, 2);
      h.writeUInt32BE(ts >>> 0, 4);
      h.writeUInt32BE(0xbeef, 8);
      return interleave(0, Buffer.concat([h, payload]));
    };
    const stream = async () => {
      for (let i = 0; i < o.frames; i++) {
        const ps = fuA(nals[i]!, o.packetsPerFrame).map((p, k, all) => packet(p, 3000 * i, k === all.length - 1));
        const last = i === o.frames - 1;
        for (let k = 0; k < ps.length; k++) {
          if (k === ps.length - 1 && last && o.tailPacket) {
            // the last frame's end and the first packet of a frame that never finishes, in one write
            write(Buffer.concat([ps[k]!, packet(fuA(nal(0x41, 99, 1200), 2)[0]!, 3000 * o.frames, false)]));
          } else write(ps[k]!);
          if (k < ps.length - 1) await new Promise((r) => (o.gap === 'tick' ? setImmediate(r) : setTimeout(r, o.gap as number)));
        }
        await new Promise((r) => setTimeout(r, 30)); // the next frame later, as a camera does
      }
    };
    const reader = new RtspReader();
    sock.on('data', (chunk: Buffer) => {
      for (const m of reader.push(chunk)) {
        if (m.type !== 'request') continue;
        methods.push(m.method);
        const cseq = m.headers.get('cseq')?.[0] ?? '0';
        const reply = (extra: string[], body = '') =>
          write(Buffer.from(['RTSP/1.0 200 OK', `CSeq: ${cseq}`, ...extra, ...(body ? [`Content-Length: ${Buffer.byteLength(body)}`] : []), '', ''].join('\r\n') + body));
        const base = `rtsp://127.0.0.1:${(server.address() as import('node:net').AddressInfo).port}/cam/`;
        if (m.method === 'OPTIONS') reply(['Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER']);
        else if (m.method === 'DESCRIBE') {
          reply([`Content-Base: ${base}`, 'Content-Type: application/sdp'], ['v=0', 'o=- 1 1 IN IP4 127.0.0.1', 's=cam', 't=0 0', 'm=video 0 RTP/AVP 96', 'a=rtpmap:96 H264/90000',
            `a=fmtp:96 packetization-mode=1;sprop-parameter-sets=${sps.toString('base64')},${pps.toString('base64')}`, 'a=control:stream=0', ''].join('\r\n'));
        } else if (m.method === 'SETUP') reply(['Transport: RTP/AVP/TCP;unicast;interleaved=0-1', 'Session: 12345678;timeout=60']);
        else if (m.method === 'PLAY') {
          reply(['Session: 12345678']);
          void stream();
        } else reply(['Session: 12345678']);
      }
    });
    sock.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  const port = (server.address() as import('node:net').AddressInfo).port;
  return { url: `rtsp://127.0.0.1:${port}/cam`, expected, methods, bytesOut: () => bytesOut };
}

async function pull(url: string, readCoalesceMs: number, frames: number, until: (units: Buffer[]) => boolean = (u) => u.length >= frames) {
  const { RtspSession, RtspClientCounters } = await import('../../drivers/camera/rtsp-client/session.js');
  const counters = new RtspClientCounters();
  const session = new RtspSession({ url, transport: 'tcp', startTimeoutMs: 10_000, stallTimeoutMs: 10_000, readCoalesceMs }, counters);
  const units: Buffer[] = [];
  const keys: boolean[] = [];
  const ac = new AbortController();
  let readsAtFirst = 0;
  const bound = setTimeout(() => ac.abort(), 20_000); // a bound: the assertions below say what was missing
  await session.run((u) => {
    if (units.length === 0) readsAtFirst = counters.reads;
    units.push(u.data);
    keys.push(u.key);
    if (until(units)) ac.abort();
  }, ac.signal);
  clearTimeout(bound);
  return { units, keys, counters, streamReads: counters.reads - readsAtFirst };
}

test('RTSP session, TCP read coalescing: a frame sent as a burst of small writes comes in two reads, whole; without it one read per packet', async (t) => {
  const frames = 12;
  const ppf = 12;
  const on = await scriptedCamera(t, { frames, packetsPerFrame: ppf, gap: 'tick' });
  const held = await pull(on.url, 20, frames);
  assert.equal(held.units.length, frames, 'every access unit arrived');
  held.units.forEach((u, i) => assert.ok(u.equals(on.expected[i]!), `access unit ${i} whole and in order`));
  assert.equal(held.keys[0], true);
  // The first frame's read is before the count starts; each later frame: its first packet, then the rest.
  assert.ok(held.streamReads <= 2 * (frames - 1) + 2, `${held.streamReads} reads for ${frames - 1} frames of ${ppf} packets (≤ 2 per frame)`);
  assert.ok(held.counters.readHolds >= frames - 1, `a hold per frame (${held.counters.readHolds})`);
  assert.equal(held.counters.readHoldsGivenUp, 0, 'holding batched: not given up');

  const off = await scriptedCamera(t, { frames, packetsPerFrame: ppf, gap: 'tick' });
  const plain = await pull(off.url, 0, frames);
  plain.units.forEach((u, i) => assert.ok(u.equals(off.expected[i]!), `access unit ${i} whole (no coalescing)`));
  assert.equal(plain.counters.readHolds, 0);
  t.diagnostic(`reads after the first frame: ${held.streamReads} held (${held.counters.readHolds} holds), ${plain.streamReads} without`);
  assert.ok(plain.streamReads >= 2 * held.streamReads, `without holds more reads: ${plain.streamReads} vs ${held.streamReads}`);
});

test('RTSP session, TCP read coalescing: given up when each hold brings one packet (a sender slower than the window); TEARDOWN answered through a held socket', async (t) => {
  // 4 packets per frame, 12 ms apart, window 4 ms: every hold ends before the next packet is sent
  const frames = 40;
  const slow = await scriptedCamera(t, { frames, packetsPerFrame: 4, gap: 12 });
  const r = await pull(slow.url, 4, frames);
  assert.equal(r.units.length, frames);
  r.units.forEach((u, i) => assert.ok(u.equals(slow.expected[i]!), `access unit ${i} whole`));
  t.diagnostic(`slow sender: ${r.counters.readHolds} holds, given up ${r.counters.readHoldsGivenUp}`);
  assert.equal(r.counters.readHoldsGivenUp, 1, 'holding given up for the session');
  assert.ok(r.counters.readHolds <= 3 * 31, `holds stopped after about 30 frames (${r.counters.readHolds})`);

  // Stopped right after a read that ends inside a frame (so the socket is held): the TEARDOWN
  // reply still gets read — every byte the camera sent was read before the session closed.
  const tail = await scriptedCamera(t, { frames: 3, packetsPerFrame: 3, gap: 'tick', tailPacket: true });
  const s = await pull(tail.url, 20, 3);
  assert.equal(s.units.length, 3);
  assert.deepEqual(tail.methods, ['OPTIONS', 'DESCRIBE', 'SETUP', 'PLAY', 'TEARDOWN']);
  assert.equal(s.counters.teardowns, 1);
  assert.equal(s.counters.bytesIn, tail.bytesOut(), 'the TEARDOWN reply was read (nothing left unread)');
});

test('a failed session leaves no listener on the supervisor signal it shared (no session kept alive per reconnect)', async () => {
  const { createServer } = await import('node:net');
  const { EventEmitter } = await import('node:events');
  const { RtspSession, RtspClientCounters } = await import('../../drivers/camera/rtsp-client/session.js');
  // A camera that accepts and hangs up at once: every run fails, as an unplugged camera's retries do.
  const server = createServer((s) => s.destroy());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as import('node:net').AddressInfo).port;
  const ac = new AbortController(); // one signal for every run, as the supervisor gives
  const counters = new RtspClientCounters();
  try {
    for (let i = 0; i < 12; i++) {
      const session = new RtspSession({ url: `rtsp://127.0.0.1:${port}/cam`, transport: 'tcp', startTimeoutMs: 5000, stallTimeoutMs: 5000 }, counters);
      await assert.rejects(session.run(() => {}, ac.signal));
    }
    assert.equal(EventEmitter.getEventListeners(ac.signal, 'abort').length, 0, 'every run removed its abort listener');
  } finally {
    await new Promise<void>((r) => server.close(() => r()));
  }
});

test('depacketizer: a camera whose RTP sequence jumps back (packetizer restart) is followed after a short run, not frozen for 32 768 packets', async (t) => {
  const dir = await tempDir(t, 'rtsp-depack-');
  const stream = await encodeH264(dir, { width: 320, height: 240, fps: 25, frames: 40, gop: 10 });
  const { AnnexBSplitter } = await import('../../runtime/engine/h264.js');
  const aus = new AnnexBSplitter({ repeatParamSets: false }).push(Buffer.concat([stream, Buffer.from([0, 0, 0, 1, 9, 0xf0])])).map((a) => a.data);
  const d = new H264Depacketizer();
  const before: DepacketizedUnit[] = [];
  for (const p of packetize(aus.slice(0, 20), { mtu: 200, seq0: 30_000 })) before.push(...d.push(p));
  assert.equal(before.length, 20, 'the first 20 units (the marker bit ends each)');
  // The camera restarts its packetizer: sequence numbers start again far below.
  const after: DepacketizedUnit[] = [];
  for (const p of packetize(aus.slice(20), { mtu: 200, seq0: 100, ts0: 900_000 })) after.push(...d.push(p));
  after.push(...d.end());
  assert.equal(d.seqResyncs, 1, 'one resync, counted');
  assert.ok(after.length >= 5, `video resumed after the jump back (${after.length} units)`);
  assert.ok(after[0]!.key, 'it resumes at a keyframe');
  assert.ok(d.reordered < SEQ_RESYNC_AFTER, 'fewer than the resync run were dropped as old');
});

test('UDP reorder buffer: a sequence that restarts lower is followed after a short run of late packets', () => {
  const b = new RtpReorderBuffer(16);
  const pkt = (seq: number): RtpPacket => parseRtp(rtpPacket(Buffer.from([1, 2, 3]), seq, 1000, false));
  const out: number[] = [];
  for (let s = 5000; s < 5100; s++) out.push(...b.push(pkt(s)).map((p) => p.seq));
  for (let s = 10; s < 100; s++) out.push(...b.push(pkt(s)).map((p) => p.seq));
  const afterJump = out.filter((s) => s < 1000);
  assert.ok(afterJump.length >= 90 - SEQ_RESYNC_AFTER, `packets after the jump flow again (${afterJump.length})`);
  assert.ok(b.late < SEQ_RESYNC_AFTER);
});
