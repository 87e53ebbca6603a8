// The direct RTP path (runtime/egress/webrtc.ts DirectRtpPath) between two real werift peers on
// loopback: packets carry the sender's SSRC and negotiated payload type, access units reassemble
// and decode, werift's RTCP sender reports still go out (their counts match what was sent), and a
// packet lost on the wire comes back through werift's NACK retransmission from the history the
// direct path keeps.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import type { RTCPeerConnection, RTCRtpTransceiver, RtcpSrPacket } from 'werift';
import { H264Depacketizer } from '../../runtime/egress/h264-rtp.js';
import { closePeer, connected, createPeer, gatheringComplete, loadWerift, RtpFeed } from '../../runtime/egress/webrtc.js';
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

test('direct RTP path: werift receiver gets decodable H.264, sender reports, and a NACKed packet is retransmitted', async (t) => {
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
  const { tr } = await peerPair(t, (rx) => {
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

  // Lose exactly one packet on the wire (the 40th) below werift: only a NACK can bring it back.
  const sender = tr.sender as unknown as { dtlsTransport: { iceTransport: { connection: { nominated: { protocol: { transport: { socket: { send: (...a: unknown[]) => void } } } } } } } };
  const sock = sender.dtlsTransport.iceTransport.connection.nominated.protocol.transport.socket;
  const realSend = sock.send.bind(sock);
  let calls = 0;
  let droppedSeq = -1;
  sock.send = (...a: unknown[]) => {
    calls++;
    const b = a[0] as Buffer;
    if (calls === 40 && droppedSeq < 0 && b.length > 12 && (b[0]! & 0xc0) === 0x80 && b[1]! < 200) {
      droppedSeq = b.readUInt16BE(2);
      return;
    }
    realSend(...a);
  };
  t.after(() => (sock.send = realSend));

  const feeder = feedEngine(engine, cam, fx, { loop: true });
  t.after(() => feeder.stop());
  const feed = new RtpFeed(engine, cam, { sender: tr.sender }, 'test');
  t.after(() => feed.close());
  feed.start();
  await waitFor(() => aus.length >= 45 && srs.length >= 1 && droppedSeq >= 0 && seqs.has(droppedSeq), 20_000, () => `45 AUs (${aus.length}), an SR (${srs.length}), the dropped packet ${droppedSeq} retransmitted (${seqs.has(droppedSeq)})`);
  const st = feed.stats();
  assert.deepEqual(st.directRtp, { packetsFallback: 0 }, 'every packet went the direct way');
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
