// Uplink bench (issue 8): a 720p30 4 Mbit/s camera (priority 50) and a 50 Hz telemetry track
// (priority 100) share one loopback link (one byte FIFO, test/uplink/shared-link-proxy.ts) shaped to 20 % of demand
// from the first byte, then
// the link is cut for 4 s (every connection dropped, new ones refused: a lost cell) and restored. Same run with the priority scheduler off
// (baseline: GOP-tail drops only). Rows: goodput per class over the last 8 s of the thin phase,
// telemetry records lost, time-to-live-again after the cut (first frame captured after the
// restore that reaches the peer), telemetry delay capture → peer (p50/p99) and records never
// received by the end of the run, RSS.
// Why video goodput is the same with priority on and off: the link is saturated either way (a
// work-conserving FIFO carries its rate whatever bytes it is given), so bytes/s cannot differ;
// what priority changes is WHICH bytes — whole keyframes (decodable, fps below) instead of GOP
// prefixes cut mid-GOP — and how long telemetry waits behind video (p50/p99). Session 1's equal
// figures were that, not a measuring bug.
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { captureClockUs } from '../../runtime/engine/api.js';
import { PangPublisher } from '../../runtime/egress/pang-publisher.js';
import { silentLog } from '../../runtime/egress/pang-link.js';
import { UplinkController } from '../../runtime/uplink/controller.js';
import { FakeSource, h264Fixture, playFixture, readTag, type H264Fixture } from '../egress/fake-source.js';
import { SharedLinkProxy } from '../uplink/shared-link-proxy.js';
import { StrictPangPeer } from '../sim/strict-pang-peer.js';
import { percentile, round, rssMiB, type BenchRow } from './harness.js';

const CHAN = '0123456789abcdefghij';
const cam = { channel: 'cam', source: 'base', track: 'video' };
const imu = { channel: 'cam', source: 'base', track: 'imu' };
const THIN_S = 28;
const MEASURE_S = 8;
const CUT_S = 4;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The shaped link between publishers and peer: a userspace proxy, or tc on lo in a netns. */
interface Link {
  port: number;
  setRate(bytesPerSec: number | null): void;
  cut(): void;
  restore(): void;
  close(): Promise<void>;
}

async function proxyLink(peerPort: number): Promise<Link> {
  const proxy = new SharedLinkProxy(peerPort);
  await proxy.listen();
  return { port: proxy.port, setRate: (b) => proxy.setRate(b), cut: () => proxy.cut(), restore: () => proxy.restore(), close: () => proxy.close() };
}

/**
 * tc on the loopback of the network namespace this process runs in (root only): tbf shapes, and
 * a cut is lo going down: packets dropped without resetting connections (a black hole, like a
 * lost cell: TCP retransmits with backoff, the socket stays open).
 */
function tcLink(peerPort: number): Link {
  const tc = (args: string[]): void => {
    execFileSync('tc', args, { stdio: 'ignore' });
  };
  let rate: number | null = null;
  const apply = (): void => {
    try {
      tc(['qdisc', 'del', 'dev', 'lo', 'root']);
    } catch {
      // no qdisc yet
    }
    // A 64 KB bottleneck queue: a modem's buffer at ~1 Mbit/s.
    if (rate !== null) tc(['qdisc', 'add', 'dev', 'lo', 'root', 'tbf', 'rate', `${Math.round(rate * 8)}bit`, 'burst', '16kb', 'limit', String(64 * 1024)]);
  };
  return {
    port: peerPort,
    setRate: (b) => {
      rate = b;
      apply();
    },
    // Debian's kernel here has no netem: the cut takes lo down (packets go nowhere, new connects
    // fail at once, open sockets just stop progressing).
    cut: () => execFileSync('ip', ['link', 'set', 'lo', 'down'], { stdio: 'ignore' }),
    restore: () => {
      execFileSync('ip', ['link', 'set', 'lo', 'up'], { stdio: 'ignore' });
      apply();
    },
    close: async () => {
      rate = null;
      apply();
    },
  };
}

