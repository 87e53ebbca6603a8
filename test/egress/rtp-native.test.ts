// The native SRTP sender (runtime/native/srtp_send.c via runtime/native/index.ts) against werift's
// own SRTP session, for both profiles werift negotiates: the addon's packet is byte-for-byte
// werift's encrypt for the same header, sequence number and rollover counter (including after a
// wrap), werift's receiving session decrypts what sendAu put on a real UDP socket, and bad input
// is a typed EdgeError with the process still running.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { openSync, closeSync } from 'node:fs';
import { test } from 'node:test';
import { EdgeError } from '../../runtime/engine/api.js';
import { boundUdp, udpFd, waitFor } from './helpers.js';
import { nativeSrtp, nativeSrtpError, SRTP_PROFILE, type NativeSrtp } from '../../runtime/native/index.js';
import { loadWerift } from '../../runtime/egress/webrtc.js';

const W = await loadWerift();
const addon = nativeSrtp();
const skip = addon ? false : `native addon not built (${nativeSrtpError()}): npx node-gyp rebuild`;

interface LocalCtx {
  profile: number;
  srtpSessionKey: Buffer;
  srtpSessionSalt: Buffer;
  srtpSessionAuthTag: Buffer;
  getSrtpSsrcState(ssrc: number): { rolloverCounter: number };
}

/** A werift sending session and the matching receiving one (keys swapped), like two DTLS ends. */
function sessions(profile: number): { tx: InstanceType<typeof W.SrtpSession>; rx: InstanceType<typeof W.SrtpSession>; local: LocalCtx } {
  const a = { key: randomBytes(16), salt: randomBytes(profile === SRTP_PROFILE.AEAD_AES_128_GCM ? 12 : 14) };
  const b = { key: randomBytes(16), salt: randomBytes(a.salt.length) };
  const tx = new W.SrtpSession({ profile, keys: { localMasterKey: a.key, localMasterSalt: a.salt, remoteMasterKey: b.key, remoteMasterSalt: b.salt } });
  const rx = new W.SrtpSession({ profile, keys: { localMasterKey: b.key, localMasterSalt: b.salt, remoteMasterKey: a.key, remoteMasterSalt: a.salt } });
  return { tx, rx, local: (tx as unknown as { localContext: LocalCtx }).localContext };
}

function nativeCtx(n: NativeSrtp, local: LocalCtx) {
  return n.createContext(local.profile, local.srtpSessionKey, local.srtpSessionSalt, local.profile === SRTP_PROFILE.AEAD_AES_128_GCM ? null : local.srtpSessionAuthTag);
}

for (const [name, profile] of Object.entries(SRTP_PROFILE)) {
  test(`native protect is werift's encrypt byte for byte across a sequence wrap (${name})`, { skip }, () => {
    const n = addon!;
    const { tx, rx, local } = sessions(profile);
    const ctx = nativeCtx(n, local);
    const ssrc = 0x8badf00d;
    let checked = 0;
    // 65530 → 65535 → 0 → 5: the rollover counter steps to 1 at the wrap.
    for (let i = 0; i < 12; i++) {
      const seq = (65530 + i) & 0xffff;
      const payload = randomBytes(1 + ((i * 97) % 1180));
      const h = { payloadType: 102, sequenceNumber: seq, timestamp: 0xfffffff0 + i, ssrc, marker: i % 3 === 2 };
      const fromWerift = tx.encrypt(payload, new W.RtpHeader(h));
      const roc = local.getSrtpSsrcState(ssrc).rolloverCounter; // werift advanced it for this packet
      assert.equal(roc, seq >= 65530 ? 0 : 1);
      const fromAddon = n.protect(ctx, h, roc, payload);
      assert.equal(fromAddon.toString('hex'), fromWerift.toString('hex'), `seq ${seq} roc ${roc}`);
      const back = W.RtpPacket.deSerialize(rx.decrypt(fromAddon));
      assert.deepEqual(back.payload, payload);
      assert.equal(back.header.sequenceNumber, seq);
      assert.equal(back.header.marker, h.marker);
      checked++;
    }
    assert.equal(checked, 12);
  });

  test(`sendAu puts one access unit on a UDP socket that werift decrypts, marker on the last packet (${name})`, { skip }, async (t) => {
    const n = addon!;
    const { rx, local } = sessions(profile);
    const ctx = nativeCtx(n, local);
    const sink = await boundUdp(t);
    const src = await boundUdp(t);
    const got: Buffer[] = [];
    sink.on('message', (m) => got.push(m));
    // 70 packets: more than one sendmmsg batch (64); sequence numbers wrap inside the AU (the
    // receiver's rollover counter follows, which it can only do when the sender's stepped too).
    const payloads = Array.from({ length: 70 }, (_, i) => randomBytes(200 + i));
    const sent = n.sendAu(ctx, udpFd(src), '127.0.0.1', sink.address().port, 96, 65500, 12345, 42, 0, payloads);
    assert.equal(sent, 70);
    await waitFor(() => got.length === 70, 5000, 'got.length === 70');
    const pkts = got.map((g) => W.RtpPacket.deSerialize(rx.decrypt(g))).sort((a, b) => a.payload.length - b.payload.length);
    pkts.forEach((p, i) => {
      assert.deepEqual(p.payload, payloads[i]);
      assert.equal(p.header.sequenceNumber, (65500 + i) & 0xffff);
      assert.equal(p.header.timestamp, 12345);
      assert.equal(p.header.ssrc, 42);
      assert.equal(p.header.payloadType, 96);
      assert.equal(p.header.marker, i === 69);
    });
  });
}

