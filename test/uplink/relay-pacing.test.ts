// Issue 14: what a subscriber at a Moth relay sees. The strict peer in ring mode relays like Moth's
// engine (a small ring per track; a reader more than a couple of slots behind skips to the newest).
// A back-to-back burst reaches its subscribers as a handful of messages even though every byte
// reached the server — so the backfill and a new session's GOP replay are paced, with the shipped
// defaults, and a subscriber then gets every backfilled record and the first keyframe.
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import WebSocket from 'ws';
import { PangPublisher } from '../../runtime/egress/pang-publisher.js';
import { silentLog } from '../../runtime/egress/pang-link.js';
import { isIdr } from '../../runtime/egress/h264-rtp.js';
import { BackfillService } from '../../runtime/uplink/backfill.js';
import { parseTsPrefixed } from '../../runtime/uplink/backfill-plan.js';
import { SpanLog } from '../../runtime/uplink/spans.js';
import { encodeFileHeader, encodeRecord } from '../../recordings/record-file.js';
import type { SegmentRow } from '../../recordings/index-db.js';
import { StrictPangPeer } from '../sim/strict-pang-peer.js';
import { FakeSource, h264Fixture, playFixture, readTag } from '../egress/fake-source.js';
import { tempDir, waitFor } from '../egress/helpers.js';

const CHAN = '0123456789abcdefghij';
/** Moth's relay, as observed: a ring of about 20 slots, readers skip when more than 2 behind. */
const MOTH_RING = { slots: 20, behind: 2, serviceMs: 1 };

async function ringPeer(t: TestContext): Promise<StrictPangPeer> {
  const peer = new StrictPangPeer({ channels: { [CHAN]: undefined }, ring: MOTH_RING });
  await peer.listen();
  t.after(() => peer.close());
  return peer;
}

/** A subscriber at the relay: every binary message it receives, in order. */
async function subscriber(t: TestContext, peer: StrictPangPeer, track: string): Promise<{ got: Buffer[] }> {
  const ws = new WebSocket(`${peer.url}/pang/ws/sub?channel=${CHAN}&source=base&track=${track}&timeout=3600`);
  t.after(() => ws.terminate());
  const got: Buffer[] = [];
  ws.on('message', (d, binary) => {
    if (binary) got.push(d as Buffer);
  });
  await new Promise<void>((res, rej) => ws.once('open', () => res()).once('error', rej));
  await waitFor(() => (peer.readerStats(`${CHAN}/base/${track}`).length ?? 0) > 0, 5000, 'the relay registered the subscriber');
  return { got };
}

async function rawPublisher(t: TestContext, peer: StrictPangPeer, track: string): Promise<WebSocket> {
  const ws = new WebSocket(`${peer.url}/pang/ws/pub?channel=${CHAN}&source=base&track=${track}`);
  t.after(() => ws.terminate());
  await new Promise<void>((res, rej) => ws.once('open', () => res()).once('error', rej));
  ws.send('application/json', { binary: false });
  return ws;
}

test('the strict relay is as strict as Moth: a back-to-back burst reaches a subscriber as a handful, spaced messages all arrive', { timeout: 60_000 }, async (t) => {
  const peer = await ringPeer(t);
  const sub = await subscriber(t, peer, 'burst');
  const pub = await rawPublisher(t, peer, 'burst');
  for (let i = 0; i < 600; i++) pub.send(Buffer.from(JSON.stringify({ i })), { binary: true });
  await waitFor(() => peer.messages(`${CHAN}/base/burst`).filter((m) => m.binary).length === 600, 10_000, 'all 600 reached the relay');
  await new Promise((r) => setTimeout(r, 200)); // the reader has nothing left to do after this
  assert.ok(sub.got.length < 120, `a subscriber of a 600-message burst got ${sub.got.length} (Moth: ~10)`);

  const sub2 = await subscriber(t, peer, 'spaced');
  const pub2 = await rawPublisher(t, peer, 'spaced');
  for (let i = 0; i < 100; i++) {
    pub2.send(Buffer.from(JSON.stringify({ i })), { binary: true });
    await new Promise((r) => setTimeout(r, 20));
  }
  await waitFor(() => sub2.got.length === 100, 10_000, () => `100 spaced messages at the subscriber (${sub2.got.length})`);
});

/** A closed data segment of `n` JSON records {seq} at 50 Hz, an hour ago. */
function segment(root: string, n: number): { row: SegmentRow; walls: number[] } {
  const rel = 'cam/base/imu/seg.rec';
  mkdirSync(join(root, 'cam/base/imu'), { recursive: true });
  const wall0 = Date.now() - 3600_000;
  const walls: number[] = [];
  const parts: Buffer[] = [encodeFileHeader({ v: 1, channel: 'cam', source: 'base', track: 'imu', mime: 'application/json', startUs: 0, wallMs: wall0, offsetUs: 0, run: 'r' })];
  for (let i = 0; i < n; i++) {
    const wall = wall0 + i * 20;
    walls.push(wall);
    parts.push(encodeRecord(i * 20_000, wall, Buffer.from(JSON.stringify({ seq: i }))));
  }
  writeFileSync(join(root, rel), Buffer.concat(parts));
  return {
    row: { path: rel, channel: 'cam', source: 'base', track: 'imu', mime: 'application/json', kind: 'data', state: 'closed', wall_start_ms: wall0, wall_end_ms: walls[n - 1]!, present: 1 } as SegmentRow,
    walls,
  };
}

