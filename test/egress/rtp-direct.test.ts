// The direct RTP path (runtime/egress/webrtc.ts DirectRtpPath) between two real werift peers on
// loopback: packets carry the sender's SSRC and negotiated payload type, access units reassemble
// and decode, werift's RTCP sender reports still go out (their counts match what was sent), and a
// packet lost on the wire comes back through werift's NACK retransmission from the history the
// direct path keeps. Both senders of the direct path are run: the native one (runtime/native,
// sendmmsg) and the JavaScript loop it falls back to.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import type { RTCPeerConnection, RTCRtpTransceiver, RtcpSrPacket } from 'werift';
import { H264Depacketizer } from '../../runtime/egress/h264-rtp.js';
import { closePeer, connected, createPeer, gatheringComplete, loadWerift, RtpFeed } from '../../runtime/egress/webrtc.js';
import { nativeSrtp, nativeSrtpError } from '../../runtime/native/index.js';
import { h264Fixture } from './fake-source.js';
import { feedEngine, testEngine } from './engine-fixture.js';
import { probeH264, tempDir, waitFor } from './helpers.js';

const cam = { channel: 'cam', source: 'base', track: 'video' };

/** A connected werift sender/receiver pair on loopback (offer from the sender, complete SDPs). */
async function peerPair(t: TestContext, onRx: (rx: RTCPeerConnection) => void): Promise<{ tx: RTCPeerConnection; rx: RTCPeerConnection; tr: RTCRtpTransceiver }> {
  const tx = createPeer();
  const rx = createPeer();
  t.after(() => {
    closePeer(tx);
    closePeer(rx);
  });
  const tr = tx.addTransceiver('video', { direction: 'sendonly' });
  onRx(rx);
  await tx.setLocalDescription(await tx.createOffer());
  await gatheringComplete(tx, 3000);
  await rx.setRemoteDescription(tx.localDescription!);
  await rx.setLocalDescription(await rx.createAnswer());
  await gatheringComplete(rx, 3000);
  await tx.setRemoteDescription(rx.localDescription!);
  await connected(tx, 10_000, 'TEST');
  return { tx, rx, tr };
}

for (const mode of ['native', 'js'] as const) {
  test(`direct RTP path (${mode}): werift receiver gets decodable H.264, sender reports, and a NACKed packet is retransmitted`, { skip: mode === 'native' && !nativeSrtp() ? `native addon not built (${nativeSrtpError()})` : false }, async (t) => {
    const dir = await tempDir(t);
    const fx = await h264Fixture(dir, { seconds: 2, size: '640x360' });
    const engine = testEngine();
    t.after(() => engine.close());
    const W = await loadWerift();
    const seqs = new Set<number>();
    let ssrcs = new Set<number>();
    let pts = new Set<number>();
    const depack = new H264Depacketizer();
    const aus: Buffer[] = [];
    const srs: RtcpSrPacket[] = [];
    let rxPeer: RTCPeerConnection | undefined;
    const { tr } = await peerPair(t, (rx) => {
      rxPeer = rx;
      rx.onTransceiverAdded.subscribe((rt) => {
        rt.receiver.onRtcp.subscribe((p) => {
          if (p.type === W.RtcpSrPacket.type) srs.push(p as RtcpSrPacket);
        });
      });
      rx.onTrack.subscribe((track) => {
        track.onReceiveRtp.subscribe((rtp) => {
          seqs.add(rtp.header.sequenceNumber);
          ssrcs = ssrcs.add(rtp.header.ssrc);
          pts = pts.add(rtp.header.payloadType);
          for (const a of depack.push(rtp.payload, rtp.header.sequenceNumber, rtp.header.timestamp, rtp.header.marker)) aus.push(a.au);
        });
      });
    });

    // Lose exactly one packet on the wire (the 40th RTP packet without marker) at the receiver's UDP
    // transports, below werift: only a NACK can bring it back. (The native sender writes to the fd
    // with sendmmsg, so the loss is made on the receiving side, for both modes alike.)
    let rtpIn = 0;
    let droppedSeq = -1;
    for (const p of (rxPeer!.iceTransports[0] as unknown as { connection: { protocols: Array<{ transport?: { onData?: (d: Buffer, a: unknown) => void } }> } }).connection.protocols) {
      const tr = p.transport;
      const real = tr?.onData;
      if (!tr || !real) continue;
      tr.onData = (b: Buffer, a: unknown) => {
        if (b.length > 12 && (b[0]! & 0xc0) === 0x80 && b[1]! < 200 && ++rtpIn === 40 && droppedSeq < 0) {
          droppedSeq = b.readUInt16BE(2);
          return;
        }
        real(b, a);
      };
    }

    const feeder = feedEngine(engine, cam, fx, { loop: true });
    t.after(() => feeder.stop());
    const feed = new RtpFeed(engine, cam, { sender: tr.sender }, 'test', undefined, mode === 'js' ? 'js' : true);
    t.after(() => feed.close());
    feed.start();
    await waitFor(() => aus.length >= 45 && srs.length >= 1 && droppedSeq >= 0 && seqs.has(droppedSeq), 20_000, () => `45 AUs (${aus.length}), an SR (${srs.length}), the dropped packet ${droppedSeq} retransmitted (${seqs.has(droppedSeq)})`);
    const st = feed.stats();
    assert.equal(st.directRtp?.packetsFallback, 0, 'every packet went the direct way');
    if (mode === 'native') {
      assert.deepEqual(st.directRtp?.native, { packets: st.packetsOut, drops: 0, errors: 0, off: null }, 'every packet through the native sender');
      assert.equal(st.directRtp?.packetsJs, 0);
    } else {
      assert.equal(st.directRtp?.packetsJs, st.packetsOut, 'every packet through the JavaScript loop');
      assert.equal(st.directRtp?.native.packets, 0);
    }
    assert.deepEqual([...ssrcs], [tr.sender.ssrc], 'the sender SSRC');
    assert.deepEqual([...pts], [tr.sender.codec!.payloadType], 'the negotiated payload type');
    const sr = srs[srs.length - 1]!;
    assert.ok(sr.senderInfo.packetCount > 0 && sr.senderInfo.packetCount <= st.packetsOut, 'SR packet count from the direct path');
    assert.ok(sr.senderInfo.octetCount > 0 && sr.senderInfo.octetCount <= st.bytesOut, 'SR octet count from the direct path');
    await writeFile(join(dir, 'rx.h264'), Buffer.concat(aus));
    const p = await probeH264(join(dir, 'rx.h264'));
    assert.ok(p.frames >= 45, `ffprobe decodes ${p.frames} frames`);
    assert.equal(p.width, 640);
  });
}

