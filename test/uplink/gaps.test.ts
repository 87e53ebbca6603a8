// Gap report against a real socket path: pang publisher → throttling TCP proxy (10 % of the track
// rate, GOP tails dropped) → strict pang peer; GET /api/gaps over real HTTP must match what the
// peer actually received: every received frame inside a live span, the live spans hold exactly the
// received frames, and no frame captured inside a not-live span arrived.
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { Router } from '../../runtime/http/router.js';
import { PangPublisher } from '../../runtime/egress/pang-publisher.js';
import { silentLog } from '../../runtime/egress/pang-link.js';
import { registerUplinkRoutes, type RecordedIndex } from '../../runtime/uplink/routes.js';
import { SpanLog, type GapReport } from '../../runtime/uplink/spans.js';
import { FakeSource, h264Fixture, playFixture, readTag } from '../egress/fake-source.js';
import { fastBackoff, tempDir, waitFor } from '../egress/helpers.js';
import { CHAN, thinLink } from './thin-link.js';

const cam = { channel: 'cam', source: 'base', track: 'video' };

async function serve(t: { after(fn: () => unknown): void }, router: Router): Promise<string> {
  const server: Server = createServer((req, res) => {
    void router.handle(req, res).then((hit) => {
      if (!hit) res.writeHead(404).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

test('GET /api/gaps matches what a throttled strict pang peer received', async (t) => {
  const dir = await tempDir(t, 'uplink-gaps-');
  const fx = await h264Fixture(dir, { seconds: 2, size: '1280x720', gop: 30, bitrate: '4M' });
  const trackRate = fx.aus.reduce((a, b) => a + b.data.length, 0) / (fx.aus.length / fx.fps);
  const { peer, proxy } = await thinLink(t, 'per-read');
  const joinGapMs = 200;
  const spans = new SpanLog({ joinGapMs });
  const src = new FakeSource();
  const pub = new PangPublisher({
    name: 'gaps',
    endpoint: { url: `ws://127.0.0.1:${proxy.port}`, channel: CHAN, source: 'base', track: 'video' },
    from: cam,
    maxBufferedBytes: 128 * 1024,
    source: src,
    log: silentLog,
    backoff: fastBackoff,
    spans,
  });
  t.after(() => pub.close());
  pub.start();
  const wallBySeq: number[] = [];
  const player = playFixture(src, cam, fx, { loop: true, tag: true, onFrame: (f, i) => (wallBySeq[i] = f.wallclock) });
  t.after(() => player.stop());
  const received = (): number[] => peer.messages(`${CHAN}/base/video`).filter((m) => m.binary && m.data.length > 0).map((m) => readTag(m.data)!);

  await waitFor(() => received().length >= 30, 10_000, 'live before the throttle');
  proxy.setRate(Math.round(trackRate * 0.1));
  await waitFor(() => pub.stats().dropped.gopTail >= 60, 40_000, 'GOP tails dropped on the thin link');
  const liftSeq = player.sent();
  proxy.setRate(null);
  await waitFor(() => received().some((s) => s >= liftSeq + 30), 20_000, 'live again after the lift');
  player.stop();
  // Everything the publisher sent has reached the peer and left the socket (nothing in flight).
  await waitFor(() => received().length === pub.stats().framesOut && pub.stats().spans.unacked === 0, 20_000, () => `peer has all sent frames (${received().length}/${pub.stats().framesOut}, unacked ${pub.stats().spans.unacked})`);
  await waitFor(() => pub.stats().spans.delivered === pub.stats().framesOut, 5000, 'every sent frame settled into the span log');

  const recordedRange = { from: wallBySeq[0]!, to: wallBySeq[wallBySeq.length - 1]! };
  const index: RecordedIndex = { list: () => [{ wall_start_ms: recordedRange.from, wall_end_ms: recordedRange.to }] };
  const router = new Router();
  registerUplinkRoutes(router, { spans, recorded: () => index });
  const base = await serve(t, router);
  const res = await fetch(`${base}/api/gaps?track=cam/base/video&from=${recordedRange.from}&to=${new Date(recordedRange.to).toISOString()}`);
  assert.equal(res.status, 200);
  const rep = (await res.json()) as GapReport & { known: boolean };
  assert.equal(rep.known, true);

  const got = new Set(received());
  const covered = (w: number): boolean => rep.live.some((s) => w >= s.from && w <= s.to);
  for (const s of got) assert.ok(covered(wallBySeq[s]!), `received frame ${s} lies in a live span`);
  assert.equal(rep.live.reduce((a, s) => a + s.frames, 0), got.size, 'live spans hold exactly the frames the peer received');
  const bigGaps = rep.notLive.filter((g) => g.to - g.from > joinGapMs);
  assert.ok(bigGaps.length >= 1, 'the throttle shows as gaps');
  for (let s = 0; s < wallBySeq.length; s++) {
    const w = wallBySeq[s]!;
    if (rep.notLive.some((g) => w > g.from && w < g.to)) assert.ok(!got.has(s), `frame ${s} inside a not-live span was not received`);
  }
  // One recorded segment over the whole range: missing = not live.
  assert.deepEqual(rep.missing, rep.notLive);
  assert.ok(Math.abs(rep.liveMs + rep.notLiveMs - (recordedRange.to - recordedRange.from)) < 1e-6);

  const bad = await fetch(`${base}/api/gaps?track=cam%2Fbase&from=1`);
  assert.equal(bad.status, 400);
  assert.equal(((await bad.json()) as { error: { code: string } }).error.code, 'BAD_TRACK');
  assert.equal((await fetch(`${base}/api/gaps?track=a/b/c&from=yesterday`)).status, 400);
  const list = (await (await fetch(`${base}/api/gaps`)).json()) as { tracks: string[] };
  assert.deepEqual(list.tracks, ['cam/base/video']);
  t.diagnostic(`${got.size} of ${wallBySeq.length} frames live; ${bigGaps.length} gaps > ${joinGapMs} ms totalling ${rep.notLiveMs} ms`);
});
