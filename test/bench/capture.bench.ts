// Capture benchmarks (issue 7): per driver, CPU and start-to-first-frame, with the baseline measured
// in the same run on the same input.
//  - RTSP passthrough, native client (no child) and ffmpeg client (ffmpeg child + our FLV reader),
//    vs `ffmpeg -c copy` of the same stream, interleaved over several reps;
//    latency: native and ffmpeg read one shared RTSP stream at once, each AU is matched by content,
//    and the difference of arrival times is what our client adds over ffmpeg's own output.
//  - RTMP ingest (our TypeScript server) vs ffmpeg's own RTMP server (`-listen 1`) taking the same
//    publish (`ffmpeg -re -c copy` of a pre-encoded file).
// Targets from the issue: RTSP CPU <= 1.2x ffmpeg -c copy; first frame <= 2 s after start.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRtspDriver } from '../../drivers/camera/rtsp.js';
import { createRtmpIngest } from '../../drivers/ingest/rtmp/ingest.js';
import { AvcDepacketizer, FlvStreamReader } from '../../drivers/ingest/rtmp/flv.js';
import { captureClockUs, type DriverOutput } from '../../runtime/engine/api.js';
import { startRtspCamera } from '../sim/rtsp-camera.js';
import { cpuMs, percentile, round, type BenchRow } from './harness.js';

const FFMPEG = '/usr/bin/ffmpeg';
// Each measured phase. /proc CPU ticks are 10 ms: each variant gets REPS × 4 s (≈0.1 % resolution).
const RUN_MS = 4000;
const REPS = 3;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Child processes of `parent` whose command name matches. */
function childrenNamed(parent: number, comm: string): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === parent && name === comm) out.push(Number(d));
    } catch {
      // gone
    }
  }
  return out;
}

function selfCpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

function sig(au: Buffer): string {
  return au.subarray(Math.max(0, au.length - 24)).toString('hex');
}

function waitExit(p: ChildProcess): Promise<void> {
  return new Promise((r) => {
    if (p.exitCode !== null || p.signalCode !== null) r();
    else p.once('exit', () => r());
  });
}

/** One CPU sample of our RTSP driver (node process minus its idle share, plus its ffmpeg child if any). */
async function rtspOurs(url: string, client: 'native' | 'ffmpeg', idlePct: number) {
  const drv = createRtspDriver({ kind: 'rtsp', url, transport: 'tcp', client });
  let frames = 0;
  let firstAt = 0;
  const out: DriverOutput = { setMime() {}, write: () => void (frames++ === 0 && (firstAt = performance.now())) };
  const ac = new AbortController();
  const t0 = performance.now();
  const run = drv.run(out, ac.signal).catch(() => {});
  await sleep(1000); // settle: connect/DESCRIBE/probe is not steady-state CPU
  const child = client === 'ffmpeg' ? childrenNamed(process.pid, 'ffmpeg')[0] : undefined;
  const c0 = selfCpuMs();
  const f0 = child ? cpuMs(child) : 0;
  const w0 = performance.now();
  await sleep(RUN_MS);
  const f1 = child ? cpuMs(child) : 0;
  const c1 = selfCpuMs();
  const w1 = performance.now();
  ac.abort();
  await run;
  const node = ((c1 - c0) / (w1 - w0)) * 100;
  const ff = ((f1 - f0) / (w1 - w0)) * 100;
  return { total: Math.max(0, node - idlePct) + ff, node, ff, frames, first: firstAt - t0, driverFirst: Number(drv.stats().firstFrameMs ?? NaN) };
}

/** One CPU sample of `ffmpeg -c copy` pulling the same stream (the baseline). */
async function rtspBaseline(url: string) {
  const t0 = performance.now();
  const base = spawn(FFMPEG, ['-hide_banner', '-loglevel', 'error', '-nostdin', '-rtsp_transport', 'tcp', '-i', url, '-map', '0:v:0', '-c:v', 'copy', '-f', 'h264', 'pipe:1'], { stdio: ['ignore', 'pipe', 'ignore'] });
  let firstAt = 0;
  base.stdout!.on('data', () => {
    if (!firstAt) firstAt = performance.now();
  });
  await sleep(1000);
  const f0 = cpuMs(base.pid!);
  const w0 = performance.now();
  await sleep(RUN_MS);
  const f1 = cpuMs(base.pid!);
  const w1 = performance.now();
  base.kill('SIGTERM');
  await waitExit(base);
  return { pct: ((f1 - f0) / (w1 - w0)) * 100, first: firstAt - t0 };
}