test('PLI from the receiver when the source cannot make a keyframe: counted as denied, visible in stats; a source that can is asked', async (t) => {
  const dir = await tempDir(t);
  const fx = await h264Fixture(dir, { seconds: 1, size: '320x240' });
  const engine = testEngine();
  t.after(() => engine.close());
  await loadWerift();
  let receiver: RTCRtpTransceiver | undefined;
  let ssrc: number | undefined;
  const { tr } = await peerPair(t, (rx) => {
    rx.onTransceiverAdded.subscribe((rt) => (receiver = rt));
    rx.onTrack.subscribe((track) => track.onReceiveRtp.subscribe((rtp) => void (ssrc = rtp.header.ssrc)));
  });
  // A camera whose driver cannot force an IDR (requestKeyframe → false), fed by hand.
  let canKey = false;
  let asked = 0;
  const pub = engine.publisher(cam, { label: 'no-idr-camera', requestKeyframe: () => (asked++, canKey) });
  t.after(() => pub.close());
  pub.setMime(fx.mime);
  let i = 0;
  const timer = setInterval(() => {
    const au = fx.aus[i++ % fx.aus.length]!;
    pub.write({ ts: Date.now() * 1000, wallclock: Date.now(), key: au.key, data: au.data });
  }, 1000 / fx.fps);
  t.after(() => clearInterval(timer));
  const feed = new RtpFeed(engine, cam, { sender: tr.sender }, 'test');
  t.after(() => feed.close());
  feed.start();
  await waitFor(() => ssrc !== undefined && receiver !== undefined, 10_000, 'media at the receiver');
  await receiver!.receiver.sendRtcpPLI(ssrc!);
  await waitFor(() => feed.stats().keyframeRequestsDenied === 1, 5000, () => `denied keyframe request counted (${JSON.stringify(feed.stats())})`);
  let st = feed.stats();
  assert.equal(st.plis, 1);
  assert.equal(st.keyframeRequestsGranted, 0);
  assert.equal(asked, 1, 'the driver was asked once');
  // A driver that can: granted. (PLIs closer than 500 ms apart are one request: wait past that.)
  canKey = true;
  await new Promise((r) => setTimeout(r, 600));
  await receiver!.receiver.sendRtcpPLI(ssrc!);
  await waitFor(() => feed.stats().keyframeRequestsGranted === 1, 5000, 'granted keyframe request counted');
  st = feed.stats();
  assert.equal(st.plis, 2);
  assert.equal(st.keyframeRequestsDenied, 1);
  assert.equal(asked, 2);
});
