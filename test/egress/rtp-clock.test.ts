// WHIP-ingested frames carry the sender's timing: RtpClock (pure) maps RTP timestamps to the
// capture clock (first packet anchors, 90 kHz, 32-bit wrap, RTCP SR → wallclock, jumps re-anchor,
// backward steps held), and end to end a WHIP publisher's capture spacing survives the network.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { captureClockUs } from '../../runtime/engine/api.js';
import { registerEgressRoutes } from '../../runtime/egress/http.js';
import { silentLog } from '../../runtime/egress/pang-link.js';
import { RtpClock } from '../../runtime/egress/rtp-clock.js';
import { WhipIngest } from '../../runtime/egress/whip-ingest.js';
import { WhipPublisher } from '../../runtime/egress/whip-publisher.js';
import { HttpServer } from '../../runtime/http/server.js';
import { h264Fixture } from './fake-source.js';
import { testEngine } from './engine-fixture.js';
import { fastBackoff, tempDir, waitFor } from './helpers.js';

const NTP_UNIX = 2_208_988_800n;
const ntpOf = (unixMs: number): bigint => ((BigInt(Math.floor(unixMs / 1000)) + NTP_UNIX) << 32n) | BigInt(Math.round(((unixMs % 1000) / 1000) * 2 ** 32));

test('RtpClock: first packet anchors, 90 kHz spacing regardless of arrival jitter, wrap at 2^32, SR wallclock', () => {
  const c = new RtpClock();
  const base = 0xffff_ffff - 90_000; // wraps one second in
  const arrivals = [1_000_000, 1_050_000, 1_060_000, 1_200_000]; // bursty network
  const out = [0, 1, 2, 3].map((i) => c.map((base + i * 3000) >>> 0, arrivals[i]!, 5_000 + i));
  assert.deepEqual(out.map((o) => o.ts), [1_000_000, 1_033_333, 1_066_667, 1_100_000]);
  assert.equal(out[1]!.wallclock - out[0]!.wallclock, 33, 'wallclock follows media time too (no SR yet)');
  // Past the wrap: still 30 fps spacing.
  const after = c.map((base + 31 * 3000) >>> 0, 2_050_000, 0);
  assert.equal(after.ts, 1_000_000 + Math.round((31 * 3000 * 1e6) / 90_000));
  assert.equal(c.stats().wraps, 1);
  // A sender report: RTP time of frame 0 was 12:00:00.000 on the sender's wall clock.
  const noon = Date.UTC(2026, 10, 23, 12, 0, 0);
  c.senderReport(ntpOf(noon), base >>> 0, noon + 1500);
  const f = c.map((base + 32 * 3000) >>> 0, 2_090_000, 0);
  assert.equal(f.wallclock, noon + Math.round((32 * 3000) / 90));
  assert.equal(c.stats().senderReports, 1);
  // A sender whose clock is far off ours (an RTC at 1970, no NTP yet) is not trusted: frames keep
  // the arrival-anchored wallclock, and the rejection is counted.
  c.senderReport(ntpOf(Date.UTC(1970, 0, 2)), base >>> 0, noon);
  const g = c.map((base + 33 * 3000) >>> 0, 2_123_000, 0);
  assert.equal(g.wallclock, 5_000 + Math.round((33 * 3000) / 90), 'back on the arrival anchor (this test arrives at wallclock 5000)');
  assert.equal(c.stats().srRejected, 1);
});

test('RtpClock: a jump beyond the skew bound re-anchors; a step back is held; time never runs back', () => {
  const c = new RtpClock(90_000, 2_000_000);
  c.map(1000, 10_000_000, 0);
  c.map(4000, 10_033_000, 0);
  // Sender restarted its clock (random new base): re-anchor at arrival.
  const j = c.map(777_777_777, 10_070_000, 0);
  assert.equal(j.ts, 10_070_000);
  assert.equal(c.stats().reanchors, 1);
  const back = c.map(777_777_777 - 3000, 10_100_000, 0); // B-frame order
  assert.equal(back.ts, 10_070_000);
  assert.equal(c.stats().clamped, 1);
  assert.equal(c.map(777_777_777 + 3000, 10_110_000, 0).ts, 10_103_333);
});

