// GPS and line sensor drivers against a real pty pair (socat): real NMEA capture bytes, corrupt
// checksums, over-long lines, binary noise, and the pty vanishing and coming back.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createGpsDriver, GPS_MIME } from '../../drivers/sensor/gps.js';
import { createLineSensorDriver } from '../../drivers/sensor/line.js';
import { formatNmea } from '../../drivers/sensor/nmea.js';
import { RecordingOutput, startPtyPair } from './socat-pty.js';
import { UBLOX_M8N_CAPTURE } from './fixtures/ublox-m8n.js';

const capture = Buffer.from(UBLOX_M8N_CAPTURE, 'latin1');

async function tmp(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'moth-serial-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test('gps: real capture over a pty → 23 JSON records; corrupt, over-long and binary lines counted and skipped', async (t) => {
  const dir = await tmp(t);
  const pty = await startPtyPair(join(dir, 'gps'), join(dir, 'feed'));
  t.after(() => pty.kill());
  const drv = createGpsDriver({ kind: 'gps', path: pty.dev, baudRate: 9600 });
  const out = new RecordingOutput();
  const ac = new AbortController();
  const running = drv.run(out, ac.signal);
  t.after(async () => {
    ac.abort();
    await running;
  });
  await out.waitFor(() => drv.stats().connected === true, 'port open');
  assert.deepEqual(drv.describe(), [{ track: 'gps', mime: GPS_MIME }]);
  assert.equal(out.mimes.gps, GPS_MIME);

  // Capture bytes in odd-sized chunks (as a UART delivers them), with damage in between.
  const good = '$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47\r\n';
  const corrupt = good.replace('4807', '4808'); // one flipped digit, checksum no longer matches
  const hpg = formatNmea('GNGGA,092725.000,4717.1139912,N,00833.9159012,E,4,12,0.51,499.6123,M,48.0123,M,1.0,0000') + '\r\n';
  const overlong = '$GPGSV,' + '12,'.repeat(120) + '*00\r\n';
  // A UBX binary frame (u-blox NAV-PVT header) interleaved without a line break, then an NMEA sentence.
  const ubx = Buffer.from([0xb5, 0x62, 0x01, 0x07, 0x5c, 0x00, 0x00, 0xff, 0x13, 0x0d]);
  const seq: Buffer[] = [];
  for (let i = 0; i < capture.length; i += 7) seq.push(capture.subarray(i, i + 7));
  seq.push(Buffer.from(corrupt, 'latin1'), Buffer.from(overlong, 'latin1'), Buffer.concat([ubx, Buffer.from(good, 'latin1')]));
  seq.push(Buffer.from(hpg, 'latin1'), Buffer.from(good, 'latin1'));
  for (const chunk of seq) pty.write(chunk);

  await out.waitFor(() => out.frames.length >= 25, '25 records');
  const s = drv.stats();
  assert.equal(s.recordsOut, 25, JSON.stringify(s));
  assert.equal(s.dropped_checksum, 1);
  assert.equal(s.dropped_overlong, 1);
  assert.equal(s.dropped_binary, 1);
  assert.equal(s.dropped_unsupported, 19);
  assert.equal(s.malformed, 3);
  const recs = out.records() as Array<{ type: string; lat: number | null }>;
  assert.deepEqual(
    recs.reduce<Record<string, number>>((a, r) => ((a[r.type] = (a[r.type] ?? 0) + 1), a), {}),
    { GGA: 10, RMC: 8, VTG: 7 },
  );
  assert.equal(recs.at(-2)!.lat, 47.2852332);
  // One clock: capture timestamps are monotonic µs, every record is a key frame.
  for (let i = 1; i < out.frames.length; i++) assert.ok(out.frames[i]!.frame.ts >= out.frames[i - 1]!.frame.ts);
  assert.ok(out.frames.every((f) => f.frame.key && f.track === 'gps'));
});

for (const signal of ['SIGTERM', 'SIGKILL'] as const)
test(`gps: the pty vanishes (socat ${signal}) and comes back → reopen with growing backoff, records resume`, async (t) => {
  const dir = await tmp(t);
  const dev = join(dir, 'gps');
  const feed = join(dir, 'feed');
  let pty = await startPtyPair(dev, feed);
  t.after(() => pty.kill());
  const drv = createGpsDriver({ kind: 'gps', path: dev, reopen: { initialMs: 20, maxMs: 400 } });
  const out = new RecordingOutput();
  const ac = new AbortController();
  const running = drv.run(out, ac.signal);
  t.after(async () => {
    ac.abort();
    await running;
  });
  const fix = '$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47\r\n';
  await out.waitFor(() => drv.stats().connected === true, 'port open');
  pty.write(fix);
  await out.waitFor(() => out.frames.length === 1, 'first record');

  await pty.kill(signal); // unplug (SIGKILL: no cleanup, the link dangles)
  await out.waitFor(() => drv.stats().connected === false, 'driver notices the unplug');
  // While the device is gone, opening fails (ENOENT) and the delay grows: no tight loop.
  await out.waitFor(() => Number(drv.stats().openFailures) >= 4, '4 failed reopen attempts', 10_000);
  const s = drv.stats();
  assert.match(String(s.lastError), /ENOENT|No such file|cannot open/i);
  assert.ok(Number(s.nextReopenMs) >= 80, `backoff grew: ${JSON.stringify(s)}`);

  pty = await startPtyPair(dev, feed); // replug
  await out.waitFor(() => drv.stats().connected === true, 'reopened after replug', 10_000);
  pty.write(fix);
  await out.waitFor(() => out.frames.length === 2, 'record after replug');
  assert.ok(Number(drv.stats().opens) >= 2);
  assert.ok(out.frames[1]!.frame.ts > out.frames[0]!.frame.ts);
});

