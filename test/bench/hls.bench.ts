// HLS bench (issue 21), on the whole runtime process (`moth-edge --config`, a 720p30 test pattern):
//  1. LL-HLS glass-to-glass latency on loopback: headless Chromium + hls.js (lowLatencyMode) plays
//     the live playlist; per displayed frame, now − its capture time (PROGRAM-DATE-TIME is capture
//     µs + the run's offset, so hls.js's playingDate is the capture time of the frame on screen).
//     Target ≤ 1.5 s. The same page's WHEP latency is not comparable this way (no capture time).
//  2. CPU of the runtime process with no viewer, one HLS viewer (Chromium + hls.js), one WHEP
//     viewer (Chromium, the dashboard's player), and ten HLS viewers (LL-HLS clients in this
//     process: blocking reload + every part, what hls.js asks for). Same warm-up and window each.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser } from 'playwright-core';
import { latencies, playLiveHls } from '../hls/hls-page.js';
import { cpuMs, percentile, round, rssMiB, type BenchRow } from './harness.js';

const WINDOW_S = Number(process.env.HLS_BENCH_SECONDS ?? 20);
const WARMUP_MS = Number(process.env.HLS_BENCH_WARMUP_MS ?? 10_000);
const here = fileURLToPath(new URL('.', import.meta.url));

async function startRuntime(dir: string): Promise<{ child: ChildProcess; base: string }> {
  const port = 20_000 + Math.floor(Math.random() * 20_000);
  const cfg = join(dir, 'bench.yaml');
  writeFileSync(cfg, `server: { host: 127.0.0.1, port: ${port} }\nlog: { level: warn }\nrecordings: { enabled: false }\nchannels:\n  - id: m0thedge000000000000\n    name: robot\n    sources:\n      - name: base\n        driver: { kind: testpattern, width: 1280, height: 720, fps: 30, bitrateKbps: 2000 }\n`);
  const child = spawn(process.execPath, [join(here, '..', '..', 'runtime', 'cli.js'), '--config', cfg], { stdio: ['ignore', 'ignore', 'inherit'] });
  const base = `http://127.0.0.1:${port}`;
  const end = Date.now() + 20_000;
  for (;;) {
    const ok = await fetch(`${base}/healthz`).then((r) => r.ok, () => false);
    if (ok) break;
    if (Date.now() > end) throw new Error('runtime did not start');
    await new Promise((r) => setTimeout(r, 200));
  }
  return { child, base };
}

async function cpuWindow(pid: number): Promise<{ cpuPct: number; rss: number }> {
  await new Promise((r) => setTimeout(r, WARMUP_MS));
  const c0 = cpuMs(pid);
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, WINDOW_S * 1000));
  return { cpuPct: round(((cpuMs(pid) - c0) / (performance.now() - t0)) * 100, 1), rss: round(rssMiB(pid).rss, 1) };
}

/** An LL-HLS client as hls.js runs it: blocking reload for the next part, then that part. */
function llhlsClient(url: string, signal: AbortSignal): Promise<number> {
  const dir = url.slice(0, url.lastIndexOf('/') + 1);
  return (async () => {
    let bytes = 0;
    let next: { msn: number; part: number } | null = null;
    while (!signal.aborted) {
      const q: string = next ? `?_HLS_msn=${next.msn}&_HLS_part=${next.part}` : '';
      const text: string = await fetch(url + q, { signal }).then((r) => r.text(), () => "");
      if (!text) continue;
      const lines = text.split('\n');
      let msn: number = Number(/#EXT-X-MEDIA-SEQUENCE:(\d+)/.exec(text)?.[1] ?? 0) - 1;
      let partIdx = 0;
      let lastPart = '';
      for (const l of lines) {
        if (l.startsWith('#EXT-X-PART:')) {
          lastPart = /URI="([^"]+)"/.exec(l)![1]!;
          partIdx++;
        } else if (l.startsWith('seg-')) {
          msn++;
          partIdx = 0;
        }
      }
      if (lastPart) bytes += await fetch(dir + lastPart, { signal }).then(async (r) => (await r.arrayBuffer()).byteLength, () => 0);
      next = { msn: msn + 1, part: partIdx };
    }
    return bytes;
  })();
}

export async function bench(): Promise<BenchRow[]> {
  const dir = mkdtempSync(join(tmpdir(), 'hls-bench-'));
  const rows: BenchRow[] = [];
  const { child, base } = await startRuntime(dir);
  const pid = child.pid!;
  let browser: Browser | null = null;
  const url = `${base}/hls/robot/base/video/index.m3u8`;
  try {
    const idle = await cpuWindow(pid);
    rows.push({ bench: 'hls', case: 'runtime, no viewer (floor)', cpu_pct: idle.cpuPct, rss_mib: idle.rss });
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ['--no-sandbox', '--disable-gpu', '--autoplay-policy=no-user-gesture-required', '--disable-features=WebRtcHideLocalIpsWithMdns'] });

    // 1 HLS viewer in Chromium: latency and CPU
    const page = await browser.newPage();
    await playLiveHls(page, base, url);
    const one = await cpuWindow(pid);
    const lat = await latencies(page, WINDOW_S * 30);
    rows.push({ bench: 'hls', case: 'LL-HLS glass-to-glass (capture → hls.js frame)', frames: lat.length, p50_ms: round(percentile(lat, 50), 0), p99_ms: round(percentile(lat, 99), 0), target_ms: 1500 });
    rows.push({ bench: 'hls', case: '1 HLS viewer (Chromium hls.js)', cpu_pct: one.cpuPct, rss_mib: one.rss, over_floor_pct: round(one.cpuPct - idle.cpuPct, 1) });
    await page.close();

    // 1 WHEP viewer: the dashboard plays the camera over WHEP on load
    await new Promise((r) => setTimeout(r, 2000));
    const dash = await browser.newPage();
    await dash.goto(`${base}/`);
    const whep = await cpuWindow(pid);
    rows.push({ bench: 'hls', case: '1 WHEP viewer (Chromium dashboard)', cpu_pct: whep.cpuPct, rss_mib: whep.rss, over_floor_pct: round(whep.cpuPct - idle.cpuPct, 1) });
    await dash.close();

    // 10 LL-HLS clients
    const ac = new AbortController();
    const clients = Array.from({ length: 10 }, () => llhlsClient(url, ac.signal));
    const ten = await cpuWindow(pid);
    ac.abort();
    const bytes = (await Promise.all(clients)).reduce((a, b) => a + b, 0);
    rows.push({ bench: 'hls', case: '10 HLS viewers (LL-HLS clients)', cpu_pct: ten.cpuPct, rss_mib: ten.rss, over_floor_pct: round(ten.cpuPct - idle.cpuPct, 1), mbit_s_out: round((bytes * 8) / 1e6 / (WINDOW_S + WARMUP_MS / 1000), 2) });
  } finally {
    await browser?.close();
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    rmSync(dir, { recursive: true, force: true });
  }
  return rows;
}