test('RtpClock property: monotone RTP time with jittered arrival keeps exact media spacing and never decreases', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 0xffff_ffff }), fc.array(fc.tuple(fc.integer({ min: 0, max: 9000 }), fc.integer({ min: -200_000, max: 200_000 })), { minLength: 1, maxLength: 300 }), (start, steps) => {
      const c = new RtpClock();
      let rtp = start;
      let media = 0;
      const first = c.map(start >>> 0, 1_000_000_000, 0).ts;
      let last = first;
      for (const [d, jitter] of steps) {
        rtp += d;
        media += d;
        const { ts } = c.map(rtp >>> 0, 1_000_000_000 + (media * 1e6) / 90_000 + jitter, 0);
        assert.ok(ts >= last);
        assert.ok(Math.abs(ts - (first + (media * 1e6) / 90_000)) <= 1, 'exact 90 kHz mapping');
        last = ts;
      }
      assert.equal(c.stats().reanchors, 0);
    }),
    { numRuns: 200 },
  );
  // Arbitrary (hostile) timestamps and SRs never throw and never run time back.
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 0xffff_ffff }), fc.integer({ min: 0, max: 10_000_000 }), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n })), { maxLength: 100 }), (xs) => {
      const c = new RtpClock();
      let last = -Infinity;
      let arrival = 0;
      for (const [ts, dt, ntp] of xs) {
        arrival += dt;
        c.senderReport(ntp, ts);
        const o = c.map(ts, arrival, 0);
        assert.ok(o.ts >= last && Number.isFinite(o.ts) && Number.isFinite(o.wallclock));
        last = o.ts;
      }
    }),
    { numRuns: 200 },
  );
});

test('WHIP ingest: frames carry the sender capture spacing (40 ms) although they are written every 33 ms; SR seen', async (t) => {
  const dir = await tempDir(t);
  const fx = await h264Fixture(dir, { seconds: 2, size: '320x240' });
  const engine = testEngine(['cam', 'ingest']);
  t.after(() => engine.close());
  const cam = { channel: 'cam', source: 'base', track: 'video' };
  const pub = engine.publisher(cam, { label: 'cam', requestKeyframe: () => true });
  t.after(() => pub.close());
  pub.setMime(fx.mime);
  // Capture timestamps 40 ms apart (a 25 fps camera), delivered at 30 fps: arrival-time stamping
  // would give ~33 ms spacing; the sender's timing gives 40 ms.
  const t0 = captureClockUs();
  let i = 0;
  const timer = setInterval(() => {
    const au = fx.aus[i % fx.aus.length]!;
    pub.write({ ts: t0 + i * 40_000, wallclock: Date.now(), key: au.key, data: au.data });
    i++;
  }, 1000 / 30);
  t.after(() => clearInterval(timer));
  const ingest = new WhipIngest({ engine, log: silentLog, maxSessions: 2 });
  t.after(() => ingest.close());
  const http = new HttpServer({ host: '127.0.0.1', port: 0, maxConnections: 16 });
  registerEgressRoutes(http.router, { ingest: { server: ingest, channel: 'ingest' }, dashboard: false });
  const { port } = await http.listen();
  t.after(() => http.close());
  const whip = new WhipPublisher({ name: 'clk', url: `http://127.0.0.1:${port}/whip/ingest/robot/video`, tracks: [cam], source: engine, log: silentLog, backoff: fastBackoff, timeoutMs: 10_000 });
  t.after(() => whip.close());
  whip.start();
  await waitFor(() => engine.listTracks().some((x) => x.channel === 'ingest' && x.mime !== undefined), 15_000, 'ingested track');
  const c = engine.subscribe({ channel: 'ingest', source: 'robot', track: 'video' }, { label: 'test' });
  t.after(() => c.close());
  const got: Array<{ ts: number; wallclock: number; at: number }> = [];
  const take = (): void => {
    for (let it = c.next(); it; it = c.next()) if (it.type === 'frame') got.push({ ts: it.frame.ts, wallclock: it.frame.wallclock, at: Date.now() });
  };
  c.onReadable(take);
  take();
  await waitFor(() => got.length >= 40 && (ingest.stats().sessions[0]?.clock.senderReports ?? 0) >= 1, 20_000, () => `40 frames (${got.length}) and a sender report (${JSON.stringify(ingest.stats().sessions[0]?.clock)})`);
  const d = got.slice(1).map((f, k) => f.ts - got[k]!.ts);
  for (const x of d) assert.ok(Math.abs(x - 40_000) <= 2, `frame spacing ${x} µs is the sender's 40 000`);
  const st = ingest.stats().sessions[0]!.clock;
  assert.equal(st.reanchors, 0);
  // After the SR, wallclocks come from the sender's NTP clock (same host here: close to now; the
  // 25-fps media clock runs ahead of real time by 20 %, bounded over this short run).
  const last = got.at(-1)!;
  assert.ok(Math.abs(last.wallclock - last.at) < 5000, `SR wallclock ${last.wallclock} vs now ${last.at}`);
});
