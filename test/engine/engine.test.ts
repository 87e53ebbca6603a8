import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { Backoff, EncodingCaps, type EncodingCap, type Frame, type QueueItem } from '../../runtime/engine/api.js';
import { Engine } from '../../runtime/engine/engine.js';
import { ITEM_OVERHEAD } from '../../runtime/engine/consumer.js';

const CH = 'm0thedge000000000000';
const VIDEO = { channel: CH, source: 'base', track: 'video' };
const DATA = { channel: CH, source: 'base', track: 'imu' };

function engine(over: Partial<ConstructorParameters<typeof Engine>[0]> = {}): Engine {
  const e = new Engine({
    memoryCeilingBytes: 64 * 1024 * 1024,
    consumerQueueBytes: 1024 * 1024,
    gopCacheBytes: 1024 * 1024,
    trackLingerMs: 50,
    instantChannelTtlMs: 3_600_000,
    maxInstantChannels: 4,
    ...over,
  });
  e.addStaticChannel({ id: CH, name: 'robot' });
  return e;
}

let seq = 0;
function frame(size: number, key: boolean): Frame {
  const data = Buffer.alloc(size, seq & 0xff);
  data.writeUInt32BE(seq++, 0);
  return { ts: seq, wallclock: Date.now(), key, data };
}
const idOf = (i: QueueItem | undefined) => (i && i.type === 'frame' ? i.frame.data.readUInt32BE(0) : -1);
function drain(c: { next(): QueueItem | undefined }): QueueItem[] {
  const out: QueueItem[] = [];
  for (let i = c.next(); i; i = c.next()) out.push(i);
  return out;
}

test('a new video consumer starts at the latest keyframe (GOP cache)', (t) => {
  const e = engine();
  t.after(() => e.close());
  const pub = e.publisher(VIDEO, { label: 'test' });
  pub.setMime('video/h264');
  const f = [frame(100, true), frame(100, false), frame(100, true), frame(100, false), frame(100, false)];
  for (const x of f) pub.write(x);
  const c = e.subscribe(VIDEO, { label: 'late' });
  const got = drain(c).map(idOf);
  assert.deepEqual(got, [f[2]!, f[3]!, f[4]!].map((x) => x.data.readUInt32BE(0)));
});

test('a slow video consumer loses a whole GOP tail and rejoins at the next keyframe; others lose nothing', (t) => {
  const e = engine({ consumerQueueBytes: 5 * (1000 + ITEM_OVERHEAD) });
  t.after(() => e.close());
  const pub = e.publisher(VIDEO, { label: 'test' });
  pub.setMime('video/h264');
  const slow = e.subscribe(VIDEO, { label: 'slow' });
  const fast = e.subscribe(VIDEO, { label: 'fast' });
  const sent: number[] = [];
  const fastGot: number[] = [];
  // GOPs of 4 frames, 3 GOPs; the fast consumer drains as it goes, the slow one never reads.
  for (let g = 0; g < 3; g++) {
    for (let i = 0; i < 4; i++) {
      const f = frame(1000, i === 0);
      sent.push(f.data.readUInt32BE(0));
      pub.write(f);
      fastGot.push(...drain(fast).map(idOf));
    }
  }
  assert.deepEqual(fastGot, sent, 'fast consumer got every frame in order');
  const st = slow.stats();
  assert.ok(st.queuedBytes <= st.ceilingBytes, 'slow queue under its ceiling');
  assert.ok(st.peakBytes <= st.ceilingBytes);
  const got = drain(slow).map(idOf);
  // GOP 1 (4 frames) fits; GOP 2's key arrives with 4 queued + 1 = 5 → fits; next frame does not
  // → GOP 2's tail dropped; GOP 3's key: queue full → stale frames dropped, jump to live.
  assert.equal(got[0], sent[8], 'after the stale drop the queue starts at the newest keyframe');
  assert.deepEqual(got, sent.slice(8));
  assert.ok(st.dropped['gop-tail'] + st.dropped['queue-full'] > 0);
  assert.ok(st.dropped['stale-gop'] > 0);
  assert.ok(e.stats().totals.dropped > 0, 'drops visible in engine stats');
});