async function rtspBench(rows: BenchRow[]): Promise<number> {
  const cam = await startRtspCamera({ size: '1280x720', fps: 30, gop: 30, bitrateKbps: 4000 });
  try {
    // 1) latency: ours (native client) and ffmpeg -c copy (FLV output: explicit frame ends) on one shared stream
    {
      const arrivals = new Map<string, number>();
      const ours: Array<{ s: string; t: number }> = [];
      const base = spawn(FFMPEG, ['-hide_banner', '-loglevel', 'error', '-nostdin', '-fflags', 'nobuffer', '-rtsp_transport', 'tcp', '-i', cam.url, '-map', '0:v:0', '-c:v', 'copy', '-flush_packets', '1', '-f', 'flv', 'pipe:1'], { stdio: ['ignore', 'pipe', 'ignore'] });
      const reader = new FlvStreamReader();
      const depack = new AvcDepacketizer();
      base.stdout!.on('data', (c: Buffer) => {
        const t = captureClockUs();
        for (const tag of reader.push(c)) {
          if (tag.type !== 9) continue;
          const u = depack.push(tag.body);
          if (u && u !== 'config') arrivals.set(sig(u.data), t);
        }
      });
      const drv = createRtspDriver({ kind: 'rtsp', url: cam.url, transport: 'tcp' });
      // arrival on our side: when the driver hands the unit over (its ts is the RTP-derived capture time)
      const out: DriverOutput = { setMime() {}, write: (_t, f) => ours.push({ s: sig(f.data), t: captureClockUs() }) };
      const ac = new AbortController();
      const run = drv.run(out, ac.signal).catch(() => {});
      await sleep(RUN_MS);
      ac.abort();
      await run;
      base.kill('SIGTERM');
      await waitExit(base);
      const d = ours.filter((o) => arrivals.has(o.s)).map((o) => (o.t - arrivals.get(o.s)!) / 1000).sort((a, b) => a - b);
      rows.push({ bench: 'capture', case: 'rtsp 720p30 4M latency: native - ffmpeg copy', matched: d.length, frames: ours.length, p50_ms: round(percentile(d, 50)), p99_ms: round(percentile(d, 99)), max_ms: round(d.at(-1) ?? NaN) });
    }
    // 2) CPU, sequentially: native client, ffmpeg client (node + its ffmpeg), ffmpeg -c copy, REPS
    //    rounds interleaved so a load change on the shared machine hits all three. The bench
    //    process's own idle CPU is measured first and subtracted from ours.
    let idlePct = 0;
    {
      const c0 = selfCpuMs();
      const w0 = performance.now();
      await sleep(2000);
      idlePct = ((selfCpuMs() - c0) / (performance.now() - w0)) * 100;
    }
    const native: Array<Awaited<ReturnType<typeof rtspOurs>>> = [];
    const viaFfmpeg: Array<Awaited<ReturnType<typeof rtspOurs>>> = [];
    const baseRuns: Array<Awaited<ReturnType<typeof rtspBaseline>>> = [];
    for (let r = 0; r < REPS; r++) {
      native.push(await rtspOurs(cam.url, 'native', idlePct));
      baseRuns.push(await rtspBaseline(cam.url));
      viaFfmpeg.push(await rtspOurs(cam.url, 'ffmpeg', idlePct));
    }
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const b = mean(baseRuns.map((x) => x.pct));
    for (const [name, runs] of [['native', native], ['ffmpeg client', viaFfmpeg]] as const) {
      const ratios = runs.map((x, i) => x.total / baseRuns[i]!.pct);
      rows.push({
        bench: 'capture', case: `rtsp 720p30 4M passthrough (ours, ${name})`, reps: runs.length, frames: runs.reduce((a, x) => a + x.frames, 0),
        cpu_pct: round(mean(runs.map((x) => x.total))), node_cpu_pct: round(mean(runs.map((x) => x.node))), node_idle_cpu_pct: round(idlePct), ffmpeg_cpu_pct: round(mean(runs.map((x) => x.ff))),
        first_frame_ms: round(Math.max(...runs.map((x) => x.first)), 0), driver_first_frame_ms: Math.max(...runs.map((x) => x.driverFirst)),
        ratio_vs_copy: round(mean(runs.map((x) => x.total)) / b), ratio_min: round(Math.min(...ratios)), ratio_max: round(Math.max(...ratios)),
      });
    }
    rows.push({ bench: 'capture', case: 'rtsp 720p30 4M baseline: ffmpeg -c copy', reps: baseRuns.length, cpu_pct: round(b), first_byte_ms: round(Math.max(...baseRuns.map((x) => x.first)), 0) });
    rows.push({ bench: 'capture', case: 'rtsp passthrough CPU ratio, native (target <= 1.2)', ratio: round(mean(native.map((x) => x.total)) / b) });
    return idlePct;
  } finally {
    await cam.stop();
  }
}