test('bad input to the addon is a typed error and the process keeps running', { skip }, async (t) => {
  const n = addon!;
  const { local } = sessions(SRTP_PROFILE.AEAD_AES_128_GCM);
  const code = (f: () => unknown): string => {
    try {
      f();
    } catch (e) {
      assert.ok(e instanceof EdgeError, `EdgeError, got ${String(e)}`);
      return e.code;
    }
    return 'no error';
  };
  assert.equal(code(() => n.createContext(7, Buffer.alloc(15), Buffer.alloc(14), null)), 'NATIVE_SRTP_KEY');
  assert.equal(code(() => n.createContext(7, Buffer.alloc(16), Buffer.alloc(12), null)), 'NATIVE_SRTP_KEY');
  assert.equal(code(() => n.createContext(1, Buffer.alloc(16), Buffer.alloc(14), null)), 'NATIVE_SRTP_KEY', 'AES_CM needs its auth key');
  assert.equal(code(() => n.createContext(2, Buffer.alloc(16), Buffer.alloc(14), null)), 'NATIVE_SRTP_PROFILE');
  const ctx = nativeCtx(n, local);
  const sink = await boundUdp(t);
  const port = sink.address().port;
  const ok = [Buffer.alloc(100)];
  assert.equal(code(() => n.sendAu(ctx, 0x7ffffff0, '127.0.0.1', port, 96, 1, 1, 1, 0, ok)), 'NATIVE_FD', 'a closed fd');
  const devNull = openSync('/dev/null', 'r');
  try {
    assert.equal(code(() => n.sendAu(ctx, devNull, '127.0.0.1', port, 96, 1, 1, 1, 0, ok)), 'NATIVE_FD', 'not a socket');
  } finally {
    closeSync(devNull);
  }
  const src = await boundUdp(t);
  const fd = udpFd(src);
  assert.equal(code(() => n.sendAu(ctx, fd, '127.0.0.1', port, 96, 1, 1, 1, 0, [Buffer.alloc(10), Buffer.alloc(1500)])), 'NATIVE_OVERSIZE');
  assert.equal(code(() => n.protect(ctx, { payloadType: 96, sequenceNumber: 1, timestamp: 1, ssrc: 1, marker: false }, 0, Buffer.alloc(2000))), 'NATIVE_OVERSIZE');
  assert.equal(code(() => n.sendAu(ctx, fd, 'not-an-ip', port, 96, 1, 1, 1, 0, ok)), 'NATIVE_ADDR');
  assert.equal(code(() => n.sendAu(ctx, fd, '127.0.0.1', port, 96, 70000, 1, 1, 0, ok)), 'NATIVE_ARG');
  assert.equal(code(() => n.sendAu(ctx, fd, '127.0.0.1', port, 96, 1, 1, 1, 0, ['nope' as unknown as Buffer])), 'NATIVE_ARG');
  assert.equal(code(() => n.sendAu({} as typeof ctx, fd, '127.0.0.1', port, 96, 1, 1, 1, 0, ok)), 'NATIVE_ARG');
  // Nothing went out for any of those (payloads are checked before the first send), and the
  // context still works afterwards.
  const got: Buffer[] = [];
  sink.on('message', (m) => got.push(m));
  assert.equal(n.sendAu(ctx, fd, '127.0.0.1', port, 96, 1, 1, 1, 0, ok), 1);
  await waitFor(() => got.length === 1, 5000, 'got.length === 1');
  assert.equal(got.length, 1);
});
