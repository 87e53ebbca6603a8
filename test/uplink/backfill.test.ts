// Store-and-forward backfill through the real wiring: a 50 Hz sensor track recorded by the real
// recording service (record files + SQLite index), published by the egress service to a strict
// pang peer through a link proxy that is cut and restored. After recovery every record of the
// outage reaches the peer on imu.backfill (ts+ MIME, original capture wallclock in the prefix),
// every record arrives at least once (duplicates only within the confirm window, counted), and
// GET /api/gaps reports nothing missing and backfilled spans that match what the peer got.
// Also: a range request over a pulled control track (XCMD → XACK, the range re-sent), refusals
// answered XERR, and the pure pieces (ts+ wire, coverage, range parsing) fuzzed.
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test, type TestContext } from 'node:test';
import fc from 'fast-check';
import { captureClockUs } from '../../runtime/engine/api.js';
import { createEgressService } from '../../runtime/egress/service.js';
import { egressConfigSchema } from '../../runtime/egress/config.js';
import { silentLog } from '../../runtime/egress/pang-link.js';
import { Router } from '../../runtime/http/router.js';
import { registerUplinkRoutes } from '../../runtime/uplink/routes.js';
import type { GapReport } from '../../runtime/uplink/spans.js';
import { Coverage, parseRangeRequest, parseTsPrefixed, parseXcmd, TsPrefixError, tsMime, tsPrefixed, undelivered } from '../../runtime/uplink/backfill-plan.js';
import { createRecordingService } from '../../recordings/service.js';
import { recordingsConfigSchema } from '../../recordings/config.js';
import { FakeSource } from '../egress/fake-source.js';
import { fastBackoff, tempDir, waitFor } from '../egress/helpers.js';
import { CHAN, thinLink } from './thin-link.js';

const imu = { channel: 'cam', source: 'base', track: 'imu' };