test('a data consumer drops its oldest records, never the newest', (t) => {
  const e = engine({ consumerQueueBytes: 3 * (100 + ITEM_OVERHEAD) });
  t.after(() => e.close());
  const pub = e.publisher(DATA, { label: 'imu' });
  pub.setMime('application/json');
  const c = e.subscribe(DATA, { label: 'slow', fromCache: false });
  const ids: number[] = [];
  for (let i = 0; i < 10; i++) {
    const f = frame(100, true);
    ids.push(f.data.readUInt32BE(0));
    pub.write(f);
  }
  assert.deepEqual(drain(c).map(idOf), ids.slice(-3));
  assert.equal(c.stats().dropped['queue-full'], 7);
});

test('memory ceiling: the biggest backlog is shed, the publisher never blocks, budget returns to zero', (t) => {
  const ceiling = 20 * (1000 + ITEM_OVERHEAD);
  const e = engine({ memoryCeilingBytes: ceiling, consumerQueueBytes: 1024 * 1024, gopCacheBytes: 4 * 1024 });
  const pub = e.publisher(VIDEO, { label: 'cam' });
  pub.setMime('video/h264');
  const stuck = e.subscribe(VIDEO, { label: 'stuck' });
  const live = e.subscribe(VIDEO, { label: 'live' });
  let liveCount = 0;
  for (let i = 0; i < 200; i++) {
    pub.write(frame(1000, i % 10 === 0));
    liveCount += drain(live).length;
    assert.ok(e.budget.used <= ceiling + 1000 + ITEM_OVERHEAD, `budget ${e.budget.used} over ceiling at frame ${i}`);
  }
  assert.equal(liveCount, 200, 'the consumer that keeps up loses nothing');
  assert.ok(stuck.stats().dropped.memory > 0, 'the stuck consumer paid');
  assert.ok(e.budget.shedEvents > 0);
  stuck.close();
  live.close();
  pub.close();
  e.close();
  assert.equal(e.budget.used, 0, 'every frame released exactly once');
  t.diagnostic(`peak ${e.budget.peak} of ${ceiling}`);
});

test('mono track refuses a second publisher; multi accepts; linger closes consumers with "publisher gone"', async (t) => {
  const e = engine();
  t.after(() => e.close());
  const p1 = e.publisher(VIDEO, { label: 'one' });
  assert.throws(() => e.publisher(VIDEO, { label: 'two' }), (err: { code?: string }) => err.code === 'TRACK_BUSY');
  const m1 = e.publisher({ ...VIDEO, track: 'multi' }, { label: 'a' }, 'multi');
  const m2 = e.publisher({ ...VIDEO, track: 'multi' }, { label: 'b' }, 'multi');
  m1.close();
  m2.close();
  const c = e.subscribe(VIDEO, { label: 'viewer' });
  const reason = new Promise<string>((r) => c.onClose(r));
  p1.close();
  assert.equal(await reason, 'publisher gone');
  // The track is free again.
  e.publisher(VIDEO, { label: 'three' }).close();
});

test('instant channels: found by name, first key sticks, limited in number, expire when idle after TTL', (t) => {
  const e = engine({ instantChannelTtlMs: 1000 });
  t.after(() => e.close());
  const a = e.instantChannel('alpha', 'k1');
  assert.equal(e.instantChannel('alpha', 'other'), a);
  assert.equal(a.key, 'k1');
  assert.match(a.id, /^[0-9a-v]{20}$/);
  for (const n of ['b', 'c', 'd']) e.instantChannel(n, undefined);
  assert.throws(() => e.instantChannel('e', undefined), (err: { code?: string }) => err.code === 'TOO_MANY_CHANNELS');
  const pub = e.publisher({ channel: a.id, source: 'base', track: 'video' }, { label: 'x' });
  assert.equal(e.sweep(a.createdAt + 5000), 3, 'idle ones expire, the busy one stays');
  assert.ok(e.channel(a.id));
  pub.close();
  assert.equal(e.sweep(a.createdAt + 5000), 1);
  assert.equal(e.channel(a.id), undefined);
});

