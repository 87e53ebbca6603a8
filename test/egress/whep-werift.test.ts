// WHEP against werift on the receiving side: the answer plays the H.264 track without
// transcoding; what the receiver reassembles decodes with the real ffprobe; bad offers get
// clear typed refusals.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { RTCPeerConnection, RTCRtpCodecParameters } from 'werift';
import { H264Depacketizer } from '../../runtime/egress/h264-rtp.js';
import { silentLog } from '../../runtime/egress/pang-link.js';
import { gatheringComplete } from '../../runtime/egress/webrtc.js';
import { WhepServer } from '../../runtime/whep/server.js';
import { registerEgressRoutes } from '../../runtime/egress/http.js';
import { HttpServer } from '../../runtime/http/server.js';
import { EdgeError } from '../../runtime/engine/api.js';
import { h264Fixture } from './fake-source.js';
import { feedEngine, testEngine } from './engine-fixture.js';
import { probeH264, tempDir, waitFor } from './helpers.js';

const cam = { channel: 'cam', source: 'base', track: 'video' };

function receiverPc(): RTCPeerConnection {
  return new RTCPeerConnection({
    codecs: {
      video: [
        new RTCRtpCodecParameters({ mimeType: 'video/H264', clockRate: 90000, rtcpFeedback: [{ type: 'nack', parameter: 'pli' }], parameters: 'level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f' }),
      ],
      audio: [],
    },
    iceAdditionalHostAddresses: ['127.0.0.1'],
  });
}

test('WHEP → werift receiver: H.264 pass-through, decodable by ffprobe; DELETE ends the session', async (t) => {
  const dir = await tempDir(t);
  const fx = await h264Fixture(dir, { seconds: 3, size: '640x360' });
  const engine = testEngine();
  t.after(() => engine.close());
  const feeder = feedEngine(engine, cam, fx, { loop: true });
  t.after(() => feeder.stop());
  const whep = new WhepServer({ source: engine, log: silentLog, maxSessions: 2 });
  t.after(() => whep.close());

  const pc = receiverPc();
  t.after(() => pc.close());
  const tr = pc.addTransceiver('video', { direction: 'recvonly' });
  const depack = new H264Depacketizer();
  const aus: Buffer[] = [];
  tr.onTrack.subscribe((track) => {
    track.onReceiveRtp.subscribe((rtp) => {
      for (const au of depack.push(rtp.payload, rtp.header.sequenceNumber, rtp.header.timestamp, rtp.header.marker)) aus.push(au.au);
    });
  });
  await pc.setLocalDescription(await pc.createOffer());
  await gatheringComplete(pc, 3000);
  const { id, answer } = await whep.offer(cam, pc.localDescription!.sdp);
  await pc.setRemoteDescription({ type: 'answer', sdp: answer });
  await waitFor(() => aus.length >= 60, 20_000, '60 access units received over WebRTC');
  const file = join(dir, 'whep.h264');
  await writeFile(file, Buffer.concat(aus));
  const probe = await probeH264(file);
  assert.ok(probe.frames >= 60, `ffprobe decoded ${probe.frames}`);
  assert.equal(probe.width, 640);
  const st = whep.stats();
  assert.equal(st.sessions, 1);
  assert.ok(st.viewers[0]!.feed.framesOut >= 60);
  assert.equal(depack.counters.malformed, 0);
  assert.ok(whep.end(id));
  assert.equal(whep.stats().sessions, 0);
  assert.equal(engine.stats().totals.consumers, 0, 'the viewer consumer is gone');
  assert.equal(whep.end(id), false, 'DELETE twice is a no-op');
});

