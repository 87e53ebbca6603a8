// Fan-out bench (issue: foundation): one 4 Mbit/s 30 fps H.264 track to 1, 10, 50 subscribers over
// loopback, through moth-edge's pang server and through a bare ws broadcast loop, each server in
// its own process (its CPU and RSS read from /proc). Paced phase → latency; burst phase → throughput.

import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { WebSocket } from 'ws';
import { AnnexBSplitter } from '../../runtime/engine/h264.js';
import { encodeH264, tempDir, writeFile } from '../support/app.js';
import { cpuMs, percentile, round, rssMiB, type BenchRow } from './harness.js';

const FPS = 30;
const PACED_FRAMES = 150;
// Long enough (several seconds at 50 subscribers) that the ratio is not decided by scheduling noise.
const BURST_FRAMES = 600;

interface Server {
  name: string;
  proc: ChildProcess;
  /** URLs for one case: each case gets its own track, so no GOP cache carries over between cases. */
  pubUrl: (n: number) => string;
  subUrl: (n: number) => string;
  mime?: string;
}

async function startServer(kind: 'moth-edge' | 'bare-ws', dir: string): Promise<Server> {
  const here = fileURLToPath(new URL('.', import.meta.url));
  let proc: ChildProcess;
  let re: RegExp;
  if (kind === 'moth-edge') {
    // The relay alone: no recorder subscribing, no demo drivers.
    const cfg = writeFile(dir, 'bench.yaml', 'server: { port: 0 }\nlog: { level: warn }\nchannels: []\nrecordings: { enabled: false }\n');
    proc = spawn(process.execPath, [fileURLToPath(new URL('../../runtime/cli.js', import.meta.url)), '--config', cfg], { stdio: ['ignore', 'pipe', 'inherit'] });
    re = /stats:\s+http:\/\/127\.0\.0\.1:(\d+)/;
  } else {
    proc = spawn(process.execPath, [`${here}/bare-ws-server.js`], { stdio: ['ignore', 'pipe', 'inherit'] });
    re = /port (\d+)/;
  }
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    const t = setTimeout(() => reject(new Error(`${kind} did not start`)), 15_000);
    proc.stdout!.on('data', (d) => {
      out += d;
      const m = re.exec(out);
      if (m) {
        clearTimeout(t);
        resolve(Number(m[1]));
      }
    });
  });
  const base = `ws://127.0.0.1:${port}`;
  return kind === 'moth-edge'
    ? {
        name: kind,
        proc,
        pubUrl: (n) => `${base}/pang/ws/pub?channel=instant&name=bench&track=cam${n}`,
        subUrl: (n) => `${base}/pang/ws/sub?channel=instant&name=bench&track=cam${n}`,
        mime: 'video/h264;width=1280;height=720;framerate=30',
      }
    : { name: kind, proc, pubUrl: () => `${base}/pub`, subUrl: () => `${base}/sub` };
}

interface Sub {
  ws: WebSocket;
  times: number[];
  bytes: number;
}