async function runCase(fx: H264Fixture, priority: boolean, shaper: 'proxy' | 'tc' = 'proxy'): Promise<BenchRow> {
  const peer = new StrictPangPeer({ channels: { [CHAN]: undefined } });
  await peer.listen();
  const proxy = shaper === 'tc' ? tcLink(peer.port) : await proxyLink(peer.port);
  // Thin from the first byte. Throttling a loopback connection that already ran at full rate
  // hides the thin link for many seconds: Linux autotunes the receive buffer up to tcp_rmem max
  // (32 MB here) and the send buffer to 4 MB while the link is fast, and bufferedAmount only
  // shows a backlog once those are full. That was session 1's "identical with priority on and
  // off": in its 8 s window the scheduler had not yet seen the link saturate (0 mode changes).
  // Even thin from the start, loopback's ~0 RTT lets the sender's send buffer grow to MBs before
  // a backlog shows, so the thin phase runs 28 s and is measured over its last 8 s.
  const videoRate = fx.aus.reduce((a, b) => a + b.data.length, 0) / (fx.aus.length / fx.fps);
  proxy.setRate(Math.round((videoRate + 50 * 200) * 0.2));
  const src = new FakeSource();
  // A fixture replay is a passthrough source: no encoder to cap (FakeSource would accept and
  // ignore a cap, and a capped-but-unchanged camera would never step down).
  src.requestEncodingCap = () => false;
  const mk = (from: typeof cam, track: string, prio: number): PangPublisher =>
    new PangPublisher({
      name: track,
      endpoint: { url: `ws://127.0.0.1:${proxy.port}`, channel: CHAN, source: 'base', track },
      from,
      maxBufferedBytes: 256 * 1024,
      source: src,
      log: silentLog,
      backoff: { initialMs: 50, maxMs: 400, resetAfterMs: 10_000 },
      ...(priority ? { priority: prio } : {}),
    });
  const video = mk(cam, 'video', 50);
  const tele = mk(imu, 'imu', 100);
  const ctl = priority ? new UplinkController({ links: [video, tele], log: silentLog, intervalMs: 500, probeIntervalMs: 2000 }) : null;
  video.start();
  tele.start();
  ctl?.start();
  src.setMime(imu, 'application/json');
  let seq = 0;
  const teleTimer = setInterval(() => {
    src.publish(imu, { ts: captureClockUs(), wallclock: Date.now(), key: true, data: Buffer.from(JSON.stringify({ seq: seq++, us: captureClockUs(), pad: 'x'.repeat(160) })) });
  }, 20);
  const player = playFixture(src, cam, fx, { loop: true, tag: true });
  const msgs = (track: string) => peer.messages(`${CHAN}/base/${track}`).filter((m) => m.binary && m.data.length > 0);
  let peakRss = 0;
  const rssTimer = setInterval(() => (peakRss = Math.max(peakRss, rssMiB(process.pid).rss)), 200);
  try {
    await sleep((THIN_S - MEASURE_S) * 1000);
    const atUs0 = captureClockUs();
    const seq0 = seq;
    await sleep(MEASURE_S * 1000);
    const atUs1 = captureClockUs();
    const seq1 = seq;
    const inWin = (m: { atUs: number }) => m.atUs >= atUs0 && m.atUs < atUs1;
    const vWin = msgs('video').filter(inWin);
    const tWin = msgs('imu').filter(inWin);
    // Let the window's telemetry land (it waits ~1 s in the link FIFO) before the cut drops it.
    await sleep(3000);
    // Cut (connections dropped, new ones refused), then restore at full rate; time until a frame
    // captured after the restore arrives.
    proxy.setRate(null);
    proxy.cut();
    await sleep(CUT_S * 1000);
    const liftSeq = player.sent();
    const liftAt = performance.now();
    proxy.restore();
    let ttl = NaN;
    while (performance.now() - liftAt < 15_000) {
      if (msgs('video').some((m) => (readTag(m.data) ?? -1) >= liftSeq)) {
        ttl = performance.now() - liftAt;
        break;
      }
      await sleep(10);
    }
    const tele = msgs('imu').map((m) => ({ ...(JSON.parse(m.data.toString()) as { seq: number; us: number }), atUs: m.atUs }));
    const teleSeqs = new Set(tele.map((r) => r.seq));
    let teleLost = 0;
    for (let s = seq0; s < seq1; s++) if (!teleSeqs.has(s)) teleLost++;
    const delays = tele.filter((r) => r.seq >= seq0 && r.seq < seq1).map((r) => (r.atUs - r.us) / 1000).sort((a, b) => a - b);
    return {
      bench: 'uplink',
      case: `${priority ? 'priority on (video 50, telemetry 100)' : 'baseline: priority off'}${shaper === 'tc' ? ' · tc tbf in a netns' : ' · loopback proxy'}`,
      link_kbps: round(((videoRate + 50 * 200) * 0.2 * 8) / 1000, 0),
      telemetry_goodput_kbps: round((tWin.reduce((a, m) => a + m.data.length, 0) * 8) / MEASURE_S / 1000, 1),
      telemetry_lost_pct: round((teleLost / Math.max(1, seq1 - seq0)) * 100, 2),
      telemetry_p50_ms: round(percentile(delays, 50), 0),
      telemetry_p99_ms: round(percentile(delays, 99), 0),
      video_goodput_kbps: round((vWin.reduce((a, m) => a + m.data.length, 0) * 8) / MEASURE_S / 1000, 1),
      video_fps: round(vWin.length / MEASURE_S, 1),
      time_to_live_ms: Number.isNaN(ttl) ? 'none in 15 s' : round(ttl, 0),
      video_mode_changes: ctl ? (ctl.stats().tracks.video?.changes ?? 0) : 0,
      reconnect_resets: ctl ? ctl.stats().reconnectResets : 0,
      encoder_caps_refused: video.stats().priority.encodingCap.refused,
      video_kf_only_drops: video.stats().priority.dropped.keyframesOnly,
      video_paused_drops: video.stats().priority.dropped.paused,
      video_gop_tail_drops: video.stats().dropped.gopTail,
      video_reconnects: video.stats().reconnects,
      video_failures: Object.entries(video.stats().failures).map(([k, v]) => `${k}×${v}`).join(' ') || 'none',
      rss_mb: round(peakRss, 1),
    };
  } finally {
    clearInterval(teleTimer);
    clearInterval(rssTimer);
    player.stop();
    ctl?.close();
    video.close();
    tele.close();
    await proxy.close();
    await peer.close();
  }
}

