// Control benchmarks: command latency from a control input (HTTP API, pang ctl) to the bytes parsed
// by the Pelco-D simulator on the serial pty, and to the ISAPI simulator's HTTP receipt, at
// 50 commands/s; the dead-man stop latency (lease expiry → Stop at the head) and the link-drop stop
// latency (client socket gone → Stop at the head). Baseline: a raw write to the same pty.
// Targets (issue): p99 <= 10 ms to serial; dead-man stop <= 1 s always.
import http from 'node:http';
import { encodeMove } from '../../drivers/ptz/pelco-d.js';
import { SerialLink } from '../../drivers/serial/port.js';
import { startHarness, WsClient, type Harness } from '../control/harness.js';
import { waitUntil } from '../sim/serial-pty.js';
import { percentile, round, type BenchRow } from './harness.js';

const RATE = 50;
const N = 150; // 3 s at 50/s per case
const WARMUP = 20; // JIT, first sockets, first digest challenge: not part of the steady state

// A keep-alive client like an operator console's; fetch (undici) in the same process costs more
// CPU than the server under test and would blur the numbers.
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
function post(base: string, path: string, body: unknown): Promise<void> {
  const data = JSON.stringify(body);
  const u = new URL(base + path);
  return new Promise((resolve, reject) => {
    const r = http.request({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } }, (res) => {
      res.resume();
      res.on('end', () => resolve());
    });
    r.on('error', reject);
    r.end(data);
  });
}

function cpuNowMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

function stats(bench: string, name: string, lat: number[], extra: Record<string, number | string> = {}): BenchRow {
  const s = [...lat].sort((a, b) => a - b);
  return {
    bench,
    case: name,
    n: s.length,
    p50_ms: round(percentile(s, 50), 3),
    p99_ms: round(percentile(s, 99), 3),
    max_ms: round(s[s.length - 1] ?? NaN, 3),
    ...extra,
  };
}

/** Send N commands at RATE/s with distinct velocities; latency = send → simulator receipt. */
async function paced(h: Harness, send: (i: number, pan: number) => Promise<void>, receipts: () => number): Promise<{ lat: number[]; cpuPct: number }> {
  const lat: number[] = [];
  let c0 = cpuNowMs();
  const w0 = performance.now();
  let s0 = w0;
  for (let i = 0; i < N + WARMUP; i++) {
    if (i === WARMUP) {
      lat.length = 0;
      c0 = cpuNowMs();
      s0 = performance.now();
    }
    const due = w0 + (i * 1000) / RATE;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    // alternate direction and speed so every command differs (no "unchanged" shortcut)
    const pan = ((i % 2 ? -1 : 1) * (1 + (i % 60))) / 63;
    const before = receipts();
    const t0 = performance.now();
    await send(i, pan);
    await waitUntil(() => receipts() > before, `receipt of command ${i}`, 2000, 0);
    lat.push(lastT() - t0);
  }
  const cpuPct = ((cpuNowMs() - c0) / (performance.now() - s0)) * 100;
  void w0;
  return { lat, cpuPct };
  function lastT(): number {
    return latestT;
  }
}

let latestT = 0;