function openWs(url: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

async function runCase(server: Server, n: number, frames: Buffer[]): Promise<BenchRow> {
  const subs: Sub[] = [];
  for (let i = 0; i < n; i++) {
    const ws = await openWs(server.subUrl(n));
    const s: Sub = { ws, times: [], bytes: 0 };
    ws.on('message', (d: Buffer, bin: boolean) => {
      if (!bin) return;
      s.times.push(performance.now());
      s.bytes += d.length;
    });
    subs.push(s);
  }
  const pub = await openWs(server.pubUrl(n));
  if (server.mime) pub.send(server.mime);
  const pid = server.proc.pid!;
  const cpu0 = cpuMs(pid);
  const t0 = performance.now();

  // Paced: 30 fps for PACED_FRAMES frames.
  const sendAt: number[] = [];
  await new Promise<void>((resolve) => {
    let i = 0;
    const tick = setInterval(() => {
      const due = Math.min(PACED_FRAMES, Math.floor((performance.now() - t0) / (1000 / FPS)) + 1);
      while (i < due) {
        sendAt.push(performance.now());
        pub.send(frames[i % frames.length]!, { binary: true });
        i++;
      }
      if (i >= PACED_FRAMES) {
        clearInterval(tick);
        resolve();
      }
    }, 2);
  });
  const pacedDeadline = performance.now() + 5000;
  while (subs.some((s) => s.times.length < PACED_FRAMES) && performance.now() < pacedDeadline) await new Promise((r) => setTimeout(r, 10));
  const pacedEnd = Math.max(...subs.map((s) => s.times[Math.min(s.times.length, PACED_FRAMES) - 1] ?? t0));
  const lat: number[] = [];
  let pacedBytes = 0;
  for (const s of subs) {
    for (let k = 0; k < Math.min(PACED_FRAMES, s.times.length); k++) lat.push(s.times[k]! - sendAt[k]!);
    pacedBytes += s.bytes;
  }
  lat.sort((a, b) => a - b);
  const pacedMbps = (pacedBytes * 8) / ((pacedEnd - t0) / 1000) / 1e6;

  // Burst: as fast as the publisher socket takes it (bounded by its own send buffer).
  for (const s of subs) {
    s.times = [];
    s.bytes = 0;
  }
  const b0 = performance.now();
  for (let i = 0; i < BURST_FRAMES; i++) {
    while (pub.bufferedAmount > 1024 * 1024) await new Promise((r) => setImmediate(r));
    pub.send(frames[i % frames.length]!, { binary: true });
  }
  const burstDeadline = performance.now() + 15_000;
  let lastCount = -1;
  let stableSince = performance.now();
  // Done when every subscriber has everything, or when nothing more arrives for 500 ms (drops).
  for (;;) {
    const count = subs.reduce((a, s) => a + s.times.length, 0);
    if (count >= n * BURST_FRAMES || performance.now() > burstDeadline) break;
    if (count !== lastCount) {
      lastCount = count;
      stableSince = performance.now();
    } else if (performance.now() - stableSince > 500) break;
    await new Promise((r) => setTimeout(r, 5));
  }
  const burstEnd = Math.max(...subs.map((s) => s.times.at(-1) ?? b0));
  const burstBytes = subs.reduce((a, s) => a + s.bytes, 0);
  const burstFrames = subs.reduce((a, s) => a + s.times.length, 0);
  const cpu = cpuMs(pid) - cpu0;
  const wall = performance.now() - t0;
  pub.close();
  for (const s of subs) s.ws.close();
  await new Promise((r) => setTimeout(r, 200));
  return {
    bench: 'pang-fanout',
    case: `${server.name} subs=${n}`,
    paced_mbps: round(pacedMbps),
    p50_ms: round(percentile(lat, 50), 3),
    p99_ms: round(percentile(lat, 99), 3),
    burst_mbps: round((burstBytes * 8) / ((burstEnd - b0) / 1000) / 1e6, 1),
    burst_delivered_pct: round((100 * burstFrames) / (n * BURST_FRAMES), 1),
    server_cpu_pct: round((100 * cpu) / wall, 1),
    server_rss_mb: round(rssMiB(pid).peak, 1),
  };
}

export async function bench(): Promise<BenchRow[]> {
  const { dir, cleanup } = tempDir('moth-bench-');
  try {
    const stream = await encodeH264(dir, { width: 1280, height: 720, fps: FPS, frames: 150, gop: FPS, bitrateKbps: 4000 });
    const sp = new AnnexBSplitter();
    const frames = [...sp.push(stream), ...sp.flush()].map((a) => a.data);
    const rows: BenchRow[] = [];
    for (const kind of ['bare-ws', 'moth-edge'] as const) {
      const server = await startServer(kind, dir);
      try {
        for (const n of [1, 10, 50]) rows.push(await runCase(server, n, frames));
      } finally {
        server.proc.kill('SIGTERM');
        await new Promise((r) => server.proc.once('exit', r));
      }
    }
    for (const n of [1, 10, 50]) {
      const bare = rows.find((r) => r.case === `bare-ws subs=${n}`)!;
      const moth = rows.find((r) => r.case === `moth-edge subs=${n}`)!;
      rows.push({
        bench: 'pang-fanout',
        case: `moth-edge vs bare subs=${n}`,
        burst_ratio: round(Number(moth.burst_mbps) / Number(bare.burst_mbps), 2),
        added_p50_ms: round(Number(moth.p50_ms) - Number(bare.p50_ms), 3),
        added_p99_ms: round(Number(moth.p99_ms) - Number(bare.p99_ms), 3),
      });
    }
    return rows;
  } finally {
    cleanup();
  }
}