test('WHEP refuses malformed offers, unknown and non-H.264 tracks, and too many viewers, with typed errors', async (t) => {
  const engine = testEngine();
  t.after(() => engine.close());
  const data = engine.publisher({ channel: 'cam', source: 'base', track: 'gps' }, { label: 'gps' });
  data.setMime('application/json');
  const vid = engine.publisher(cam, { label: 'cam' });
  vid.setMime('video/h264');
  t.after(() => (data.close(), vid.close()));
  const whep = new WhepServer({ source: engine, log: silentLog, maxSessions: 1 });
  t.after(() => whep.close());
  const pc = receiverPc();
  t.after(() => pc.close());
  pc.addTransceiver('video', { direction: 'recvonly' });
  await pc.setLocalDescription(await pc.createOffer());
  await gatheringComplete(pc, 3000);
  const good = pc.localDescription!.sdp;
  const cases: Array<[string, string, typeof cam, number]> = [
    ['garbage', 'hello world', cam, 400],
    ['empty', '', cam, 400],
    ['no media', 'v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n', cam, 400],
    ['no ICE', good.replace(/a=ice-ufrag:.*\r\n/g, ''), cam, 400],
    ['no fingerprint', good.replace(/a=fingerprint:.*\r\n/g, ''), cam, 400],
    ['no H.264', good.replace(/H264\/90000/g, 'VP8/90000'), cam, 406],
    ['sendonly', good.replace('a=recvonly', 'a=sendonly'), cam, 400],
    ['huge', 'v=0\r\n' + 'a=x:'.padEnd(70_000, 'x'), cam, 400],
    ['unknown track', good, { channel: 'cam', source: 'base', track: 'nope' }, 404],
    ['data track', good, { channel: 'cam', source: 'base', track: 'gps' }, 415],
  ];
  for (const [name, sdp, ref, status] of cases) {
    await assert.rejects(whep.offer(ref, sdp), (e: unknown) => {
      assert.ok(e instanceof EdgeError, name);
      assert.equal((e as EdgeError & { status: number }).status, status, `${name}: ${(e as Error).message}`);
      return true;
    });
  }
  await whep.offer(cam, good);
  await assert.rejects(whep.offer(cam, good), (e: unknown) => (e as { status: number }).status === 503);
  assert.ok(Object.values(whep.stats().rejected).reduce((a, b) => a + b, 0) >= cases.length + 1);
});

test('WHEP over HTTP: 201 + Location + application/sdp, trickle PATCH 204, DELETE 200 then 404, bad requests typed', async (t) => {
  const engine = testEngine();
  t.after(() => engine.close());
  const vid = engine.publisher(cam, { label: 'cam' });
  vid.setMime('video/h264;width=640;height=360;codecs=avc1.42C01E');
  t.after(() => vid.close());
  const whep = new WhepServer({ source: engine, log: silentLog, maxSessions: 2 });
  t.after(() => whep.close());
  const http = new HttpServer({ host: '127.0.0.1', port: 0, maxConnections: 16 });
  registerEgressRoutes(http.router, { whep, dashboard: false });
  const { port } = await http.listen();
  t.after(() => http.close());
  const base = `http://127.0.0.1:${port}`;
  const pc = receiverPc();
  t.after(() => pc.close());
  pc.addTransceiver('video', { direction: 'recvonly' });
  await pc.setLocalDescription(await pc.createOffer());
  await gatheringComplete(pc, 3000);
  const offer = pc.localDescription!.sdp;

  let r = await fetch(`${base}/whep/cam/base/video`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: offer });
  assert.equal(r.status, 415);
  r = await fetch(`${base}/whep/cam/base/video`, { method: 'POST', headers: { 'content-type': 'application/sdp' }, body: 'v=0\r\nm=video x\r\n' });
  assert.equal(r.status, 400);
  assert.match(((await r.json()) as { error: { code: string } }).error.code, /^SDP_/);
  r = await fetch(`${base}/whep/cam/base/nope`, { method: 'POST', headers: { 'content-type': 'application/sdp' }, body: offer });
  assert.equal(r.status, 404);
  r = await fetch(`${base}/whep/cam/base/video`, { method: 'POST', headers: { 'content-type': 'application/sdp' }, body: offer });
  assert.equal(r.status, 201);
  assert.equal(r.headers.get('content-type'), 'application/sdp');
  const loc = r.headers.get('location')!;
  assert.match(loc, /^\/whep\/session\/[0-9a-f]{24}$/);
  const answer = await r.text();
  assert.match(answer, /a=sendonly/);
  assert.match(answer, /H264\/90000/);
  r = await fetch(`${base}${loc}`, { method: 'PATCH', headers: { 'content-type': 'application/trickle-ice-sdpfrag' }, body: 'a=ice-ufrag:x\r\na=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\na=end-of-candidates\r\n' });
  assert.equal(r.status, 204);
  r = await fetch(`${base}${loc}`, { method: 'DELETE' });
  assert.equal(r.status, 200);
  r = await fetch(`${base}${loc}`, { method: 'DELETE' });
  assert.equal(r.status, 404);
  assert.equal(whep.stats().sessions, 0);
});

