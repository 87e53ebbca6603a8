// WHIP publisher against a WHIP endpoint whose WebRTC side is headless Chromium: the test
// server hands the offer to an RTCPeerConnection in a page and returns its answer. Chromium must
// decode the frames (framesDecoded), and DELETE must tear the session down.
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { silentLog } from '../../runtime/egress/pang-link.js';
import { WhipPublisher } from '../../runtime/egress/whip-publisher.js';
import { h264Fixture } from './fake-source.js';
import { feedEngine, testEngine } from './engine-fixture.js';
import { chromiumMissing, launchChromium } from './chromium.js';
import { fastBackoff, tempDir, waitFor } from './helpers.js';
import { skipUnlessCi } from '../support/peer.js';

const cam = { channel: 'cam', source: 'base', track: 'video' };

test('WHIP → Chromium receiver: frames decoded under an accepted profile-level-id, a data track on a data channel, DELETE tears down', async (t) => {
  const missing = chromiumMissing();
  if (missing) return skipUnlessCi(t, missing);
  const dir = await tempDir(t);
  const fx = await h264Fixture(dir, { seconds: 3, size: '1280x720' });
  const engine = testEngine();
  t.after(() => engine.close());
  const browser = await launchChromium();
  t.after(() => browser.close());
  const page = await browser.newPage();
  await page.setContent('<html><body>whip receiver</body></html>');

  let deletes = 0;
  let patches = 0;
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      void (async () => {
        if (req.method === 'POST' && req.url === '/whip') {
          if (req.headers.authorization !== 'Bearer t0k') return res.writeHead(401).end();
          const offer = Buffer.concat(chunks).toString();
          const answer = await page.evaluate(async (sdp: string) => {
            const w = window as unknown as { pc: RTCPeerConnection; dc: { label: string; msgs: string[] } };
            const pc = new RTCPeerConnection();
            w.pc = pc;
            w.dc = { label: '', msgs: [] };
            pc.ondatachannel = (e) => {
              w.dc.label = e.channel.label;
              e.channel.onmessage = (m) => void w.dc.msgs.push(typeof m.data === 'string' ? m.data : new TextDecoder().decode(m.data as ArrayBuffer));
            };
            await pc.setRemoteDescription({ type: 'offer', sdp });
            await pc.setLocalDescription(await pc.createAnswer());
            await new Promise<void>((r) => {
              if (pc.iceGatheringState === 'complete') return r();
              const to = setTimeout(r, 3000);
              pc.addEventListener('icegatheringstatechange', () => {
                if (pc.iceGatheringState === 'complete') (clearTimeout(to), r());
              });
            });
            return pc.localDescription!.sdp;
          }, offer);
          res.writeHead(201, { 'content-type': 'application/sdp', location: '/whip/res/1', etag: '"1"' }).end(answer);
        } else if (req.method === 'PATCH' && req.url === '/whip/res/1') {
          patches++;
          res.writeHead(405).end(); // this server has no trickle
        } else if (req.method === 'DELETE' && req.url === '/whip/res/1') {
          deletes++;
          await page.evaluate(() => (window as unknown as { pc: RTCPeerConnection }).pc.close());
          res.writeHead(200).end();
        } else res.writeHead(404).end();
      })().catch((e: unknown) => res.writeHead(500).end(String(e)));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.after(() => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r()))));
  const port = (server.address() as AddressInfo).port;

  const feeder = feedEngine(engine, cam, fx, { loop: true });
  t.after(() => feeder.stop());
  // A data track rides along on a data channel.
  const gps = { channel: 'cam', source: 'base', track: 'gps' };
  const gpsPub = engine.publisher(gps, { label: 'gps' });
  gpsPub.setMime('application/json');
  let seq = 0;
  const gpsTimer = setInterval(() => gpsPub.write({ ts: 0, wallclock: Date.now(), key: true, data: Buffer.from(JSON.stringify({ seq: seq++, lat: 37.5 })) }), 100);
  t.after(() => (clearInterval(gpsTimer), gpsPub.close()));
  await waitFor(() => feeder.sent() > 0, 5000, 'first frame');
  const pub = new WhipPublisher({ name: 'chromium', url: `http://127.0.0.1:${port}/whip`, token: 't0k', tracks: [cam, gps], source: engine, log: silentLog, backoff: fastBackoff, timeoutMs: 15_000 });
  t.after(() => pub.close());
  pub.start();
  await waitFor(() => pub.stats().state === 'connected', 20_000, 'WHIP connected to Chromium');
  const decoded = async (): Promise<number> =>
    page.evaluate(async () => {
      const pc = (window as unknown as { pc: RTCPeerConnection }).pc;
      let n = 0;
      (await pc.getStats()).forEach((s: { type: string; kind?: string; framesDecoded?: number }) => {
        if (s.type === 'inbound-rtp' && s.kind === 'video') n = s.framesDecoded ?? 0;
      });
      return n;
    });
  let frames = 0;
  const deadline = Date.now() + 30_000;
  while ((frames = await decoded()) < 90) {
    if (Date.now() > deadline) assert.fail(`Chromium decoded only ${frames} frames in 30 s`);
    await new Promise((r) => setTimeout(r, 200));
  }
  const sent = pub.stats().feeds[0]!.framesOut;
  await page.waitForFunction(() => (window as unknown as { dc: { msgs: string[] } }).dc.msgs.length >= 5, undefined, { timeout: 10_000 });
  const dc = await page.evaluate(() => (window as unknown as { dc: { label: string; msgs: string[] } }).dc);
  assert.equal(dc.label, 'cam/base/gps');
  const seqs = dc.msgs.map((m) => (JSON.parse(m) as { seq: number }).seq);
  assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), 'records in order');
  assert.ok(frames >= 90 && frames <= sent, `decoded ${frames} of ${sent}`);
  const st = pub.stats();
  assert.ok(['42e01f', '42c01f', '42001f'].includes(st.negotiatedProfile ?? ''), `answer accepted profile ${st.negotiatedProfile}`);
  pub.close();
  await waitFor(() => deletes === 1, 5000, 'DELETE reached the endpoint');
  const state = await page.evaluate(() => (window as unknown as { pc: RTCPeerConnection }).pc.connectionState);
  assert.equal(state, 'closed');
  t.diagnostic(`Chromium decoded ${frames} frames; profile ${st.negotiatedProfile}; trickle PATCHes ${patches}; PLI ${st.feeds[0]!.plis} FIR ${st.feeds[0]!.firs}; keyframe requests to the camera ${feeder.keyRequests()}`);
});