test('property: any publish/read interleaving keeps queues under ceiling, order intact, budget exact', () => {
  fc.assert(
    fc.property(
      fc.array(fc.record({ size: fc.integer({ min: 4, max: 5000 }), key: fc.boolean(), read: fc.nat(3) }), { maxLength: 200 }),
      fc.constantFrom('video/h264', 'application/json'),
      (ops, mime) => {
        const e = engine({ consumerQueueBytes: 8000, memoryCeilingBytes: 30_000, gopCacheBytes: 6000 });
        const ref = mime === 'video/h264' ? VIDEO : DATA;
        const pub = e.publisher(ref, { label: 'p' });
        pub.setMime(mime);
        const c = e.subscribe(ref, { label: 'c' });
        let last = -1;
        for (const op of ops) {
          pub.write(frame(op.size, op.key));
          for (let i = 0; i < op.read; i++) {
            const it = c.next();
            if (!it) break;
            const id = idOf(it);
            assert.ok(id > last, 'frames come out in publish order');
            last = id;
          }
          const st = c.stats();
          assert.ok(st.queuedBytes <= st.ceilingBytes);
        }
        c.close();
        pub.close();
        e.close();
        assert.equal(e.budget.used, 0);
      },
    ),
    { numRuns: 200 },
  );
});

test('backoff: capped, jittered, exponential, reset after healthy running', () => {
  const b = new Backoff({ initialMs: 1000, maxMs: 60_000, jitter: 0, resetAfterMs: 10_000 });
  const seqd = [0, 1, 2, 3, 4, 5, 6, 7].map(() => b.next(0));
  assert.deepEqual(seqd, [1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000]);
  b.healthy(100);
  assert.equal(b.next(5000), 60000, 'not healthy long enough');
  b.healthy(10_000);
  assert.equal(b.next(20_001), 1000, 'reset after 10 s healthy');
  const j = new Backoff({ initialMs: 1000, maxMs: 8000, jitter: 0.5, random: () => 0.999 });
  const d = j.next(0);
  assert.ok(d >= 500 && d <= 1000);
  assert.throws(() => new Backoff({ initialMs: 0, maxMs: 10 }), RangeError);
});

test('encoding caps: the lowest cap of all callers wins, lifting one restores the next, never raises', () => {
  const caps = new EncodingCaps();
  assert.equal(caps.set('thermal', { fps: 15 }), true);
  assert.equal(caps.set('uplink', { bitrateBps: 500_000, fps: 20 }), true);
  assert.deepEqual(caps.effective(), { fps: 15, bitrateBps: 500_000 });
  assert.deepEqual(caps.apply(2_000_000, 30), { bitrateBps: 500_000, fps: 15 });
  assert.deepEqual(caps.apply(300_000, 10), { bitrateBps: 300_000, fps: 10 }, 'a cap never raises a value');
  assert.equal(caps.set('uplink', { bitrateBps: 500_000, fps: 20 }), false, 'the same cap again changes nothing');
  assert.equal(caps.set('thermal', null), true);
  assert.deepEqual(caps.effective(), { bitrateBps: 500_000, fps: 20 });
  caps.set('uplink', {});
  assert.deepEqual(caps.effective(), {});
  fc.assert(
    fc.property(
      fc.array(fc.record({ by: fc.constantFrom('a', 'b', 'c'), cap: fc.option(fc.record({ fps: fc.option(fc.integer({ min: 1, max: 60 }), { nil: undefined }) }), { nil: null }) })),
      (ops) => {
        const c = new EncodingCaps();
        const last = new Map<string, EncodingCap | null>();
        for (const o of ops) {
          c.set(o.by, o.cap);
          last.set(o.by, o.cap);
        }
        const fpss = [...last.values()].map((v) => v?.fps).filter((v): v is number => v !== undefined);
        assert.equal(c.effective().fps, fpss.length ? Math.min(...fpss) : undefined);
      },
    ),
  );
});

test('an encoding cap reaches the publishing driver; a track whose publisher cannot is counted unserved', () => {
  const e = engine();
  const got: Array<[string, EncodingCap | null]> = [];
  e.publisher(VIDEO, { label: 'cam', setEncodingCap: (by, cap) => (got.push([by, cap]), true) });
  e.publisher(DATA, { label: 'imu' });
  assert.equal(e.requestEncodingCap(VIDEO, 'uplink', { bitrateBps: 1e6 }), true);
  assert.equal(e.requestEncodingCap(DATA, 'uplink', { fps: 5 }), false);
  assert.equal(e.requestEncodingCap({ ...VIDEO, track: 'nope' }, 'uplink', null), false);
  assert.deepEqual(got, [['uplink', { bitrateBps: 1e6 }]]);
  const s = e.stats();
  const tracks = s.channels.flatMap((c) => c.tracks);
  assert.equal(tracks.find((t) => t.track === 'imu')?.encodingCapRequestsUnserved, 1);
  assert.equal(tracks.find((t) => t.track === 'video')?.encodingCapRequests, 1);
});