export async function bench(): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const h = await startHarness({ leaseMs: 2000, maxRatePerSec: 200 });
  try {
    const headMoves = () => h.head.log.filter((l) => l.type === 'move' || l.type === 'stop').length;
    const trackHead = () => {
      const last = h.head.log[h.head.log.length - 1];
      if (last) latestT = last.t;
      return headMoves();
    };
    const trackDome = () => {
      const last = h.dome.log[h.dome.log.length - 1];
      if (last) latestT = last.t;
      return h.dome.log.length;
    };

    // HTTP → serial
    {
      const r = await paced(
        h,
        async (_i, pan) => {
          await post(h.base, '/ptz/front/move', { pan, tilt: 0, zoom: 0 });
        },
        trackHead,
      );
      rows.push(stats('control', `HTTP → Pelco-D bytes on pty @${RATE}/s`, r.lat, { cpu_pct: round(r.cpuPct, 1) }));
      await post(h.base, '/ptz/front/stop', {});
    }

    // pang ctl → serial
    {
      const c = new WsClient(`${h.ws}/pang/ws/ctl?channel=instant&name=bench`);
      await c.opened;
      const r = await paced(
        h,
        async (i, pan) => {
          c.send(JSON.stringify({ type: 'control', req_id: `b${i}`, seq: i + 1, target: 'ptz/front', action: 'move', pan }));
        },
        trackHead,
      );
      rows.push(stats('control', `pang ctl → Pelco-D bytes on pty @${RATE}/s`, r.lat, { cpu_pct: round(r.cpuPct, 1) }));
      c.send(JSON.stringify({ type: 'control', req_id: 'stop', seq: N + 10, target: 'ptz/front', action: 'stop' }));
      await c.reply('stop');
      c.close();
      await waitUntil(() => h.head.moving === false, 'stopped');
    }

    // HTTP → ISAPI simulator receipt (digest-authenticated HTTP to the device)
    {
      const r = await paced(
        h,
        async (_i, pan) => {
          await post(h.base, '/ptz/dome/move', { pan, tilt: 0, zoom: 0 });
        },
        trackDome,
      );
      rows.push(stats('control', `HTTP → ISAPI device receipt @${RATE}/s`, r.lat, { cpu_pct: round(r.cpuPct, 1) }));
      await post(h.base, '/ptz/dome/stop', {});
    }

    // Dead-man: lease expiry → Stop parsed at the head.
    {
      const lat: number[] = [];
      const lease = 200;
      for (let i = 0; i < 20; i++) {
        const t0 = performance.now();
        await post(h.base, '/ptz/front/move', { tilt: i % 2 ? 0.5 : -0.5, lease_ms: lease });
        await waitUntil(() => h.head.log[h.head.log.length - 1]?.type === 'stop' && h.head.log[h.head.log.length - 1]!.t > t0, 'dead-man stop', 3000, 1);
        lat.push(h.head.log[h.head.log.length - 1]!.t - t0);
      }
      rows.push(stats('control', `dead-man: move → Stop at head (lease ${lease} ms)`, lat, { over_lease_p99_ms: round(percentile([...lat].sort((a, b) => a - b), 99) - lease, 3) }));
    }

    // Link drop: ws client gone mid-move (lease 5 s) → Stop at the head.
    {
      const lat: number[] = [];
      for (let i = 0; i < 20; i++) {
        const c = new WsClient(`${h.ws}/pang/ws/ctl?channel=instant&name=drop`);
        await c.opened;
        c.send(JSON.stringify({ type: 'control', req_id: 'd', seq: 1, target: 'ptz/front', action: 'move', pan: 0.7, lease_ms: 5000 }));
        await c.reply('d');
        const t0 = performance.now();
        c.close();
        await waitUntil(() => !h.head.moving, 'link-drop stop', 3000, 1);
        lat.push(h.head.log[h.head.log.length - 1]!.t - t0);
      }
      rows.push(stats('control', 'link drop (ws terminated) → Stop at head', lat));
    }
  } finally {
    agent.destroy();
    await h.close();
  }

  // Baseline: bare SerialLink → simulator on a fresh pty, same pacing.
  rows.push(await baseline());
  return rows;
}

async function baseline(): Promise<BenchRow> {
  const { mkdtemp, rm } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const p = await import('node:path');
  const { PtyCable } = await import('../sim/serial-pty.js');
  const { PelcoDHeadSim } = await import('../sim/pelco-d-head.js');
  const dir = await mkdtemp(p.join(tmpdir(), 'bench-'));
  const cable = new PtyCable(p.join(dir, 'a'), p.join(dir, 'b'));
  await cable.start();
  const sim = new PelcoDHeadSim(cable.peer, 1);
  await sim.open();
  const link = new SerialLink({ path: cable.dev, baudRate: 9600 });
  let open = false;
  link.onOpen(() => (open = true));
  link.start();
  try {
    await waitUntil(() => open, 'open');
    const lat: number[] = [];
    const w0 = performance.now();
    for (let i = 0; i < N + WARMUP; i++) {
      if (i === WARMUP) lat.length = 0;
      const wait = w0 + (i * 1000) / RATE - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      const before = sim.log.length;
      const t0 = performance.now();
      link.write(encodeMove(1, { pan: ((i % 2 ? -1 : 1) * (1 + (i % 60))) / 63, tilt: 0, zoom: 0 }));
      await waitUntil(() => sim.log.length > before, 'receipt', 2000, 0);
      lat.push(sim.log[sim.log.length - 1]!.t - t0);
    }
    return stats('control', `baseline: bare SerialLink write → pty @${RATE}/s`, lat);
  } finally {
    await link.close();
    await sim.close();
    await cable.kill();
    await rm(dir, { recursive: true, force: true });
  }
}