/**
 * The same two cases with the kernel shaping the link (tc tbf on lo inside a fresh network
 * namespace; this file re-run as a child there). Real TCP behaviour at the bottleneck: small
 * send buffers (cwnd-bound), drops in a 64 KB queue, a cut without resets. Needs root and iproute2;
 * otherwise these rows say why they are missing.
 */
function netnsRows(): BenchRow[] {
  const ns = `mothup${process.pid}`;
  const why = (reason: string): BenchRow[] => [{ bench: 'uplink', case: 'tc tbf in a netns', skipped: reason }];
  // Opt-in (UPLINK_BENCH_NETNS=1): a first trial here showed the camera's session dropped once
  // under tbf and then refused as "track busy" by the strict peer for the rest of the run (the
  // peer had not noticed the dead session) — a real finding about Moth-like servers, not yet a
  // fair goodput comparison.
  if (process.env.UPLINK_BENCH_NETNS !== '1') return why('set UPLINK_BENCH_NETNS=1 (root, iproute2) for the kernel-shaped rows');
  if (process.getuid?.() !== 0) return why('needs root for ip netns / tc');
  try {
    execFileSync('ip', ['netns', 'add', ns], { stdio: 'ignore' });
  } catch {
    return why('ip netns add failed');
  }
  try {
    execFileSync('ip', ['netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up'], { stdio: 'ignore' });
    const out = execFileSync('ip', ['netns', 'exec', ns, process.execPath, '--import', 'tsx', fileURLToPath(import.meta.url), '--netns-child'], {
      encoding: 'utf8',
      timeout: 180_000,
      cwd: process.cwd(),
    });
    const line = out.split('\n').find((l) => l.startsWith('ROWS '));
    return line ? (JSON.parse(line.slice(5)) as BenchRow[]) : why('child printed no rows');
  } catch (err) {
    return why(`child failed: ${(err as Error).message.slice(0, 120)}`);
  } finally {
    try {
      execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    } catch {
      // already gone
    }
  }
}

async function withFixture<T>(fn: (fx: H264Fixture) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'uplink-bench-'));
  try {
    return await fn(await h264Fixture(dir, { seconds: 2, size: '1280x720', gop: 30, bitrate: '4M' }));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export async function bench(): Promise<BenchRow[]> {
  const rows = await withFixture(async (fx) => [await runCase(fx, false), await runCase(fx, true)]);
  return [...rows, ...netnsRows()];
}

if (process.argv.includes('--netns-child')) {
  const rows = await withFixture(async (fx) => [await runCase(fx, false, 'tc'), await runCase(fx, true, 'tc')]);
  console.log(`ROWS ${JSON.stringify(rows)}`);
} else if (import.meta.url === `file://${process.argv[1]}`) {
  const rows = await bench();
  console.table(rows);
}