test('gps: a silent port is reopened after idleReopenMs', async (t) => {
  const dir = await tmp(t);
  const pty = await startPtyPair(join(dir, 'gps'), join(dir, 'feed'));
  t.after(() => pty.kill());
  const drv = createGpsDriver({ kind: 'gps', path: pty.dev, idleReopenMs: 100, reopen: { initialMs: 20, maxMs: 100 } });
  const out = new RecordingOutput();
  const ac = new AbortController();
  const running = drv.run(out, ac.signal);
  t.after(async () => {
    ac.abort();
    await running;
  });
  await out.waitFor(() => Number(drv.stats().idleReopens) >= 1 && drv.stats().connected === true && Number(drv.stats().opens) >= 2, 'idle reopen');
  assert.match(String(drv.stats().lastError), /no data for 100 ms/);
});

test('line sensor: regex mode → JSON records with numbers; junk and binary counted', async (t) => {
  const dir = await tmp(t);
  const pty = await startPtyPair(join(dir, 'env'), join(dir, 'feed'));
  t.after(() => pty.kill());
  const drv = createLineSensorDriver({
    kind: 'serial-lines',
    path: pty.dev,
    baudRate: 115200,
    track: 'env',
    parse: { mode: 'regex', pattern: '^T=(?<temp>-?\\d+(?:\\.\\d+)?) H=(?<hum>\\d+) id=(?<id>\\w+)$' },
    maxLineBytes: 64,
  });
  assert.deepEqual(drv.describe(), [{ track: 'env', mime: 'application/json' }]);
  const out = new RecordingOutput();
  const ac = new AbortController();
  const running = drv.run(out, ac.signal);
  t.after(async () => {
    ac.abort();
    await running;
  });
  await out.waitFor(() => drv.stats().connected === true, 'port open');
  pty.write('T=21.5 H=40 id=a1\r\n');
  pty.write('garbage line\n');
  pty.write(Buffer.from([0x00, 0x01, 0xfe, 0x0a]));
  pty.write('x'.repeat(500) + '\n');
  pty.write('\n');
  pty.write('T=-3 H=99 id=007\n');
  await out.waitFor(() => out.frames.length === 2, '2 records');
  assert.deepEqual(out.records(), [
    { temp: 21.5, hum: 40, id: 'a1' },
    { temp: -3, hum: 99, id: 7 },
  ]);
  const s = drv.stats();
  assert.equal(s.dropped_regex, 1);
  assert.equal(s.dropped_binary, 1);
  assert.equal(s.dropped_overlong, 1);
  assert.equal(s.dropped_empty, 1);
  assert.equal(s.malformed, 3);
  assert.equal(s.ignored, 1);
});

test('line sensor: json and plain modes; abort returns promptly and releases the port', async (t) => {
  const dir = await tmp(t);
  const pty = await startPtyPair(join(dir, 'imu'), join(dir, 'feed'));
  t.after(() => pty.kill());
  const drv = createLineSensorDriver({ kind: 'serial-lines', path: pty.dev, parse: { mode: 'json' } });
  const out = new RecordingOutput();
  const ac = new AbortController();
  const running = drv.run(out, ac.signal);
  await out.waitFor(() => drv.stats().connected === true, 'port open');
  pty.write('{"ax":0.1,"ay":-9.8}\n{"ax":\n[1,2]\n');
  await out.waitFor(() => out.frames.length === 2, '2 records');
  assert.equal(drv.stats().dropped_json, 1);
  ac.abort();
  await running;
  assert.equal(drv.stats().connected, false);

  // The port is free again: a second driver (plain text) opens it.
  const plain = createLineSensorDriver({ kind: 'serial-lines', path: pty.dev, track: 'raw' });
  assert.equal(plain.describe()[0]!.mime, 'text/plain;charset=utf-8');
  const out2 = new RecordingOutput();
  const ac2 = new AbortController();
  const running2 = plain.run(out2, ac2.signal);
  await out2.waitFor(() => plain.stats().connected === true, 'second open');
  pty.write('hello sensor\r\n');
  await out2.waitFor(() => out2.frames.length === 1, 'plain record');
  assert.equal(out2.frames[0]!.frame.data.toString(), 'hello sensor');
  ac2.abort();
  await running2;
});

test('config: bad values are refused with the key path', () => {
  assert.throws(() => createGpsDriver({ kind: 'gps', path: 'ttyUSB0' }), /path/);
  assert.throws(() => createGpsDriver({ kind: 'gps', path: '/dev/ttyUSB0', baudRate: 9601 }), /baudRate/);
  assert.throws(() => createLineSensorDriver({ kind: 'serial-lines', path: '/dev/x', parse: { mode: 'regex', pattern: '(' } }), /pattern/);
  assert.throws(() => createLineSensorDriver({ kind: 'serial-lines', path: '/dev/x', maxLineBytes: 1 << 20 }), /maxLineBytes/);
});

test('config: unknown keys are refused (a typo must not be ignored)', () => {
  assert.throws(() => createGpsDriver({ kind: 'gps', path: '/dev/ttyUSB0', baudrate: 9600 } as never), /baudrate|Unrecognized/);
  assert.throws(() => createLineSensorDriver({ kind: 'serial-lines', path: '/dev/x', parse: { mode: 'json', pattern: 'x' } } as never), /pattern|Unrecognized/);
});
