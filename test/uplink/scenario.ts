// The issue-8 scenarios' shared rig: a real Engine with a 720p H.264 camera (priority 50, no
// backfill), a 50 Hz IMU (priority 100) and a 5 Hz GPS (priority 90), the real recording service
// on the sensor tracks, the real egress service (publishers, scheduler, backfill, delivery spans
// persisted in the index) publishing through one shared thin link (SharedLinkProxy) to a strict
// pang peer, and GET /api/gaps over real HTTP. Memory (engine budget, process RSS) is sampled.
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TestContext } from 'node:test';
import { captureClockUs, type TrackRef } from '../../runtime/engine/api.js';
import { Engine } from '../../runtime/engine/engine.js';
import { createEgressService, type EgressService } from '../../runtime/egress/service.js';
import { egressConfigSchema } from '../../runtime/egress/config.js';
import { silentLog } from '../../runtime/egress/pang-link.js';
import { Router } from '../../runtime/http/router.js';
import { registerUplinkRoutes } from '../../runtime/uplink/routes.js';
import { parseTsPrefixed } from '../../runtime/uplink/backfill-plan.js';
import type { GapReport, Span } from '../../runtime/uplink/spans.js';
import { createRecordingService, type RecordingService } from '../../recordings/service.js';
import { recordingsConfigSchema } from '../../recordings/config.js';
import { h264Fixture, readTag, tagAu } from '../egress/fake-source.js';
import { fastBackoff, tempDir, waitFor } from '../egress/helpers.js';
import { CHAN, thinLink, type ThinLink } from './thin-link.js';
import type { SharedLinkProxy } from './shared-link-proxy.js';

export const CAM: TrackRef = { channel: 'cam', source: 'base', track: 'video' };
export const IMU: TrackRef = { channel: 'cam', source: 'base', track: 'imu' };
export const GPS: TrackRef = { channel: 'cam', source: 'base', track: 'gps' };
/** Engine memory ceiling of the runtime under test. */
export const ENGINE_CEILING = 64 * 1024 * 1024;
/** RSS growth allowed over the run (peers, proxy and fixtures share the process). */
export const RSS_GROWTH_LIMIT = 200 * 1024 * 1024;

export interface Sensor {
  ref: TrackRef;
  walls: Map<number, number>;
  count(): number;
  start(): void;
  stop(): void;
}

export interface Rig {
  link: ThinLink<SharedLinkProxy>;
  engine: Engine;
  eg: EgressService;
  rec: RecordingService;
  base: string;
  /** The rig's HTTP router (GET /api/gaps registered; tests may add more). */
  router: Router;
  imu: Sensor;
  gps: Sensor;
  /** Camera bytes/s of the fixture (what full video demands). */
  videoRate: number;
  /** Video AUs sent so far (tag = index). */
  videoSent(): number;
  mem: { rss0: number; peakRss: number; peakEngine: number; samples: number };
  /** Received sensor seqs: live track and backfill track (with their prefix wallclock). */
  received(s: Sensor): { live: number[]; backfill: Array<{ seq: number; wallMs: number }> };
  videoTags(): number[];
  gaps(track: TrackRef, from: number, to: number): Promise<GapReport>;
  stopAll(): void;
}

function sensor(engine: Engine, ref: TrackRef, hz: number, pad: number): Sensor {
  const pub = engine.publisher(ref, { label: `sensor ${ref.track}` });
  pub.setMime('application/json');
  const walls = new Map<number, number>();
  let seq = 0;
  let timer: NodeJS.Timeout | null = null;
  return {
    ref,
    walls,
    count: () => seq,
    start: () => {
      timer = setInterval(() => {
        const wall = Date.now();
        walls.set(seq, wall);
        pub.write({ ts: captureClockUs(), wallclock: wall, key: true, data: Buffer.from(JSON.stringify({ seq, pad: 'x'.repeat(pad) })) });
        seq++;
      }, 1000 / hz);
    },
    stop: () => {
      if (timer) clearInterval(timer);
      timer = null;
    },
  };
}

