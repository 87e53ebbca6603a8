// The direct RTP path (runtime/egress/webrtc.ts DirectRtpPath) between two real werift peers on
// loopback: packets carry the sender's SSRC and negotiated payload type, access units reassemble
// and decode, werift's RTCP sender reports still go out (their counts match what was sent), and a
// packet lost on the wire comes back through werift's NACK retransmission from the history the
// direct path keeps.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import type { RtcpSrPacket } from 'werift';
import { H264Depacketizer } from '../../runtime/egress/h264-rtp.js';
import { closePeer, connected, createPeer, gatheringComplete, loadWerift, RtpFeed } from '../../runtime/egress/webrtc.js';
import { h264Fixture } from './fake-source.js';
import { feedEngine, testEngine } from './engine-fixture.js';
import { probeH264, tempDir, waitFor } from './helpers.js';

const cam = { channel: 'cam', source: 'base', track: 'video' };

test('direct RTP path: werift receiver gets decodable H.264, sender reports, and a NACKed packet is retransmitted', async (t) => {
  const dir = await tempDir(t);
  const fx = await h264Fixture(dir, { seconds: 2, size: '640x360' });
  const engine = testEngine();
  t.after(() => engine.close());
  const W = await loadWerift();
  const tx = createPeer();
  const rx = createPeer();
  t.after(() => {
    closePeer(tx);
    closePeer(rx);
  });
  const tr = tx.addTransceiver('video', { direction: 'sendonly' });
  const seqs = new Set<number>();
  let ssrcs = new Set<number>();
  let pts = new Set<number>();
  const depack = new H264Depacketizer();
  const aus: Buffer[] = [];
  const srs: RtcpSrPacket[] = [];
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
  await tx.setLocalDescription(await tx.createOffer());
  await gatheringComplete(tx, 3000);
  await rx.setRemoteDescription(tx.localDescription!);
  await rx.setLocalDescription(await rx.createAnswer());
  await gatheringComplete(rx, 3000);
  await tx.setRemoteDescription(rx.localDescription!);
  await connected(tx, 10_000, 'TEST');

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
