// A WHEP viewer that vanishes without DELETE (its host goes silent: no more STUN, RTCP or DTLS)
// is found by ICE consent freshness (RFC 7675, werift: 30 s without a consent answer → failed):
// the session is closed, counted by reason, and its engine consumer released.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RTCPeerConnection, RTCRtpCodecParameters } from 'werift';
import { silentLog } from '../../runtime/egress/pang-link.js';
import { gatheringComplete } from '../../runtime/egress/webrtc.js';
import { WhepServer } from '../../runtime/whep/server.js';
import { h264Fixture } from './fake-source.js';
import { feedEngine, testEngine } from './engine-fixture.js';
import { tempDir, waitFor } from './helpers.js';

const cam = { channel: 'cam', source: 'base', track: 'video' };

interface SilenceableSocket {
  send: (...a: unknown[]) => void;
  removeAllListeners(ev: string): void;
}

test('WHEP: a viewer that vanishes without DELETE loses ICE consent; the session is closed, counted and its consumer released', { timeout: 90_000 }, async (t) => {
  const dir = await tempDir(t);
  const fx = await h264Fixture(dir, { seconds: 2, size: '320x240' });
  const engine = testEngine();
  t.after(() => engine.close());
  const feeder = feedEngine(engine, cam, fx, { loop: true });
  t.after(() => feeder.stop());
  const whep = new WhepServer({ source: engine, log: silentLog, maxSessions: 2 });
  t.after(() => whep.close());

  const pc = new RTCPeerConnection({
    codecs: {
      video: [new RTCRtpCodecParameters({ mimeType: 'video/H264', clockRate: 90000, rtcpFeedback: [{ type: 'nack', parameter: 'pli' }], parameters: 'level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f' })],
      audio: [],
    },
    iceAdditionalHostAddresses: ['127.0.0.1'],
  });
  t.after(() => pc.close());
  const tr = pc.addTransceiver('video', { direction: 'recvonly' });
  let packets = 0;
  tr.onTrack.subscribe((track) => track.onReceiveRtp.subscribe(() => void packets++));
  await pc.setLocalDescription(await pc.createOffer());
  await gatheringComplete(pc, 3000);
  const { answer } = await whep.offer(cam, pc.localDescription!.sdp);
  await pc.setRemoteDescription({ type: 'answer', sdp: answer });
  await waitFor(() => packets >= 50, 15_000, () => `50 RTP packets at the viewer (${packets})`);
  assert.equal(engine.stats().totals.consumers, 1, 'the viewer holds one engine consumer');

  // The viewer's host vanishes: its sockets neither send nor receive any more (no DELETE, no
  // DTLS close, no RTCP BYE). Only consent freshness can tell.
  for (const it of pc.iceTransports) {
    const sock = (it as unknown as { connection: { nominated?: { protocol: { transport: { socket: SilenceableSocket } } } } }).connection.nominated?.protocol.transport.socket;
    if (!sock) continue;
    sock.send = () => undefined;
    sock.removeAllListeners('message');
  }
  const lostAt = Date.now();
  await waitFor(() => whep.stats().sessions === 0, 60_000, () => `the silent viewer's session closed (${JSON.stringify(whep.stats().endedBy)})`);
  const st = whep.stats();
  t.diagnostic(`session closed ${Math.round((Date.now() - lostAt) / 1000)} s after the viewer went silent; endedBy ${JSON.stringify(st.endedBy)}`);
  assert.deepEqual(st.endedBy, { 'peer failed': 1 }, 'counted as an ICE failure (consent expired), not a DELETE');
  assert.equal(st.ended, 1);
  assert.equal(engine.stats().totals.consumers, 0, 'its engine consumer was released');
});