function backfill(t: TestContext, peer: StrictPangPeer, root: string, row: SegmentRow, over: { minIntervalMs?: number; maxInFlight?: number } = {}): BackfillService {
  const bf = new BackfillService({
    tracks: [{ upstream: 'up0:cam/base/imu', from: { channel: 'cam', source: 'base', track: 'imu' }, endpoint: { url: peer.url, channel: CHAN, source: 'base', track: 'imu.backfill' }, auto: true, live: null }],
    recordings: () => ({ root, reader: () => ({ list: () => [row], db: null as never }) }),
    liveSpans: new SpanLog(),
    backfilled: new SpanLog(),
    log: silentLog,
    backoff: { initialMs: 1000, maxMs: 60_000 },
    liveLinks: () => [],
    ...over,
  });
  bf.start();
  t.after(() => bf.close());
  return bf;
}

test('backfill with the shipped pacing: a subscriber at a Moth-like relay gets every backfilled record, in order', { timeout: 90_000 }, async (t) => {
  const root = await tempDir(t, 'pacing-');
  const peer = await ringPeer(t);
  const sub = await subscriber(t, peer, 'imu.backfill');
  const seg = segment(root, 300);
  const bf = backfill(t, peer, root, seg.row);
  await waitFor(() => sub.got.length >= 300, 60_000, () => `300 backfilled records at the subscriber (${sub.got.length}; relay got ${peer.messages(`${CHAN}/base/imu.backfill`).filter((m) => m.binary).length})`);
  const seqs = sub.got.map((m) => (JSON.parse(parseTsPrefixed(m).payload.toString()) as { seq: number }).seq);
  assert.deepEqual(seqs, seg.walls.map((_, i) => i), 'every record once, in order');
  assert.equal(peer.readerStats(`${CHAN}/base/imu.backfill`)[0]!.skipped, 0, 'the reader never fell behind');
  const link = bf.stats().tracks[0]!.link;
  assert.ok(link.paced > 0, 'the pacing held messages back');
  await waitFor(() => bf.stats().tracks[0]!.link.state === 'idle', 15_000, 'the backfill session closed once idle (no idle session at the server)');
  assert.ok(bf.stats().tracks[0]!.link.parked >= 1);
});

test('control: the same backfill unpaced and unwindowed loses most records at the subscriber though all reached the relay', { timeout: 60_000 }, async (t) => {
  const root = await tempDir(t, 'pacing-');
  const peer = await ringPeer(t);
  const sub = await subscriber(t, peer, 'imu.backfill');
  const seg = segment(root, 300);
  backfill(t, peer, root, seg.row, { minIntervalMs: 0, maxInFlight: 0 });
  await waitFor(() => peer.messages(`${CHAN}/base/imu.backfill`).filter((m) => m.binary).length >= 300, 30_000, 'all 300 reached the relay');
  await new Promise((r) => setTimeout(r, 300));
  assert.ok(sub.got.length < 200, `unpaced, the subscriber got ${sub.got.length} of 300 (the relay is strict)`);
});

test('a new session replays the cached GOP paced: a subscriber at the relay gets the first keyframe and every frame after it', { timeout: 60_000 }, async (t) => {
  const dir = await tempDir(t, 'pacing-');
  const fx = await h264Fixture(dir, { seconds: 2, size: '320x240', gop: 30, bitrate: '500k' });
  const peer = await ringPeer(t);
  const src = new FakeSource();
  const cam = { channel: 'cam', source: 'base', track: 'video' };
  // Fill the GOP cache with a keyframe and most of its GOP before any session exists.
  const player = playFixture(src, cam, fx, { loop: true, tag: true });
  t.after(() => player.stop());
  await waitFor(() => player.sent() >= 25, 10_000, 'a GOP in the cache');
  const sub = await subscriber(t, peer, 'video');
  const pub = new PangPublisher({
    name: 'replay',
    endpoint: { url: peer.url, channel: CHAN, source: 'base', track: 'video' },
    from: cam,
    maxBufferedBytes: 512 * 1024,
    source: src,
    log: silentLog,
    backoff: { initialMs: 1000, maxMs: 60_000 },
  });
  t.after(() => pub.close());
  pub.start();
  await waitFor(() => sub.got.length >= 40, 15_000, () => `frames at the subscriber (${sub.got.length})`);
  assert.ok(isIdr(sub.got[0]!), 'the first frame the subscriber sees is the replayed keyframe');
  const tags = sub.got.map((m) => readTag(m)!);
  for (let i = 1; i < tags.length; i++) assert.equal(tags[i], tags[i - 1]! + 1, `contiguous from the keyframe (${tags.slice(0, 40).join(',')})`);
  assert.ok(pub.stats().replayPaced > 1, 'the replay was paced');
});