async function serve(t: TestContext, router: Router): Promise<string> {
  const server: Server = createServer((req, res) => {
    void router.handle(req, res).then((hit) => {
      if (!hit) res.writeHead(404).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** A sensor publishing `{seq}` records at `hz`, wallclock kept per seq. */
function sensor(src: FakeSource, hz: number): { stop(): void; walls: Map<number, number>; count(): number } {
  src.setMime(imu, 'application/json');
  const walls = new Map<number, number>();
  let seq = 0;
  const timer = setInterval(() => {
    const wall = Date.now();
    walls.set(seq, wall);
    src.publish(imu, { ts: captureClockUs(), wallclock: wall, key: true, data: Buffer.from(JSON.stringify({ seq, pad: 'x'.repeat(100) })) });
    seq++;
  }, 1000 / hz);
  return { stop: () => clearInterval(timer), walls, count: () => seq };
}

test('cut for 5 s, restored: every outage record arrives via backfill with its capture wallclock; gap report matches', async (t) => {
  const dir = await tempDir(t, 'uplink-bf-');
  const link = await thinLink(t, 'shared');
  const src = new FakeSource();
  const rec = createRecordingService({
    config: recordingsConfigSchema.parse({ root: dir, tracks: ['cam/base/imu'], fsyncIntervalMs: 200, fragmentDurationMs: 200, discoverMs: 100, segmentDurationMs: 4000 }),
    source: src,
  });
  await rec.start();
  t.after(() => rec.close());
  const config = egressConfigSchema.parse({
    upstream: [{ url: link.url, channel: CHAN, source: 'base', track: 'imu', from: 'cam/base/imu' }],
    whep: { enabled: false },
    backoff: fastBackoff,
    backfill: { settleMs: 1000 },
  });
  const eg = createEgressService({ config, engine: src, log: silentLog, recordings: () => rec, deliveryIndex: () => rec.index });
  t.after(() => eg.close());
  const router = new Router();
  registerUplinkRoutes(router, { spans: eg.spans, backfilled: eg.backfilled, recorded: () => rec.reader() });
  const base = await serve(t, router);

  const s = sensor(src, 50);
  t.after(() => s.stop());
  await waitFor(() => link.received('imu').length >= 100, 15_000, 'live records before the cut');
  link.proxy.cut();
  const cutSeq = s.count();
  await new Promise((r) => setTimeout(r, 5000)); // the outage itself (a duration, not a wait-then-assert)
  link.proxy.restore();
  const restoreSeq = s.count();
  // Live again, then keep the sensor going so the outage is well behind the settle window.
  await waitFor(() => link.received('imu').some((m) => (JSON.parse(m.toString()) as { seq: number }).seq > restoreSeq + 50), 20_000, 'live again after the restore');
  const lastSeq = s.count() - 1;
  s.stop();
  const seqsOf = (): { live: number[]; backfill: Array<{ seq: number; wallMs: number }> } => ({
    live: link.received('imu').map((m) => (JSON.parse(m.toString()) as { seq: number }).seq),
    backfill: link.received('imu.backfill').map((m) => {
      const p = parseTsPrefixed(m);
      return { seq: (JSON.parse(p.payload.toString()) as { seq: number }).seq, wallMs: p.wallMs };
    }),
  });
  await waitFor(
    () => {
      const got = seqsOf();
      const all = new Set([...got.live, ...got.backfill.map((b) => b.seq)]);
      for (let i = 0; i <= lastSeq; i++) if (!all.has(i)) return false;
      return true;
    },
    40_000,
    () => {
      const got = seqsOf();
      const all = new Set([...got.live, ...got.backfill.map((b) => b.seq)]);
      const miss: number[] = [];
      for (let i = 0; i <= lastSeq; i++) if (!all.has(i)) miss.push(i);
      return `every record 0..${lastSeq} upstream; missing ${miss.length} (first ${miss.slice(0, 5).join(",")}); stats ${JSON.stringify(eg.stats().uplink.backfill?.tracks[0])} LIVE ${JSON.stringify(eg.stats().upstream[0])}`;
    },
  );
  const got = seqsOf();
  // Every outage record came by backfill, stamped with its original capture wallclock.
  const viaBackfill = new Map(got.backfill.map((b) => [b.seq, b.wallMs]));
  let outageBackfilled = 0;
  for (let i = cutSeq + 5; i < restoreSeq - 5; i++) {
    assert.ok(viaBackfill.has(i) || got.live.includes(i), `outage record ${i} delivered`);
    if (viaBackfill.has(i)) outageBackfilled++;
  }
  assert.ok(outageBackfilled >= (restoreSeq - cutSeq - 10) * 0.9, `outage records came by backfill (${outageBackfilled})`);
  for (const b of got.backfill) assert.equal(b.wallMs, s.walls.get(b.seq), `backfilled seq ${b.seq} carries its capture wallclock`);
  // The backfill track's MIME is the ts+ form of the original.
  const mimes = link.peer.messages(`${CHAN}/base/imu.backfill`).filter((m) => !m.binary).map((m) => m.data.toString());
  assert.ok(mimes.includes('application/ts+json'), `ts+ MIME sent (${mimes.slice(0, 2).join(',')})`);
  // At least once; duplicates only inside the confirm window of a dying session (counted here).
  const counts = new Map<number, number>();
  for (const q of [...got.live, ...got.backfill.map((b) => b.seq)]) counts.set(q, (counts.get(q) ?? 0) + 1);
  const dups = [...counts.values()].filter((n) => n > 1).length;
  const live = new Set(got.live);
  assert.equal(got.backfill.filter((b) => live.has(b.seq) && b.seq > restoreSeq + 100).length, 0, 'nothing delivered live later is backfilled');
  assert.ok(dups <= 50 * 2, `duplicates bounded by the confirm window (${dups})`); // 0.5 s × 50 Hz, two session ends
  t.diagnostic(`outage seqs ${cutSeq}..${restoreSeq}, backfilled ${got.backfill.length}, duplicates ${dups}`);

  // The gap report: nothing recorded is missing up to the end of what was delivered.
  const fromMs = s.walls.get(0)!;
  const toMs = s.walls.get(lastSeq - 60)!; // before the live tail's settle/confirm window
  await waitFor(() => (eg.stats().uplink.backfill?.tracks[0]?.link.inFlight ?? 1) === 0, 10_000, 'backfill confirmed');
  eg.delivery.flush();
  rec.index.flush();
  const rep = (await (await fetch(`${base}/api/gaps?track=cam/base/imu&from=${fromMs}&to=${toMs}`)).json()) as GapReport;
  assert.ok(rep.backfilledMs > 2000, `backfilled spans reported (${rep.backfilledMs} ms)`);
  // Every record the peer got via backfill lies inside a reported backfilled span, and the
  // missing spans (recorded − live − backfilled) hold no record at all.
  const inAny = (spans: Array<{ from: number; to: number }>, w: number): boolean => spans.some((x) => w >= x.from && w <= x.to);
  for (const b of got.backfill) if (b.wallMs >= fromMs && b.wallMs <= toMs) assert.ok(inAny(rep.backfilled, b.wallMs) || inAny(rep.live, b.wallMs), `backfilled ${b.seq} in the report`);
  for (const [seq, w] of s.walls) {
    if (w < fromMs || w > toMs) continue;
    const inside = rep.missing!.some((x) => w > x.from && w < x.to);
    assert.ok(!inside, `record ${seq} (${w}) delivered but reported missing`);
  }
  const st = eg.stats().uplink.backfill!;
  assert.ok(st.tracks[0]!.link.confirmed >= outageBackfilled);
});

test('range request over a pulled control track: XCMD queues it, XACK with the id, the range is re-sent; bad ones XERR', async (t) => {
  const dir = await tempDir(t, 'uplink-range-');
  const link = await thinLink(t, 'shared');
  const src = new FakeSource();
  const rec = createRecordingService({
    config: recordingsConfigSchema.parse({ root: dir, tracks: ['cam/base/imu'], fsyncIntervalMs: 200, fragmentDurationMs: 200, discoverMs: 100 }),
    source: src,
  });
  await rec.start();
  t.after(() => rec.close());
  const config = egressConfigSchema.parse({
    upstream: [{ url: link.url, channel: CHAN, source: 'base', track: 'imu', from: 'cam/base/imu' }],
    pull: [{ url: link.url, channel: CHAN, source: 'base', track: 'ctl', to: 'cam/base/ctl', commands: true }],
    whep: { enabled: false },
    backoff: fastBackoff,
    backfill: { settleMs: 1000 },
  });
  const eg = createEgressService({ config, engine: src, log: silentLog, recordings: () => rec, deliveryIndex: () => rec.index });
  t.after(() => eg.close());
  const s = sensor(src, 50);
  t.after(() => s.stop());
  await waitFor(() => link.received('imu').length >= 150, 15_000, 'live records');
  s.stop();
  const from = s.walls.get(20)!;
  const to = s.walls.get(70)!;
  await waitFor(() => (eg.pull[0]?.stats().state ?? '') === 'connected' || eg.pull[0]!.stats().connectedSince !== null, 10_000, 'control pull connected');
  // The upstream commander: a pang publisher on the control track (a raw ws, as any tool would).
  const { WebSocket } = await import('ws');
  const cmd = new WebSocket(`${link.url}/pang/ws/pub?channel=${CHAN}&source=base&track=ctl`);
  t.after(() => cmd.terminate());
  await new Promise<void>((r, j) => cmd.once('open', () => r()).once('error', j));
  await waitFor(() => eg.pull[0]!.stats().state === 'connected', 10_000, 'control pull connected');
  cmd.send('text/plain');
  cmd.send(`REXTXCMD${JSON.stringify({ op: 'range', id: 'r1', track: 'cam/base/imu', from, to })}`);
  cmd.send(`REXTXCMD${JSON.stringify({ op: 'range', id: 'r2', track: 'cam/base/nope', from, to })}`);
  await waitFor(() => (eg.backfill?.stats().rangeRequests.received ?? 0) >= 2, 10_000, 'commands handled');
  const bf = (): number[] => link.received('imu.backfill').map((m) => (JSON.parse(parseTsPrefixed(m).payload.toString()) as { seq: number }).seq);
  await waitFor(() => bf().filter((q) => q >= 20 && q <= 70).length >= 51, 20_000, () => `range re-sent (${bf().length})`);
  assert.deepEqual([...new Set(bf().filter((q) => q >= 20 && q <= 70))].sort((a, b) => a - b), Array.from({ length: 51 }, (_, i) => 20 + i));
  const rs = eg.backfill!.stats().rangeRequests;
  assert.equal(rs.accepted, 1);
  assert.equal(rs.refused, 1);
  await waitFor(() => eg.backfill!.stats().rangeRequests.completed === 1, 10_000, 'range completed');
  // The replies themselves (what the puller sends back on its session).
  assert.match(eg.backfill!.handleXcmd(`REXTXCMD${JSON.stringify({ id: 'r3', track: 'cam/base/imu', from, to })}`)!, /^REXTXACK\{"id":"r3"/);
  assert.match(eg.backfill!.handleXcmd('REXTXCMD{not json')!, /^REXTXERR/);
  assert.match(eg.backfill!.handleXcmd(`REXTXCMD${JSON.stringify({ id: 'r4', track: 'cam/base/imu', from: to, to: from })}`)!, /^REXTXERR\{"id":"r4"/);
  assert.equal(eg.backfill!.handleXcmd('REXTMIMEtext/plain'), null);
  assert.match(eg.backfill!.handleXcmd(`REXTXCMD${JSON.stringify({ id: 'r5', track: 'cam/base/imu', from: 1000, to: 2000 })}`)!, /^REXTXERR\{"id":"r5","error":"nothing recorded/);
  assert.deepEqual(eg.backfill!.handleCtl({ track: 'cam/base/imu', from: String(from), to: new Date(to).toISOString() }, 'c1').track, 'cam/base/imu');
  assert.throws(() => eg.backfill!.handleCtl({ track: 'cam/base/imu', from, to }, 'c1'), /duplicate/);
  assert.equal(eg.pull[0]!.stats().commands, 2);
});

test('pure: ts+ wire round-trips, short messages are a typed error, coverage and range parsing never throw', () => {
  assert.equal(tsMime('application/json'), 'application/ts+json');
  assert.equal(tsMime('text/plain;charset=utf-8'), 'text/ts+plain;charset=utf-8');
  assert.equal(tsMime('application/ts+json'), 'application/ts+json');
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 4e15 }), fc.uint8Array({ maxLength: 64 }), (us, payload) => {
      const p = parseTsPrefixed(tsPrefixed(us / 1000, payload));
      assert.equal(p.wallUs, BigInt(us));
      assert.deepEqual([...p.payload], [...payload]);
    }),
  );
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 32 }), (b) => {
      try {
        parseTsPrefixed(b);
      } catch (err) {
        assert.ok(err instanceof TsPrefixError);
      }
    }),
  );
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 1000 }), fc.integer({ min: 0, max: 50 }))), fc.array(fc.integer({ min: 0, max: 1100 })), (sp, pts) => {
      const spans = sp.map(([a, l]) => ({ from: a, to: a + l }));
      const cov = new Coverage(spans);
      for (const p of pts) assert.equal(cov.covers(p), spans.some((x) => p >= x.from && p <= x.to));
      const owed = undelivered(pts.map((w) => ({ wallclock: w })), cov, 0, 2000);
      assert.ok(owed.every((r) => !cov.covers(r.wallclock)));
    }),
  );
  fc.assert(
    fc.property(fc.anything(), (x) => {
      const r = parseRangeRequest(x);
      assert.equal(typeof r.ok, 'boolean');
    }),
  );
  fc.assert(
    fc.property(fc.string({ maxLength: 200 }), (x) => {
      const r = parseXcmd(`REXTXCMD${x}`);
      assert.ok(r !== null && typeof r.ok === 'boolean');
    }),
  );
  assert.equal(parseRangeRequest({ id: 'a', track: 'a/b/c', from: 0, to: 25 * 3600_000 }).ok, false);
  assert.equal(parseRangeRequest({ id: 'a b', track: 'a/b/c', from: 0, to: 1 }).ok, false);
});
