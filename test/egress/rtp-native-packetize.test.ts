// The addon's H.264 packetizer (sendAnnexB / packetize in runtime/native/srtp_send.c) against the
// JavaScript one (packetizeH264, what the fallback path sends): the same RTP payloads for IDR and
// non-IDR access units with SPS/PPS, AUD, FU-A-sized and small NAL units, 3- and 4-byte start
// codes; on a real UDP socket the SRTP packets sendAnnexB sends are byte for byte werift's encrypt
// of packetizeH264's payloads (both profiles, across a sequence wrap); and arbitrary input (bytes,
// MTU, argument types) gives the JS result or a typed EdgeError, never a crash.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import fc from 'fast-check';
import { EdgeError } from '../../runtime/engine/api.js';
import { boundUdp, udpFd, waitFor } from './helpers.js';
import { packetizeH264 } from '../../runtime/egress/h264-rtp.js';
import { loadWerift } from '../../runtime/egress/webrtc.js';
import { nativeSrtp, nativeSrtpError, newPlan, PLAN, SRTP_PROFILE, type NativeSrtp } from '../../runtime/native/index.js';

const W = await loadWerift();
const addon = nativeSrtp();
const skip = addon ? false : `native addon not built (${nativeSrtpError()}): npx node-gyp rebuild`;

const S4 = Buffer.from([0, 0, 0, 1]);
const S3 = Buffer.from([0, 0, 1]);
/** A NAL unit of `len` bytes: header byte (nal_ref_idc 3, type t), then bytes with no start code inside. */
function nal(t: number, len: number): Buffer {
  const b = randomBytes(len);
  b[0] = 0x60 | t;
  for (let i = 1; i < len; i++) if (b[i]! < 2) b[i] = 2 + i % 200;
  return b;
}

/** Access units a camera sends: IDR with SPS/PPS (big: FU-A), non-IDR small and big, odd start codes. */
const AUS: Array<[string, Buffer]> = [
  ['IDR with AUD, SPS, PPS, SEI, two big slices', Buffer.concat([S4, nal(9, 2), S4, nal(7, 14), S4, nal(8, 4), S4, nal(6, 30), S4, nal(5, 41_000), S3, nal(5, 9_001)])],
  ['non-IDR, one small slice', Buffer.concat([S4, nal(1, 900)])],
  ['non-IDR, slice exactly the MTU and one byte over', Buffer.concat([S4, nal(1, 1200), S3, nal(1, 1201)])],
  ['non-IDR with trailing zeros and a 3-byte start code', Buffer.concat([S3, nal(1, 5000), Buffer.alloc(3), S3, nal(1, 17), Buffer.alloc(2)])],
  ['raw NAL without a start code', nal(1, 3000)],
  ['only an AUD and filler', Buffer.concat([S4, nal(9, 2), S4, nal(12, 2000)])],
  ['empty', Buffer.alloc(0)],
  ['start codes only', Buffer.concat([S4, S4, S3])],
];

/** The payloads a plan describes, rebuilt from the AU (what the NACK history does on demand). */
function payloadsOf(au: Buffer, plan: Uint32Array): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < plan[0]!; i++) {
    const k = PLAN.HEAD + i * PLAN.STRIDE;
    const [off, len, fu] = [plan[k]!, plan[k + 1]!, plan[k + 2]!];
    const body = au.subarray(off, off + len);
    out.push(fu === 0 ? Buffer.from(body) : Buffer.concat([Buffer.from([fu >>> 8, fu & 0xff]), body]));
  }
  return out;
}

test('native packetize gives packetizeH264 payloads for IDR/non-IDR access units at several MTUs', { skip }, () => {
  const n = addon!;
  const plan = newPlan();
  let compared = 0;
  for (const mtu of [16, 100, 1200, 1400]) {
    for (const [name, au] of AUS) {
      const js = packetizeH264(au, mtu);
      const count = n.packetize(au, mtu, plan);
      assert.equal(count, js.length, `${name} @${mtu}`);
      assert.equal(plan[1], js.reduce((a, p) => a + p.length, 0), `${name} @${mtu}: payload bytes`);
      assert.deepEqual(payloadsOf(au, plan), js.map((p) => Buffer.from(p)), `${name} @${mtu}`);
      compared += js.length;
    }
  }
  assert.ok(compared > 500, `compared ${compared} payloads`);
});

