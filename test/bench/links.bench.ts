// Links bench (issue 14), shipped defaults, the runtime as a user runs it (the CLI) against a
// Moth-like ring relay behind a real network path (a namespace, a veth, tc): time back to live
// after a cut, a silent outage and a relay restart (p50 and max over LINKS_BENCH_RUNS runs, 10 by
// default), how long the scheduler takes to act when the link thins to 20 % of the demand, records
// lost but reported delivered (must be 0), and in-doubt duplicates per outage.
//   npm run bench -- links          (root and iproute2 needed; skipped with the reason otherwise)
import { join } from 'node:path';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir, loadavg } from 'node:os';
import type { GapReport } from '../../runtime/uplink/spans.js';
import { createNetnsPath, netnsUnavailable } from '../uplink/netns.js';
import { CH, firstAfter, recordedSeqs, Relay, seqOf, startRobot, waitFor, type Stats } from '../uplink/real-link-rig.js';
import { cpuMs, median, percentile, round, rssMiB, type BenchRow } from './harness.js';

const RUNS = Number(process.env.LINKS_BENCH_RUNS ?? 10);
const OUTAGE_MS = Number(process.env.LINKS_BENCH_OUTAGE_MS ?? 8000);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function bench(): Promise<BenchRow[]> {
  const why = await netnsUnavailable();
  if (why) {
    process.stderr.write(`links bench skipped: ${why}\n`);
    return [{ bench: 'links', case: `skipped: ${why}` }];
  }
  const afters: Array<() => unknown> = [];
  const t = { after: (fn: () => unknown) => void afters.push(fn) };
  const dir = await mkdtemp(join(tmpdir(), 'links-bench-'));
  const path = await createNetnsPath('lb');
  const relay = new Relay(path);
  try {
    await relay.start();
    const rt = await startRobot(t, dir, path);
    const stats = (): Promise<Stats> => rt.api<Stats>('/api/stats');
    const t0 = Date.now();
    const cpu0 = cpuMs(rt.child.pid!);
    await waitFor(() => relay.msgs('video').length > 30 && relay.msgs('imu').length > 100, 30_000, 'live before any fault');
    const back: Record<string, number[]> = { cut: [], silent: [], restart: [] };
    let outages = 0;
    for (let i = 0; i < RUNS; i++) {
      for (const kind of ['cut', 'silent', 'restart'] as const) {
        let returned: number;
        if (kind === 'restart') {
          relay.kill();
          await sleep(1000);
          returned = await relay.start();
        } else {
          await (kind === 'cut' ? path.cut() : path.blackhole());
          await sleep(OUTAGE_MS);
          await path.restore();
          returned = Date.now();
        }
        outages++;
        back[kind]!.push(await firstAfter(relay, 'video', returned, 30_000, `video after ${kind}`));
        await sleep(3000);
      }
    }
    // Thin to 20 % of the demand: how long until the scheduler acts (mode change or encoder cap).
    const detect: number[] = [];
    for (let i = 0; i < 3; i++) {
      const demand = relay.msgs('video', Date.now() - 4000).reduce((a, l) => a + (l.n ?? 0), 0) / 4 + 10_000;
      const before = (await stats()).egress.upstream.find((u) => u.track.endsWith('/video'))!.priority.encodingCap.requests;
      await path.thin(demand * 0.2);
      const at = Date.now();
      let acted = 0;
      while (!acted && Date.now() - at < 30_000) {
        const v = (await stats()).egress.upstream.find((u) => u.track.endsWith('/video'))!;
        if (v.priority.mode !== 'full' || v.priority.encodingCap.requests > before) acted = Date.now() - at;
        await sleep(100);
      }
      detect.push(acted || Infinity);
      await sleep(10_000);
      await path.restore();
      // back to full video with the cap lifted before the next round
      const until = Date.now() + 60_000;
      for (;;) {
        const v = (await stats()).egress.upstream.find((u) => u.track.endsWith('/video'))!;
        if ((v.priority.mode === 'full' && v.priority.encodingCap.bytesPerSec === null) || Date.now() > until) break;
        await sleep(500);
      }
      await sleep(5000);
    }
    // Settle the backfill, then compare with the ground truth.
    const settledFrom = Date.now();
    let st = await stats();
    const until = Date.now() + 300_000;
    for (;;) {
      st = await stats();
      const bf = st.egress.uplink.backfill?.tracks ?? [];
      if (bf.length === 2 && bf.every((x) => (x.doneBefore ?? 0) >= settledFrom - 4000 && x.link.queued === 0 && x.link.inFlight === 0)) break;
      if (Date.now() > until) break;
      await sleep(1000);
    }
    const windowEnd = Math.min(...(st.egress.uplink.backfill?.tracks ?? []).map((x) => x.doneBefore ?? 0));
    const cpu = (cpuMs(rt.child.pid!) - cpu0) / (Date.now() - t0);
    const rss = rssMiB(rt.child.pid!);
    const gaps: Record<string, GapReport> = {};
    for (const track of ['imu', 'gps']) gaps[track] = await rt.api<GapReport>(`/api/gaps?track=${CH}/base/${track}&from=${t0}&to=${Math.floor(windowEnd)}`);
    await rt.stop();
    let lostButDelivered = 0;
    let missing = 0;
    let duplicates = 0;
    for (const track of ['imu', 'gps']) {
      const recorded = recordedSeqs(join(dir, 'rec'), track);
      const live = new Set(relay.msgs(track).map((l) => seqOf(l.d)));
      const counts = new Map<number, number>();
      for (const q of [...relay.msgs(track), ...relay.msgs(`${track}.backfill`)].map((l) => seqOf(l.d))) counts.set(q, (counts.get(q) ?? 0) + 1);
      for (const [q, w] of recorded) {
        if (w > windowEnd) continue;
        if (gaps[track]!.live.some((s) => w >= s.from && w <= s.to) && !live.has(q)) lostButDelivered++;
        if (!counts.has(q)) missing++;
      }
      duplicates += [...counts.values()].reduce((a, n) => a + n - 1, 0);
    }
    const row = (name: string, v: number[]): BenchRow => {
      const s = [...v].sort((a, b) => a - b);
      return { bench: 'links', case: `back to live after ${name}`, runs: v.length, p50_ms: round(median(s), 0), max_ms: round(s[s.length - 1] ?? NaN, 0), p90_ms: round(percentile(s, 90), 0) };
    };
    const load = round(loadavg()[0]!, 1);
    return [
      row(`cut ${OUTAGE_MS / 1000} s`, back.cut!),
      row(`silent outage ${OUTAGE_MS / 1000} s`, back.silent!),
      row('relay restart (1 s down)', back.restart!),
      { bench: 'links', case: 'link thinned to 20 %: scheduler acts', runs: detect.length, p50_ms: round(median([...detect].sort((a, b) => a - b)), 0), max_ms: round(Math.max(...detect), 0) },
      { bench: 'links', case: 'records lost but reported delivered', value: lostButDelivered },
      { bench: 'links', case: 'records missing at the relay after backfill', value: missing },
      { bench: 'links', case: 'in-doubt duplicates per outage', value: round(duplicates / Math.max(1, outages), 2), outages },
      { bench: 'links', case: 'runtime process over the run', cpu_pct: round(cpu * 100, 2), rss_mib: round(rss.rss, 1), peak_rss_mib: round(rss.peak, 1), load },
    ];
  } finally {
    relay.kill();
    for (const fn of afters.reverse()) await fn();
    await path.close();
    await rm(dir, { recursive: true, force: true });
  }
}