async function rtmpBench(rows: BenchRow[], idle: number): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'rtmp-bench-'));
  try {
    const file = join(dir, 'in.flv');
    const enc = spawnSync(FFMPEG, ['-hide_banner', '-loglevel', 'error', '-f', 'lavfi', '-i', 'testsrc2=size=1280x720:rate=30', '-t', '8', '-c:v', 'libx264', '-preset', 'ultrafast', '-g', '30', '-b:v', '4M', '-pix_fmt', 'yuv420p', '-f', 'flv', file]);
    if (enc.status !== 0) throw new Error(`could not encode the RTMP input: ${enc.stderr}`);
    const key = 'bench-key-123456';
    const publish = (url: string): ChildProcess => spawn(FFMPEG, ['-hide_banner', '-loglevel', 'error', '-nostdin', '-re', '-i', file, '-c', 'copy', '-f', 'flv', url], { stdio: 'ignore' });
    // ours
    {
      let frames = 0;
      let firstAt = 0;
      const ingest = createRtmpIngest({ host: '127.0.0.1', port: 0, streams: [{ app: 'live', key, channel: 'bench' }] }, {
        openPublisher: () => ({ setMime() {}, write: () => void (frames++ === 0 && (firstAt = performance.now())), close() {} }),
      });
      const { port } = await ingest.ready;
      const c0 = selfCpuMs();
      const t0 = performance.now();
      const pub = publish(`rtmp://127.0.0.1:${port}/live/${key}`);
      await waitExit(pub);
      const w = performance.now() - t0;
      const c = selfCpuMs() - c0;
      await ingest.close();
      rows.push({ bench: 'capture', case: 'rtmp ingest 720p30 4M (ours, TypeScript)', frames, cpu_pct: round(Math.max(0, (c / w) * 100 - idle)), node_cpu_pct: round((c / w) * 100), node_idle_cpu_pct: round(idle), first_frame_ms: round(firstAt - t0, 0) });
    }
    // baseline: ffmpeg's RTMP server reading the same publish
    {
      const port = 20000 + Math.floor(Math.random() * 20000);
      const listener = spawn(FFMPEG, ['-hide_banner', '-loglevel', 'error', '-nostdin', '-listen', '1', '-i', `rtmp://127.0.0.1:${port}/live/${key}`, '-c', 'copy', '-f', 'h264', 'pipe:1'], { stdio: ['ignore', 'pipe', 'ignore'] });
      let firstAt = 0;
      listener.stdout!.on('data', () => {
        if (!firstAt) firstAt = performance.now();
      });
      await sleep(500); // let it listen
      const t0 = performance.now();
      const pub = publish(`rtmp://127.0.0.1:${port}/live/${key}`);
      let last = 0;
      const sampler = setInterval(() => {
        try {
          last = cpuMs(listener.pid!);
        } catch {
          // exited
        }
      }, 100);
      await waitExit(pub);
      await waitExit(listener);
      clearInterval(sampler);
      const w = performance.now() - t0;
      rows.push({ bench: 'capture', case: 'rtmp 720p30 4M baseline: ffmpeg -listen 1 -c copy', cpu_pct: round((last / w) * 100), first_byte_ms: round(firstAt - t0, 0) });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function bench(): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const idle = await rtspBench(rows);
  await rtmpBench(rows, idle);
  return rows;
}

// `node --import tsx test/bench/capture.bench.ts` runs it alone
if (import.meta.url === `file://${process.argv[1]}`) {
  const { printTable } = await import('./harness.js');
  console.log(printTable(await bench()));
}
