// The WHIP side of thin uplinks (issue 8): WhipPublisher is a PrioritizedLink. Its uplink estimate
// comes from the receiver's RTCP reports (loss = saturation, what got through = capacity), and the
// scheduler's mode gates its video to keyframes-only or paused. Against a real werift receiver
// (our WHIP ingest) behind a UDP proxy that drops a set share of the RTP packets.
import assert from 'node:assert/strict';
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test, type TestContext } from 'node:test';
import { silentLog } from '../../runtime/egress/pang-link.js';
import { withoutCandidates } from '../../runtime/egress/sdp.js';
import { WhipIngest } from '../../runtime/egress/whip-ingest.js';
import { WhipPublisher } from '../../runtime/egress/whip-publisher.js';
import { RtcpDrainMeter, VideoModeGate } from '../../runtime/egress/whip-uplink.js';
import type { PrioritizedLink } from '../../runtime/uplink/controller.js';
import { h264Fixture } from './fake-source.js';
import { feedEngine, testEngine } from './engine-fixture.js';
import { fastBackoff, tempDir, waitFor } from './helpers.js';

test('RtcpDrainMeter: loss marks saturation and measures what got through; no loss is a lower bound; REMB below the offer caps', () => {
  const m = new RtcpDrainMeter();
  const T = (bytes: number, packets: number, nacked = 0) => ({ bytes, packets, nacked });
  assert.equal(m.observe(0, T(0, 0), { fractionLost: 0, jitter: 0 }), null, 'first report starts the interval');
  assert.deepEqual(m.observe(1000, T(100_000, 100), { fractionLost: 0, jitter: 900 }), { bytes: 100_000, intervalMs: 1000, backlogged: false, source: 'whip', atMs: 1000 });
  const lossy = m.observe(2000, T(200_000, 200), { fractionLost: 64, jitter: 900 })!; // 25 % left after repair
  assert.equal(lossy.backlogged, true);
  assert.equal(lossy.bytes, 75_000);
  assert.equal(m.observe(3000, T(300_000, 300), { fractionLost: 2, jitter: 0 })!.backlogged, false, '0.8 % is noise, not saturation');
  // All repaired by retransmission (report says 0), but 30 of 100 packets were NACKed: saturated.
  const nack = m.observe(4000, T(400_000, 400, 30), { fractionLost: 0, jitter: 0 })!;
  assert.deepEqual([nack.bytes, nack.backlogged], [70_000, true]);
  const remb = m.observe(5000, T(500_000, 500, 30), { fractionLost: 0, jitter: 0 }, 40_000)!;
  assert.deepEqual([remb.bytes, remb.backlogged], [40_000, true]);
  const s = m.stats();
  assert.equal(s.reports, 6);
  assert.equal(s.lossyReports, 2);
  assert.equal(s.lastJitterMs, 0);
  // Hostile values never throw nor produce negative bytes.
  for (const f of [-5, 999, NaN, Infinity]) {
    const x = m.observe(6000 + Math.random(), T(600_000, 600, 10_000), { fractionLost: f, jitter: NaN });
    if (x) assert.ok(x.bytes >= 0);
  }
});

test('VideoModeGate: keyframes-only passes keys, paused nothing, stepping up waits for a keyframe', () => {
  const g = new VideoModeGate();
  assert.ok(g.pass(false));
  assert.equal(g.set('keyframes-only'), false, 'a step down needs no keyframe');
  assert.deepEqual([g.pass(false), g.pass(true)], [false, true]);
  assert.equal(g.set('paused'), false);
  assert.deepEqual([g.pass(true), g.pass(false)], [false, false]);
  assert.equal(g.set('full'), true, 'a step up asks for a keyframe');
  assert.deepEqual([g.pass(false), g.pass(true), g.pass(false)], [false, true, true]);
  assert.deepEqual(g.held, { keyframesOnly: 1, paused: 2, awaitingKey: 1 });
});

/** UDP proxy between publisher and receiver; drops `lossPct` % of publisher→receiver RTP media packets (a fixed pattern). */
class LossyUdpProxy {
  readonly front: Socket = createSocket('udp4');
  private readonly back: Socket = createSocket('udp4');
  private client: RemoteInfo | null = null;
  private n = 0;
  lossPct = 0;
  dropped = 0;
  constructor(private readonly target: number) {
    this.front.on('message', (m, r) => {
      this.client = r;
      const rtpMedia = m.length > 12 && (m[0]! & 0xc0) === 0x80 && (m[1]! & 0x7f) >= 96;
      if (rtpMedia && this.n++ % 100 < this.lossPct) {
        this.dropped++;
        return;
      }
      this.back.send(m, this.target, '127.0.0.1');
    });
    this.back.on('message', (m) => {
      if (this.client) this.front.send(m, this.client.port, this.client.address);
    });
  }
  async listen(): Promise<number> {
    await new Promise<void>((r) => this.front.bind(0, '127.0.0.1', () => r()));
    await new Promise<void>((r) => this.back.bind(0, '127.0.0.1', () => r()));
    return this.front.address().port;
  }
  close(): void {
    this.front.close();
    this.back.close();
  }
}

