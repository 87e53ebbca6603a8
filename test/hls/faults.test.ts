// HLS under faults, in sequence, with the shipped defaults where they matter: the camera changes
// resolution (new init, discontinuity), the publisher goes away past the engine's linger and comes
// back (resubscribe, discontinuity, media sequence keeps going), the engine's memory runs short
// (oldest segments shed, counted, then the window grows back), too many tracks and too many blocked
// requests are refused with 503. After each fault: playback resumes by itself, every playlist is
// valid, and every frame in is muxed or counted.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Engine } from '../../runtime/engine/engine.js';
import { hlsConfigSchema } from '../../runtime/hls/config.js';
import { registerHlsRoutes } from '../../runtime/hls/http.js';
import { HlsService } from '../../runtime/hls/service.js';
import { HttpServer } from '../../runtime/http/server.js';
import { feedEngine } from '../egress/engine-fixture.js';
import { h264Fixture } from '../egress/fake-source.js';
import { tempDir } from '../egress/helpers.js';
import { waitFor } from '../support/app.js';
import { parsePlaylist, PlaylistHistory, validatePlaylist } from './validator.js';

const cam = { channel: 'cam', source: 'base', track: 'video' };
const other = { channel: 'cam', source: 'base', track: 'video2' };

test('faults in sequence: resolution change, publisher gone and back, memory pressure, limits — recovers each time, frames accounted', async (t) => {
  const dir = await tempDir(t, 'hls-faults-');
  const small = await h264Fixture(dir, { seconds: 2, size: '320x240', gop: 30 });
  const big = await h264Fixture(dir, { seconds: 2, size: '480x270', gop: 30 });
  const engine = new Engine({ memoryCeilingBytes: 64 * 1024 * 1024, consumerQueueBytes: 4 * 1024 * 1024, gopCacheBytes: 4 * 1024 * 1024, trackLingerMs: 300, instantChannelTtlMs: 3600_000, maxInstantChannels: 4 });
  engine.addStaticChannel({ id: 'cam' });
  t.after(() => engine.close());
  // shipped defaults, but one track at a time and two blocked requests, to reach the limits
  const config = hlsConfigSchema.parse({ maxTracks: 1, maxBlockedRequests: 2 });
  const hls = new HlsService({ config, source: engine, memory: engine.budget });
  t.after(() => hls.close());
  const http = new HttpServer({ host: '127.0.0.1', port: 0, maxConnections: 64 });
  registerHlsRoutes(http.router, { service: hls, resolveChannel: (x) => engine.findChannel(x)?.id ?? null });
  const { port } = await http.listen();
  t.after(() => http.close());
  const base = `http://127.0.0.1:${port}/hls/cam/base/video`;
  const hist = new PlaylistHistory();
  const get = async () => {
    const text = await (await fetch(`${base}/index.m3u8`)).text();
    // arrival-time capture on a loaded machine: the 85 % floor is checked in playlist.test.ts
    assert.deepEqual(validatePlaylist(text, { live: true, partFloor: false }), [], text);
    return hist.add(text);
  };
  const win = () => hls.stats().live[0]!.window;
  const accounted = () => {
    const w = win();
    assert.equal(w.framesIn, w.samples + w.framesBeforeKeyframe + w.outOfOrder + w.discarded + w.buffered, JSON.stringify(w));
  };

  let feeder = feedEngine(engine, cam, small, { loop: true });
  t.after(() => feeder.stop());
  let p = await get();
  const msnAt = (q: typeof p) => q.segments[q.segments.length - 1]!.msn;
  await waitFor(async () => msnAt((p = await get())) >= 2, 15_000, 'three segments');
  accounted();

  // 1. resolution change: a new init section and a discontinuity, the sequence goes on
  feeder.stop();
  feeder = feedEngine(engine, cam, big, { loop: true });
  await waitFor(async () => (p = await get()).segments.some((s) => s.discontinuity && s.map), 15_000, 'discontinuity with a new EXT-X-MAP');
  const maps = new Set(p.segments.map((s) => s.map).filter(Boolean));
  assert.ok(maps.size >= 1);
  const init = await fetch(`${base}/${[...maps].pop()}`);
  assert.equal(init.status, 200);
  accounted();
  assert.equal(win().discontinuities, 1);

  // 2. publisher gone past the linger: the session waits (blocking reload times out with 503), then
  //    the camera comes back and playback resumes on the same session with a discontinuity
  feeder.stop();
  await waitFor(() => hls.stats().live[0]!.state === 'source-gone', 5000, 'source gone');
  const last = msnAt(await get());
  const blocked = await fetch(`${base}/index.m3u8?_HLS_msn=${last + 1}&_HLS_part=0`);
  assert.equal(blocked.status, 503);
  assert.equal(blocked.headers.get('retry-after'), '1');
  const sid = hls.stats().live[0]!.sid;
  feeder = feedEngine(engine, cam, small, { loop: true });
  await waitFor(() => hls.stats().live[0]!.state === 'live' && hls.stats().live[0]!.resubscribes === 1, 10_000, 'resubscribed');
  await waitFor(async () => msnAt((p = await get())) > last + 1, 15_000, 'segments after the return');
  assert.equal(hls.stats().live[0]!.sid, sid, 'same session: clients keep their place');
  assert.equal(win().discontinuities, 2);
  accounted();

  // 3. memory pressure: the engine is nearly full → the window sheds its oldest segments (counted)
  //    and keeps serving; when the memory is back, the window fills again
  const reserve = engine.budget.ceiling - engine.budget.used - 64 * 1024;
  engine.budget.add(reserve);
  await waitFor(() => win().dropped.memory > 0, 15_000, 'memory drops counted');
  assert.ok(engine.budget.used <= engine.budget.ceiling + 1024 * 1024, 'near the ceiling, not far past it');
  p = await get();
  assert.ok(p.segments.length >= 1);
  engine.budget.remove(reserve);
  const held = win().heldSegments;
  await waitFor(() => win().heldSegments > held, 15_000, 'window grows back');
  accounted();

  // 4. limits: a second track over maxTracks → 503; a third blocked request over maxBlockedRequests → 503
  const pub2 = engine.publisher(other, { label: 'second' });
  pub2.setMime(small.mime);
  t.after(() => pub2.close());
  const second = await fetch(`http://127.0.0.1:${port}/hls/cam/base/video2/index.m3u8`);
  assert.equal(second.status, 503);
  assert.equal(((await second.json()) as { error: { code: string } }).error.code, 'HLS_BUSY');
  const far = msnAt(await get()) + 2;
  const waits = [fetch(`${base}/index.m3u8?_HLS_msn=${far}`), fetch(`${base}/index.m3u8?_HLS_msn=${far}`)];
  await waitFor(() => hls.stats().live[0]!.blocked === 2, 5000, 'two blocked');
  const third = await fetch(`${base}/index.m3u8?_HLS_msn=${far}`);
  assert.equal(third.status, 503);
  assert.equal(hls.stats().live[0]!.blockRefused, 1);
  for (const r of await Promise.all(waits)) assert.equal(r.status, 200);
  accounted();
  assert.deepEqual(hist.errors, []);

  // close gives every counted byte back to the engine
  const before = engine.budget.used;
  const heldBytes = win().heldBytes;
  hls.close();
  assert.ok(engine.budget.used <= before - heldBytes + 1, 'window bytes returned on close');
  assert.equal((await fetch(`${base}/index.m3u8`)).status, 503);
  assert.ok(parsePlaylist('#EXTM3U\n').errors.length === 0);
});
