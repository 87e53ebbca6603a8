// Sensor benchmarks: NMEA parse cost (vs checksum-only baseline), and serial GPS end-to-end over a
// socat pty — write-to-record latency and CPU — against serialport + its own ReadlineParser reading
// the same pty (the least a line sensor can cost).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SerialPort, ReadlineParser } from 'serialport';
import { captureClockUs } from '../../runtime/engine/api.js';
import { createGpsDriver } from '../../drivers/sensor/gps.js';
import { nmeaChecksum, parseNmea, NmeaError } from '../../drivers/sensor/nmea.js';
import { RecordingOutput, startPtyPair, type PtyPair } from '../sensor/socat-pty.js';
import { percentile, round, type BenchRow } from './harness.js';
import { UBLOX_M8N_LINES } from '../sensor/fixtures/ublox-m8n.js';

const capture = UBLOX_M8N_LINES;

function cpuNowMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

function parseRows(): BenchRow[] {
  const rows: BenchRow[] = [];
  const budgetMs = 1500;
  for (const [name, fn] of [
    ['checksum only (baseline)', (l: string) => nmeaChecksum(l.slice(1, l.lastIndexOf('*')))],
    [
      'parseNmea + JSON',
      (l: string) => {
        try {
          return JSON.stringify(parseNmea(l)).length;
        } catch (e) {
          if (e instanceof NmeaError) return 0;
          throw e;
        }
      },
    ],
  ] as const) {
    let n = 0;
    const c0 = cpuNowMs();
    const t0 = performance.now();
    while (performance.now() - t0 < budgetMs) {
      for (const l of capture) fn(l);
      n += capture.length;
    }
    const wall = performance.now() - t0;
    rows.push({ bench: 'nmea-parse', case: name, sentences_per_s: Math.round((n / wall) * 1000), us_per_sentence: round((wall * 1000) / n, 3), cpu_pct: round(((cpuNowMs() - c0) / wall) * 100, 1) });
  }
  return rows;
}

/** Write `count` GGA sentences, one every `gapMs`, and measure write → record latency. */
async function ptyCase(dir: string, reader: 'gps-driver' | 'serialport-readline', count: number, gapMs: number): Promise<BenchRow> {
  const pty = await startPtyPair(join(dir, `${reader}-dev`), join(dir, `${reader}-feed`));
  try {
    return await ptyRun(pty, reader, count, gapMs);
  } finally {
    await pty.kill();
  }
}

async function ptyRun(pty: PtyPair, reader: 'gps-driver' | 'serialport-readline', count: number, gapMs: number): Promise<BenchRow> {
  const lat: number[] = [];
  const sent = new Map<number, number>();
  const sentence = (i: number): string => {
    const sec = i % 86400;
    const hhmmss = [Math.floor(sec / 3600), Math.floor(sec / 60) % 60, sec % 60].map((n) => String(n).padStart(2, '0')).join('');
    const body = `GPGGA,${hhmmss}.00,4807.038,N,01131.000,E,1,08,0.9,${(545 + i / 1000).toFixed(3)},M,46.9,M,,`;
    return `$${body}*${nmeaChecksum(body).toString(16).toUpperCase().padStart(2, '0')}\r\n`;
  };
  const key = (alt: number): number => Math.round(alt * 1000);
  let received = 0;
  let stop: () => Promise<void> = async () => {};
  let onRecord: (alt: number, tsUs: number) => void = () => {};
  const done = new Promise<void>((resolve) => {
    onRecord = (alt, tsUs) => {
      const s = sent.get(key(alt));
      if (s !== undefined) lat.push((tsUs - s) / 1000);
      if (++received >= count) resolve();
    };
  });
  if (reader === 'gps-driver') {
    const drv = createGpsDriver({ kind: 'gps', path: pty.dev, baudRate: 115200 });
    const out = new RecordingOutput();
    out.write = (_track, frame) => {
      const rec = JSON.parse(frame.data.toString()) as { altitudeM: number };
      onRecord(rec.altitudeM, frame.ts);
    };
    const ac = new AbortController();
    const running = drv.run(out, ac.signal);
    await out.waitFor(() => drv.stats().connected === true, 'open', 5000);
    stop = async () => {
      ac.abort();
      await running;
    };
  } else {
    const port = new SerialPort({ path: pty.dev, baudRate: 115200 });
    await new Promise<void>((r, j) => port.once('open', () => r()).once('error', j));
    const parser = port.pipe(new ReadlineParser({ delimiter: '\r\n' }));
    parser.on('data', (line: string) => {
      const ts = captureClockUs();
      const alt = Number(line.split(',')[9]);
      onRecord(alt, ts);
    });
    stop = () => new Promise<void>((r) => port.close(() => r()));
  }
  const c0 = cpuNowMs();
  const t0 = performance.now();
  if (gapMs > 0) {
    for (let i = 0; i < count; i++) {
      const s = sentence(i);
      sent.set(key(545 + i / 1000), captureClockUs());
      pty.write(s);
      await new Promise((r) => setTimeout(r, gapMs));
    }
  } else {
    // Flood in batches of 20 sentences (~1.5 KB) without blocking the loop that reads them.
    for (let i = 0; i < count; i += 20) {
      let batch = '';
      const now = captureClockUs();
      for (let k = i; k < Math.min(count, i + 20); k++) {
        batch += sentence(k);
        sent.set(key(545 + k / 1000), now);
      }
      await pty.writeAsync(batch);
    }
  }
  const timeout = new Promise<void>((_, j) => setTimeout(() => j(new Error(`${reader}: ${received}/${count} records`)), 20_000).unref());
  try {
    await Promise.race([done, timeout]);
  } finally {
    await stop();
  }
  const wall = performance.now() - t0;
  const cpu = cpuNowMs() - c0;
  lat.sort((a, b) => a - b);
  return {
    bench: 'serial-gps',
    // The readline baseline only splits lines (no checksum, no parse, no JSON): the floor.
    case: `${reader === 'gps-driver' ? 'gps driver' : 'serialport readline (baseline)'}${gapMs === 0 ? ' flood' : ` ${Math.round(1000 / gapMs)} Hz`}`,
    records: received,
    p50_ms: round(percentile(lat, 50), 3),
    p99_ms: round(percentile(lat, 99), 3),
    records_per_s: Math.round((received / wall) * 1000),
    cpu_pct: round((cpu / wall) * 100, 1),
    rss_mb: round(process.memoryUsage().rss / 1048576, 1),
  };
}

export async function bench(): Promise<BenchRow[]> {
  const rows = parseRows();
  const dir = await mkdtemp(join(tmpdir(), 'moth-sensor-bench-'));
  try {
    for (const reader of ['serialport-readline', 'gps-driver'] as const) {
      rows.push(await ptyCase(dir, reader, 200, 5));
      rows.push(await ptyCase(dir, reader, 5000, 0));
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  return rows;
}