test('WHEP: offers that never connect cannot starve viewers — 4 per client address, gone after 10 s (shipped defaults)', async (t) => {
  const dir = await tempDir(t);
  const fx = await h264Fixture(dir, { seconds: 2, size: '320x240' });
  const engine = testEngine();
  t.after(() => engine.close());
  const feeder = feedEngine(engine, cam, fx, { loop: true });
  t.after(() => feeder.stop());
  // the shipped defaults: 8 sessions, 4 per client, 10 s to connect
  const { egressConfigSchema } = await import('../../runtime/egress/config.js');
  const c = egressConfigSchema.parse({}).whep;
  const whep = new WhepServer({ source: engine, log: silentLog, maxSessions: c.maxSessions, maxSessionsPerClient: c.maxSessionsPerClient, connectTimeoutMs: c.connectTimeoutMs });
  t.after(() => whep.close());
  const http = new HttpServer({ host: '127.0.0.1', port: 0, maxConnections: 64 });
  registerEgressRoutes(http.router, { whep, dashboard: false });
  const { port } = await http.listen();
  t.after(() => http.close());

  // A client (from 127.0.0.2) posts 8 offers and never connects.
  const offerPc = receiverPc();
  offerPc.addTransceiver('video', { direction: 'recvonly' });
  await offerPc.setLocalDescription(await offerPc.createOffer());
  const sdp = offerPc.localDescription!.sdp;
  await offerPc.close();
  const { request } = await import('node:http');
  const postFrom = (localAddress: string): Promise<number> =>
    new Promise((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path: '/whep/cam/base/video', method: 'POST', localAddress, headers: { 'content-type': 'application/sdp' } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end(sdp);
    });
  const codes: number[] = [];
  for (let i = 0; i < 8; i++) codes.push(await postFrom('127.0.0.2'));
  assert.deepEqual(codes, [201, 201, 201, 201, 429, 429, 429, 429]);
  const t0 = Date.now();

  // A real viewer from another address still gets in and plays.
  const pc = receiverPc();
  t.after(() => pc.close());
  const tr = pc.addTransceiver('video', { direction: 'recvonly' });
  let rtp = 0;
  tr.onTrack.subscribe((track) => track.onReceiveRtp.subscribe(() => rtp++));
  await pc.setLocalDescription(await pc.createOffer());
  await gatheringComplete(pc, 3000);
  const r = await fetch(`http://127.0.0.1:${port}/whep/cam/base/video`, { method: 'POST', headers: { 'content-type': 'application/sdp' }, body: pc.localDescription!.sdp });
  assert.equal(r.status, 201);
  await pc.setRemoteDescription({ type: 'answer', sdp: await r.text() });
  await waitFor(() => rtp > 50, 20_000, 'the real viewer receives video');

  // The unconnected ones are gone after the ICE deadline (10 s), counted.
  await waitFor(() => (whep.stats().endedBy['ICE connect timeout'] ?? 0) === 4, 15_000, 'unconnected sessions expired');
  const took = Date.now() - t0;
  assert.ok(took >= 9000 && took <= 12_000, `expired after ${took} ms`);
  assert.equal(whep.stats().sessions, 1);
  assert.equal(whep.stats().rejected['WHEP_CLIENT_LIMIT'], 4);
});