/**
 * A WHIP endpoint in front of our ingest: the offer reaches werift without candidates, the answer
 * names only the proxy, so every packet of the session crosses the proxy.
 */
async function proxiedEndpoint(t: TestContext, ingest: WhipIngest): Promise<{ url: string; proxy: () => LossyUdpProxy | null }> {
  let proxy: LossyUdpProxy | null = null;
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString('utf8')));
    req.on('end', () => {
      void (async () => {
        if (req.method === 'POST') {
          const { id, answer } = await ingest.offer({ channel: 'ingest', source: 'robot', track: 'video' }, withoutCandidates(body));
          const port = Number(/a=candidate:\S+ 1 udp \d+ 127\.0\.0\.1 (\d+) typ host/.exec(answer)?.[1]);
          proxy?.close();
          proxy = new LossyUdpProxy(port);
          const front = await proxy.listen();
          const viaProxy = withoutCandidates(answer).replace(/(a=mid:[^\r\n]*\r\n)/, `$1a=candidate:1 1 udp 2130706431 127.0.0.1 ${front} typ host\r\n`);
          res.writeHead(201, { 'content-type': 'application/sdp', location: `/res/${id}` }).end(viaProxy);
        } else if (req.method === 'DELETE') {
          ingest.end(req.url!.split('/').pop()!);
          res.writeHead(200).end();
        } else res.writeHead(405).end();
      })().catch((e: unknown) => res.writeHead(500).end(String(e)));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.after(async () => {
    proxy?.close();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/whip`, proxy: () => proxy };
}

test('WHIP as a PrioritizedLink: RTCP receiver reports behind 0 % / 30 % loss → lower bound / measured capacity; modes gate video', { timeout: 90_000 }, async (t) => {
  const dir = await tempDir(t);
  const fx = await h264Fixture(dir, { seconds: 2, size: '320x240' });
  const engine = testEngine(['cam', 'ingest']);
  t.after(() => engine.close());
  const cam = { channel: 'cam', source: 'base', track: 'video' };
  const feeder = feedEngine(engine, cam, fx, { loop: true });
  t.after(() => feeder.stop());
  const ingest = new WhipIngest({ engine, log: silentLog, maxSessions: 2 });
  t.after(() => ingest.close());
  const ep = await proxiedEndpoint(t, ingest);
  const pub = new WhipPublisher({ name: 'whip-up', url: ep.url, tracks: [cam], source: engine, log: silentLog, backoff: fastBackoff, timeoutMs: 10_000, trickle: 'off', priority: 40 });
  t.after(() => pub.close());
  const link: PrioritizedLink = pub; // the controller's interface, checked by the compiler
  pub.start();
  await waitFor(() => pub.stats().state === 'connected' && (ingest.stats().sessions[0]?.framesIn ?? 0) > 10, 15_000, 'WHIP through the proxy');
  assert.ok(ep.proxy(), 'the session crosses the proxy');

  // No loss: every report says the link carried what we offered — a lower bound, not confident.
  await waitFor(() => pub.stats().receiverReports.reports >= 3, 15_000, () => `3 receiver reports (${JSON.stringify(pub.stats().receiverReports)})`);
  let est = link.uplink.estimate(Date.now());
  assert.equal(est.confident, false, 'no loss: lower bound only');
  assert.ok(est.bytesPerSec! > 0);
  assert.ok(est.bySource.whip >= 2);
  const d = link.uplinkDemand()!;
  assert.equal(d.kind, 'video');
  assert.equal(d.priority, 40);
  assert.ok(d.demandBytesPerSec > 0 && d.keyframeBytesPerSec > 0 && d.keyframeBytesPerSec < d.demandBytesPerSec);

  // 30 % of the RTP media lost on the way: the receiver reports it; the estimate becomes a
  // measured capacity below what we offer.
  ep.proxy()!.lossPct = 30;
  const lossy0 = pub.stats().receiverReports.lossyReports;
  await waitFor(() => pub.stats().receiverReports.lossyReports >= lossy0 + 3 && link.uplink.estimate(Date.now()).confident, 30_000, () => `lossy reports and a confident estimate (dropped ${ep.proxy()!.dropped}, nacked ${pub.stats().feeds[0]?.nacked}; ${JSON.stringify(pub.stats().receiverReports)} ${JSON.stringify(link.uplink.estimate(Date.now()))})`);
  est = link.uplink.estimate(Date.now());
  const offered = link.uplinkDemand()!.demandBytesPerSec;
  t.diagnostic(`offered ${Math.round(offered)} B/s; estimate ${Math.round(est.bytesPerSec!)} B/s (confident); last fraction lost ${pub.stats().receiverReports.lastFractionLost.toFixed(3)}, NACKed share ${pub.stats().receiverReports.lastNackedShare.toFixed(3)}; proxy dropped ${ep.proxy()!.dropped}`);
  assert.ok(est.bytesPerSec! < offered, 'capacity measured below the offered rate');
  assert.ok(Math.max(pub.stats().receiverReports.lastFractionLost, pub.stats().receiverReports.lastNackedShare) >= 0.02);
  ep.proxy()!.lossPct = 0;

  // Modes from the scheduler: keyframes-only, paused, back to full at a keyframe.
  const sub = engine.subscribe({ channel: 'ingest', source: 'robot', track: 'video' }, { label: 'test' });
  t.after(() => sub.close());
  const got: boolean[] = [];
  const take = (): void => {
    for (let it = sub.next(); it; it = sub.next()) if (it.type === 'frame') got.push(it.frame.key);
  };
  sub.onReadable(take);
  take();
  link.setMode('keyframes-only');
  await waitFor(() => pub.stats().uplinkHeld.keyframesOnly >= 20, 10_000, 'P-frames held back');
  const from = got.length;
  await waitFor(() => got.length >= from + 2, 10_000, () => `two more ingested frames (${got.length - from})`);
  assert.ok(got.slice(from).every((k) => k), 'keyframes-only: only keyframes reach the receiver');
  link.setMode('paused');
  await waitFor(() => pub.stats().uplinkHeld.paused >= 5, 10_000, 'paused holds frames');
  const framesOut = pub.stats().feeds[0]!.framesOut;
  await waitFor(() => pub.stats().uplinkHeld.paused >= 45, 10_000, 'paused for 40 more frames');
  assert.equal(pub.stats().feeds[0]!.framesOut, framesOut, 'paused: no video out');
  const keyReq = feeder.keyRequests();
  link.setMode('full');
  assert.equal(feeder.keyRequests(), keyReq + 1, 'stepping up asks the camera for a keyframe');
  const again = got.length;
  await waitFor(() => got.slice(again).filter((k) => !k).length >= 10, 10_000, 'full again: P-frames flow');
  assert.equal(got[again], true, 'the first frame after the step up is a keyframe');
  assert.equal(pub.stats().uplinkMode, 'full');
});

test('WHIP encoder cap for the uplink scheduler: asked of the video source as "uplink", lifted on null and on close; a source that cannot is not cappable', async (t) => {
  const engine = testEngine(['cam']);
  t.after(() => engine.close());
  const caps: Array<{ by: string; cap: unknown }> = [];
  const cam = { channel: 'cam', source: 'base', track: 'video' };
  const src = engine.publisher(cam, { label: 'cam', requestKeyframe: () => true, setEncodingCap: (by, cap) => (caps.push({ by, cap }), true) });
  t.after(() => src.close());
  src.setMime('video/h264;codecs=avc1.42E01F');
  // The endpoint refuses connections: the link resolves its tracks, then backs off (no session needed).
  const pub = new WhipPublisher({ name: 'capped', url: 'http://127.0.0.1:9/whip', tracks: [cam], source: engine, log: silentLog, backoff: fastBackoff, timeoutMs: 1000, trickle: 'off' });
  t.after(() => pub.close());
  const link: PrioritizedLink = pub;
  pub.start();
  await waitFor(() => link.uplinkDemand() !== null, 5000, 'the link knows its video track');
  assert.equal(link.uplinkDemand()!.cappable, true);
  assert.equal(link.setEncodingCap!(50_000), true);
  assert.deepEqual(caps.at(-1), { by: 'uplink', cap: { bitrateBps: 400_000 } });
  assert.notEqual(link.uplinkDemand()!.uncappedBytesPerSec, undefined, 'remembers the uncapped demand');
  assert.equal(link.setEncodingCap!(null), true);
  assert.deepEqual(caps.at(-1), { by: 'uplink', cap: null });
  link.setEncodingCap!(30_000);
  pub.close();
  assert.deepEqual(caps.at(-1), { by: 'uplink', cap: null }, 'close lifts the cap');
  assert.deepEqual(pub.stats().encodingCap.requests, 2);

  const engine2 = testEngine(['cam']);
  t.after(() => engine2.close());
  const plain = engine2.publisher(cam, { label: 'no-cap-camera' });
  t.after(() => plain.close());
  plain.setMime('video/h264');
  const pub2 = new WhipPublisher({ name: 'uncappable', url: 'http://127.0.0.1:9/whip', tracks: [cam], source: engine2, log: silentLog, backoff: fastBackoff, timeoutMs: 1000, trickle: 'off' });
  t.after(() => pub2.close());
  pub2.start();
  await waitFor(() => pub2.uplinkDemand() !== null, 5000, 'video track known');
  assert.equal(pub2.setEncodingCap(50_000), false, 'the source has no encoder to ask');
  assert.equal(pub2.uplinkDemand()!.cappable, false);
  assert.equal(pub2.stats().encodingCap.refused, 1);
});
