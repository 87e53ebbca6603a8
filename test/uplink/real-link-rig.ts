// The real-link rig of issue 14 (test/uplink/real-link.test.ts and test/bench/links.bench.ts):
// a Moth-like ring relay in a network namespace (its stdout lines are the record, kept across
// faults and restarts), the runtime as a user runs it (the CLI, shipped defaults) publishing a
// 720p test pattern, a 50 Hz IMU and a 5 Hz GPS with recordings, and the ground truth read back
// from what the recorder wrote.
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { IndexDb } from '../../recordings/index-db.js';
import { scanSegmentRecords } from '../../recordings/record-reader.js';
import { startRuntime, type RuntimeProcess } from '../support/runtime-process.js';
import { waitFor } from '../egress/helpers.js';

export { waitFor };
import type { NetnsPath } from './netns.js';

export const CH = 'r0b0t000000000000000';
export const RELAY_CH = 're1a0000000000000000';
const RELAY_PORT = 8276;
const relayMain = fileURLToPath(new URL('../sim/ring-relay-main.js', import.meta.url));

export interface Line {
  e: 'ready' | 'msg' | 'sub';
  p?: string;
  at: number;
  d?: string;
  w?: number;
  k?: number;
  n?: number;
}

export class Relay {
  readonly lines: Line[] = [];
  private child: ChildProcess | null = null;
  starts = 0;
  constructor(private readonly path: NetnsPath) {}
  async start(): Promise<number> {
    const c = this.path.spawn(process.execPath, [relayMain, '--port', String(RELAY_PORT), '--channel', RELAY_CH, '--subscribe', 'imu.backfill,gps.backfill']);
    this.child = c;
    this.starts++;
    let buf = '';
    let readyAt = 0;
    c.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const l = JSON.parse(buf.slice(0, i)) as Line & { port?: number };
        buf = buf.slice(i + 1);
        if (l.e === 'ready') readyAt = Date.now();
        else this.lines.push(l);
      }
    });
    c.stderr!.on('data', (d: Buffer) => process.stderr.write(`relay: ${d}`));
    await waitFor(() => readyAt > 0, 10_000, 'the relay is listening');
    return readyAt;
  }
  kill(): void {
    this.child?.kill('SIGKILL');
    this.child = null;
  }
  msgs(track: string, since = 0): Line[] {
    return this.lines.filter((l) => l.e === 'msg' && l.p === `${RELAY_CH}/base/${track}` && l.at >= since);
  }
  subs(track: string): Line[] {
    return this.lines.filter((l) => l.e === 'sub' && l.p === `${RELAY_CH}/base/${track}`);
  }
}

export const seqOf = (d: string | undefined): number => (JSON.parse(d ?? '{}') as { seq: number }).seq;

export interface Stats {
  egress: {
    upstream: Array<{ track: string; state: string; spans: { inDoubt: number }; priority: { mode: string; encodingCap: { requests: number; bytesPerSec: number | null } }; failures: Record<string, number>; retries: { refused: number; network: number } }>;
    uplink: { backfill: { tracks: Array<{ track: string; doneBefore: number | null; link: { inDoubt: number; queued: number; inFlight: number; state: string } }> } | null };
  };
}

export async function firstAfter(relay: Relay, track: string, since: number, ms: number, what: string): Promise<number> {
  await waitFor(() => relay.msgs(track, since).length > 0, ms, what);
  return relay.msgs(track, since)[0]!.at - since;
}

/** Start the robot: the CLI with only addresses and what to publish configured (every timing default). */
export async function startRobot(t: { after(fn: () => unknown): void }, dir: string, path: NetnsPath): Promise<RuntimeProcess> {
  const url = `ws://${path.peerAddr}:${RELAY_PORT}`;
  const up = (track: string, backfill: boolean) => `    - { url: ${url}, channel: ${RELAY_CH}, source: base, track: ${track}, from: ${CH}/base/${track}, backfill: ${backfill} }`;
  return startRuntime(t as never, dir, 'robot.yaml', [
    'server: { port: 0 }',
    'log: { level: warn }',
    'channels:',
    `  - id: ${CH}`,
    '    name: robot',
    '    sources:',
    '      - name: base',
    '        driver: { kind: testpattern, track: video, width: 1280, height: 720, fps: 30, bitrateKbps: 2000 }',
    '      - name: base',
    '        driver: { kind: simulated, track: imu, sensor: imu, rateHz: 50 }',
    '      - name: base',
    '        driver: { kind: simulated, track: gps, sensor: gps, rateHz: 5 }',
    'recordings:',
    '  enabled: true',
    `  root: ${join(dir, 'rec')}`,
    `  tracks: [${CH}/base/imu, ${CH}/base/gps]`,
    'egress:',
    '  whep: { enabled: false }',
    '  upstream:',
    up('video', false),
    up('imu', true),
    up('gps', true),
  ].join('\n'));
}

/** What the recorder wrote for a sensor track: seq → capture wallclock (read after the runtime stopped). */
export function recordedSeqs(root: string, track: string): Map<number, number> {
  const idx = IndexDb.openReader(join(root, 'index.db'));
  try {
    const out = new Map<number, number>();
    for (const seg of idx.list({ channel: CH, source: 'base', track, limit: 10_000 })) {
      for (const r of scanSegmentRecords(root, seg.path, { maxReadBytes: Infinity }).records) out.set(seqOf(r.payload.toString()), r.wallclock);
    }
    return out;
  } finally {
    idx.db.close();
  }
}