for (const [name, profile] of Object.entries(SRTP_PROFILE)) {
  test(`sendAnnexB sends werift's SRTP packets of packetizeH264's payloads byte for byte, across a sequence wrap (${name})`, { skip }, async (t) => {
    const n = addon!;
    const a = { key: randomBytes(16), salt: randomBytes(profile === SRTP_PROFILE.AEAD_AES_128_GCM ? 12 : 14) };
    const b = { key: randomBytes(16), salt: randomBytes(a.salt.length) };
    const tx = new W.SrtpSession({ profile, keys: { localMasterKey: a.key, localMasterSalt: a.salt, remoteMasterKey: b.key, remoteMasterSalt: b.salt } });
    const local = (tx as unknown as { localContext: { srtpSessionKey: Buffer; srtpSessionSalt: Buffer; srtpSessionAuthTag: Buffer; getSrtpSsrcState(s: number): { rolloverCounter: number } } }).localContext;
    const ctx = n.createContext(profile, local.srtpSessionKey, local.srtpSessionSalt, profile === SRTP_PROFILE.AEAD_AES_128_GCM ? null : local.srtpSessionAuthTag);
    const sink = await boundUdp(t);
    const src = await boundUdp(t);
    const got: Buffer[] = [];
    sink.on('message', (m) => got.push(m));
    const plan = newPlan();
    const ssrc = 0x1234abcd;
    // 65500 + the IDR's ~45 packets wraps the sequence number inside the first AU.
    let seq = 65500;
    let roc = 0;
    let expected = 0;
    const want: string[] = [];
    for (const [i, [, au]] of AUS.entries()) {
      const ts = 90_000 * i + 0xfffff000;
      const js = packetizeH264(au, 1200);
      js.forEach((p, j) => {
        const s = (seq + j) & 0xffff;
        want.push(tx.encrypt(p, new W.RtpHeader({ payloadType: 102, sequenceNumber: s, timestamp: ts >>> 0, ssrc, marker: j === js.length - 1 })).toString('hex'));
      });
      const sent = n.sendAnnexB(ctx, udpFd(src), '127.0.0.1', sink.address().port, 102, seq, ts, ssrc, roc, au, 1200, plan);
      assert.equal(sent, js.length);
      expected += sent;
      await waitFor(() => got.length === expected, 5000, 'got.length === expected'); // loopback keeps order; wait per AU to keep it simple
      for (let j = 0; j < js.length; j++) {
        seq = (seq + 1) & 0xffff;
        if (seq === 0) roc++;
      }
    }
    assert.equal(roc, 1, 'the sequence number wrapped');
    assert.equal(local.getSrtpSsrcState(ssrc).rolloverCounter, 1, "werift's rollover counter agrees");
    assert.deepEqual(got.map((g) => g.toString('hex')), want);
  });
}

test('fuzz: arbitrary access units and MTUs give packetizeH264 payloads or a typed error', { skip }, () => {
  const n = addon!;
  const plan = newPlan();
  // Bytes biased towards start codes and zeros, so NAL boundaries, trailing zeros and FU-A splits all occur.
  const piece = fc.oneof(fc.constant(S4), fc.constant(S3), fc.constant(Buffer.alloc(2)), fc.uint8Array({ minLength: 0, maxLength: 3000 }).map((u) => Buffer.from(u)));
  fc.assert(
    fc.property(fc.array(piece, { maxLength: 12 }), fc.integer({ min: -5, max: 70_000 }), (parts, mtu) => {
      const au = Buffer.concat(parts);
      let count: number;
      try {
        count = n.packetize(au, mtu, plan);
      } catch (e) {
        assert.ok(e instanceof EdgeError, `EdgeError, got ${String(e)}`);
        assert.ok(mtu < 16 || mtu > 65535, `${e.code}: ${e.message} for mtu ${mtu}`);
        return;
      }
      const js = packetizeH264(au, mtu);
      assert.equal(count, js.length);
      assert.deepEqual(payloadsOf(au, plan), js.map((p) => Buffer.from(p)));
    }),
    { numRuns: 400, seed: 4 },
  );
});

test('fuzz: sendAnnexB with bad arguments throws typed errors and sends nothing; the context keeps working', { skip }, async (t) => {
  const n = addon!;
  const ctx = n.createContext(SRTP_PROFILE.AEAD_AES_128_GCM, randomBytes(16), randomBytes(14), null);
  const sink = await boundUdp(t);
  const src = await boundUdp(t);
  const got: Buffer[] = [];
  sink.on('message', (m) => got.push(m));
  const port = sink.address().port;
  const fd = udpFd(src);
  const good: unknown[] = [ctx, fd, '127.0.0.1', port, 96, 1, 1, 1, 0, Buffer.concat([S4, nal(5, 3000)]), 1200, newPlan()];
  const junk = fc.oneof(fc.constant(null), fc.constant(undefined), fc.string(), fc.integer({ min: -10, max: 100_000 }), fc.double(), fc.constant({}), fc.constant([]), fc.constant(Buffer.alloc(3)), fc.constant(new Uint32Array(4)), fc.constant(new Uint8Array(64)));
  const codes = new Set<string>();
  const send = (args: unknown[]): number => (n.sendAnnexB as (...a: unknown[]) => number).apply(n, args);
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 11 }), junk, (i, v) => {
      const args = [...good];
      // Never a real descriptor of this process as the fd (stdio may be sockets here): a closed one.
      args[i] = i === 1 && typeof v === 'number' && v >= 0 && v < 0x7ffffff0 ? 0x7ffffff0 : v;
      try {
        send(args);
      } catch (e) {
        assert.ok(e instanceof EdgeError, `EdgeError, got ${String(e)}`);
        codes.add(e.code);
      }
    }),
    { numRuns: 300, seed: 7 },
  );
  const before = got.length;
  // Oversize: an MTU the packet buffer cannot hold, and an AU that needs more packets than the plan.
  assert.throws(() => n.sendAnnexB(ctx, fd, '127.0.0.1', port, 96, 1, 1, 1, 0, good[9] as Buffer, 1480, newPlan()), (e) => e instanceof EdgeError && e.code === 'NATIVE_ARG');
  assert.throws(() => n.sendAnnexB(ctx, fd, '127.0.0.1', port, 96, 1, 1, 1, 0, good[9] as Buffer, 1200, new Uint32Array(PLAN.HEAD + PLAN.STRIDE)), (e) => e instanceof EdgeError && e.code === 'NATIVE_OVERSIZE');
  assert.ok(codes.has('NATIVE_ARG') && codes.has('NATIVE_FD'), [...codes].join(' '));
  assert.equal(send(good), 3); // 3000-byte IDR slice at MTU 1200: three FU-A fragments
  await waitFor(() => got.length >= before + 3, 5000, 'got.length >= before + 3');
});