export async function rig(t: TestContext, opts: { priority: boolean }): Promise<Rig> {
  const dir = await tempDir(t, 'uplink-scn-');
  const fx = await h264Fixture(dir, { seconds: 2, size: '1280x720', gop: 30, bitrate: '2M' });
  const videoRate = fx.aus.reduce((a, b) => a + b.data.length, 0) / (fx.aus.length / fx.fps);
  const link = await thinLink(t, 'shared');
  const engine = new Engine({
    memoryCeilingBytes: ENGINE_CEILING,
    consumerQueueBytes: 4 * 1024 * 1024,
    gopCacheBytes: 4 * 1024 * 1024,
    trackLingerMs: 5000,
    instantChannelTtlMs: 3600_000,
    maxInstantChannels: 4,
  });
  engine.addStaticChannel({ id: 'cam' });
  t.after(() => engine.close());
  const rec = createRecordingService({
    config: recordingsConfigSchema.parse({ root: `${dir}/rec`, tracks: ['cam/base/imu', 'cam/base/gps'], fsyncIntervalMs: 250, fragmentDurationMs: 250, discoverMs: 100, segmentDurationMs: 10_000 }),
    source: engine,
  });
  await rec.start();
  t.after(() => rec.close());
  const up = (track: string, from: string, priority: number, backfill?: boolean) => ({
    url: link.url,
    channel: CHAN,
    source: 'base',
    track,
    from,
    maxBufferedBytes: 256 * 1024,
    ...(opts.priority ? { priority } : {}),
    ...(backfill === undefined ? {} : { backfill }),
  });
  const config = egressConfigSchema.parse({
    upstream: [up('video', 'cam/base/video', 50, false), up('imu', 'cam/base/imu', 100), up('gps', 'cam/base/gps', 90)],
    whep: { enabled: false },
    backoff: fastBackoff,
    backfill: { settleMs: 1000 },
  });
  const eg = createEgressService({ config, engine, log: silentLog, recordings: () => rec, deliveryIndex: () => rec.index });
  t.after(() => eg.close());
  const router = new Router();
  registerUplinkRoutes(router, { spans: eg.spans, backfilled: eg.backfilled, recorded: () => rec.reader() });
  const server: Server = createServer((req, res) => {
    void router.handle(req, res).then((hit) => {
      if (!hit) res.writeHead(404).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  // Camera: the fixture looped at its frame rate, each AU tagged with its index.
  const camPub = engine.publisher(CAM, { label: 'camera', requestKeyframe: () => true });
  camPub.setMime(fx.mime);
  let vi = 0;
  const t0 = performance.now();
  const period = 1000 / fx.fps;
  const camTimer = setInterval(() => {
    const due = Math.floor((performance.now() - t0) / period) + 1;
    while (vi < due) {
      const au = fx.aus[vi % fx.aus.length]!;
      camPub.write({ ts: captureClockUs(), wallclock: Date.now(), key: au.key, data: tagAu(au.data, vi) });
      vi++;
    }
  }, period / 2);
  const imu = sensor(engine, IMU, 50, 120);
  const gps = sensor(engine, GPS, 5, 60);
  // Records start once the recorder holds both tracks: a record never recorded cannot be backfilled.
  const recording = (ref: TrackRef): boolean => (engine.findTrack(ref)?.stats().consumers ?? []).some((c) => /record/i.test(c.label));
  await waitFor(() => recording(IMU) && recording(GPS), 10_000, 'the recorder subscribed to the sensor tracks');
  imu.start();
  gps.start();
  const mem = { rss0: process.memoryUsage().rss, peakRss: 0, peakEngine: 0, samples: 0 };
  const memTimer = setInterval(() => {
    mem.peakRss = Math.max(mem.peakRss, process.memoryUsage().rss);
    mem.peakEngine = Math.max(mem.peakEngine, engine.stats().memory.usedBytes);
    mem.samples++;
  }, 250);
  const stopAll = (): void => {
    clearInterval(camTimer);
    clearInterval(memTimer);
    imu.stop();
    gps.stop();
  };
  t.after(stopAll);
  return {
    link,
    engine,
    eg,
    rec,
    base,
    router,
    imu,
    gps,
    videoRate,
    videoSent: () => vi,
    mem,
    received: (s) => ({
      live: link.received(s.ref.track).map((m) => (JSON.parse(m.toString()) as { seq: number }).seq),
      backfill: link.received(`${s.ref.track}.backfill`).map((m) => {
        const p = parseTsPrefixed(m);
        return { seq: (JSON.parse(p.payload.toString()) as { seq: number }).seq, wallMs: p.wallMs };
      }),
    }),
    videoTags: () => link.received('video').map((m) => readTag(m) ?? -1),
    gaps: async (track, from, to) => {
      eg.delivery.flush();
      rec.index.flush();
      const r = await fetch(`${base}/api/gaps?track=${track.channel}/${track.source}/${track.track}&from=${Math.floor(from)}&to=${Math.ceil(to)}`);
      assert.equal(r.status, 200);
      return (await r.json()) as GapReport;
    },
    stopAll,
  };
}

/** Wait until every record 0..last of the sensor reached the peer (live or backfill). */
export async function allArrive(r: Rig, s: Sensor, last: number, ms: number): Promise<void> {
  const missing = (): number[] => {
    const got = r.received(s);
    const all = new Set([...got.live, ...got.backfill.map((b) => b.seq)]);
    const out: number[] = [];
    for (let i = 0; i <= last; i++) if (!all.has(i)) out.push(i);
    return out;
  };
  await waitFor(() => missing().length === 0, ms, () => {
    const m = missing();
    return `${s.ref.track}: every record 0..${last} upstream; ${m.length} missing (first ${m.slice(0, 5).join(',')}); backfill ${JSON.stringify(r.eg.stats().uplink.backfill?.tracks.find((x) => x.track.endsWith(s.ref.track))?.link ?? null)}`;
  });
}

/**
 * The sensor's delivery, checked against what the peer got: each record arrived with its capture
 * wallclock (backfill prefix), duplicates only from session deaths (bounded), and the gap report
 * over [from, to] matches: no record inside a "missing" span, every record inside a live span
 * really arrived, every received record inside a reported live or backfilled span.
 */
export function checkDelivery(r: Rig, s: Sensor, rep: GapReport, maxDuplicates: number): { duplicates: number; backfilled: number } {
  const got = r.received(s);
  for (const b of got.backfill) assert.equal(b.wallMs, s.walls.get(b.seq), `${s.ref.track} ${b.seq}: backfilled with its capture wallclock`);
  const counts = new Map<number, number>();
  for (const q of [...got.live, ...got.backfill.map((b) => b.seq)]) counts.set(q, (counts.get(q) ?? 0) + 1);
  const duplicates = [...counts.values()].reduce((a, n) => a + (n - 1), 0);
  assert.ok(duplicates <= maxDuplicates, `${s.ref.track}: ${duplicates} duplicates (bound ${maxDuplicates}: confirm window × session deaths)`);
  const received = new Set(counts.keys());
  const inAny = (spans: Span[], w: number): boolean => spans.some((x) => w >= x.from && w <= x.to);
  for (const [seq, w] of s.walls) {
    if (w < rep.from || w > rep.to) continue;
    assert.ok(!rep.missing!.some((x) => w > x.from && w < x.to), `${s.ref.track} ${seq} @${w}: reported missing but the peer got it`);
    if (inAny(rep.live, w)) assert.ok(received.has(seq), `${s.ref.track} ${seq} @${w}: inside a live span but never received`);
    if (received.has(seq)) assert.ok(inAny(rep.live, w) || inAny(rep.backfilled, w), `${s.ref.track} ${seq} @${w}: received but in no live/backfilled span`);
  }
  return { duplicates, backfilled: got.backfill.length };
}

/**
 * Records captured after `wallFrom` that did not arrive exactly once (seq and count). After a cut
 * no link carried them live until a new session, so no session death can leave them in doubt.
 */
export function notExactlyOnceAfter(r: Rig, s: Sensor, wallFrom: number): Array<[number, number]> {
  const got = r.received(s);
  const counts = new Map<number, number>();
  for (const q of [...got.live, ...got.backfill.map((b) => b.seq)]) counts.set(q, (counts.get(q) ?? 0) + 1);
  const out: Array<[number, number]> = [];
  for (const [seq, w] of s.walls) if (w > wallFrom && counts.get(seq) !== 1) out.push([seq, counts.get(seq) ?? 0]);
  return out;
}

/**
 * Records whose delivery was in doubt when a session died (drained from the socket but not yet
 * confirmed: counted by the live publisher and the backfill link), plus the latest record a
 * reconnecting live session gets from the engine's cache: the only possible duplicates.
 */
export function inDoubt(r: Rig, s: Sensor): number {
  return inDoubtOf(r.eg, s.ref);
}

/** inDoubt for any egress service (e.g. the App's own, `app.egress`) and local track. */
export function inDoubtOf(eg: Pick<EgressService, 'stats' | 'upstream'>, ref: TrackRef): number {
  const st = eg.stats().uplink;
  const pub = eg.upstream.find((u) => u.stats().track === `${ref.channel}/${ref.source}/${ref.track}`)!.stats();
  const bf = st.backfill?.tracks.find((x) => x.track === `${ref.channel}/${ref.source}/${ref.track}`);
  // Sessions that opened and then ended (a connect that never opened subscribed to nothing).
  const f = pub.failures;
  const sessionsEnded = (f.UPSTREAM_DROPPED ?? 0) + (f.UPSTREAM_REFUSED ?? 0) + (f.UPSTREAM_CLOSED ?? 0) + (f.UPSTREAM_STALLED ?? 0);
  return pub.spans.inDoubt + sessionsEnded + (bf ? bf.link.inDoubt : 0);
}

export function checkMemory(r: Rig): void {
  assert.ok(r.mem.samples > 0);
  // The engine's own peak (every buffered frame, counted once) beats any sampling.
  r.mem.peakEngine = Math.max(r.mem.peakEngine, r.engine.stats().memory.peakBytes);
  assert.ok(r.mem.peakEngine <= ENGINE_CEILING, `engine memory ${r.mem.peakEngine} within its ceiling`);
  assert.ok(r.mem.peakRss - r.mem.rss0 < RSS_GROWTH_LIMIT, `RSS grew ${Math.round((r.mem.peakRss - r.mem.rss0) / 1e6)} MB (limit ${RSS_GROWTH_LIMIT / 1e6} MB)`);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((res) => setTimeout(res, ms));
}
