// RTMP ingest against the real ffmpeg as the publisher: the right key makes a track whose access
// units ffprobe decodes; a wrong key is refused (ffmpeg fails, no track, the key never logged).

import test from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createConnection } from 'node:net';
import { createRtmpIngest, type IngestTrackWriter } from '../../drivers/ingest/rtmp/ingest.js';
import type { Frame, TrackRef } from '../../runtime/engine/api.js';

const KEY = 'robot-cam-7f3a9c';

interface Collected {
  ref: TrackRef;
  mimes: string[];
  frames: Frame[];
  closed: boolean;
}

function collector(): { open: (ref: TrackRef) => IngestTrackWriter; tracks: Collected[] } {
  const tracks: Collected[] = [];
  return {
    tracks,
    open: (ref) => {
      const c: Collected = { ref, mimes: [], frames: [], closed: false };
      tracks.push(c);
      return {
        setMime: (m) => c.mimes.push(m),
        write: (f) => c.frames.push(f),
        close: () => {
          c.closed = true;
        },
      };
    },
  };
}

function runFfmpeg(args: string[], timeoutMs: number): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn('ffmpeg', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    p.stderr.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-8000);
    });
    const timer = setTimeout(() => {
      p.kill('SIGKILL');
      reject(new Error(`ffmpeg did not finish in ${timeoutMs} ms: ${stderr}`));
    }, timeoutMs);
    p.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    });
  });
}

function publishArgs(url: string, extra: string[] = []): string[] {
  return [
    '-hide_banner', '-loglevel', 'error', '-nostdin', '-re',
    '-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=25', '-t', '2',
    '-c:v', 'libx264', '-preset', 'ultrafast', '-g', '25', '-pix_fmt', 'yuv420p',
    ...extra, '-f', 'flv', url,
  ];
}

test('RTMP ingest: ffmpeg publishes H.264 with the right key; ffprobe decodes what came out', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'rtmp-ingest-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const sink = collector();
  const logs: string[] = [];
  const log = { info: (c: object, m: string) => logs.push(JSON.stringify(c) + m), warn: (c: object, m: string) => logs.push(JSON.stringify(c) + m) };
  const ingest = createRtmpIngest(
    { host: '127.0.0.1', port: 0, streams: [{ app: 'live', key: KEY, channel: 'robot', track: 'front' }] },
    { openPublisher: (ref) => sink.open(ref), log },
  );
  t.after(() => ingest.close());
  const { port } = await ingest.ready;

  // -output_ts_offset puts the stream across 0xFFFFFF ms: extended timestamps on the wire.
  const res = await runFfmpeg(publishArgs(`rtmp://127.0.0.1:${port}/live/${KEY}`, ['-output_ts_offset', '16776']), 30_000);
  assert.equal(res.code, 0, res.stderr);
  await waitFor(() => sink.tracks[0]?.closed === true, 5000, 'publisher closed after ffmpeg ended');

  assert.equal(sink.tracks.length, 1);
  const tr = sink.tracks[0]!;
  assert.deepEqual(tr.ref, { channel: 'robot', source: 'base', track: 'front' });
  assert.match(tr.mimes.at(-1)!, /^video\/h264;width=320;height=240;framerate=25;codecs=avc1\.[0-9A-F]{6}$/);
  assert.ok(tr.frames.length >= 48 && tr.frames.length <= 50, `frames: ${tr.frames.length}`);
  assert.equal(tr.frames[0]!.key, true);
  assert.equal(tr.frames.filter((f) => f.key).length, 2);
  for (let i = 1; i < tr.frames.length; i++) assert.ok(tr.frames[i]!.ts >= tr.frames[i - 1]!.ts, 'capture timestamps do not go back');
  const spanMs = (tr.frames.at(-1)!.ts - tr.frames[0]!.ts) / 1000;
  assert.ok(spanMs > 1500 && spanMs < 2500, `timestamps follow the encoder's clock across the 24-bit wrap: ${spanMs} ms`);

  const file = join(dir, 'out.h264');
  await writeFile(file, Buffer.concat(tr.frames.map((f) => f.data)));
  const probe = execFileSync('ffprobe', ['-v', 'error', '-count_frames', '-select_streams', 'v:0', '-show_entries', 'stream=width,height,nb_read_frames', '-of', 'json', file], { encoding: 'utf8' });
  const s = (JSON.parse(probe) as { streams: Array<{ width: number; height: number; nb_read_frames: string }> }).streams[0]!;
  assert.equal(s.width, 320);
  assert.equal(s.height, 240);
  assert.equal(Number(s.nb_read_frames), tr.frames.length);

  const st = ingest.stats();
  assert.equal(st.publishes, 1);
  assert.equal(st.frames, tr.frames.length);
  assert.equal(st.refusedKey, 0);
  assert.ok(!logs.join('\n').includes(KEY), 'the stream key is never logged');
});

test('RTMP ingest: a wrong key is refused, no track is opened, the key is not logged', async (t) => {
  const sink = collector();
  const logs: string[] = [];
  const log = { info: (c: object, m: string) => logs.push(JSON.stringify(c) + m), warn: (c: object, m: string) => logs.push(JSON.stringify(c) + m) };
  const ingest = createRtmpIngest({ host: '127.0.0.1', port: 0, streams: [{ app: 'live', key: KEY, channel: 'robot' }] }, { openPublisher: (ref) => sink.open(ref), log });
  t.after(() => ingest.close());
  const { port } = await ingest.ready;
  const res = await runFfmpeg(publishArgs(`rtmp://127.0.0.1:${port}/live/wrong-key-123`), 30_000);
  assert.notEqual(res.code, 0, 'ffmpeg must fail to publish');
  const wrongApp = await runFfmpeg(publishArgs(`rtmp://127.0.0.1:${port}/other/${KEY}`), 30_000);
  assert.notEqual(wrongApp.code, 0, 'the right key under another app is refused too');
  assert.equal(sink.tracks.length, 0);
  assert.equal(ingest.stats().refusedKey, 2);
  const all = logs.join('\n');
  assert.ok(!all.includes('wrong-key-123') && !all.includes(KEY));
});

test('RTMP ingest: garbage and silent peers are cut; connections are bounded; close is idempotent', async (t) => {
  const ingest = createRtmpIngest(
    { host: '127.0.0.1', port: 0, maxConnections: 2, handshakeTimeoutMs: 500, idleTimeoutMs: 1000, streams: [{ app: 'live', key: KEY, channel: 'robot' }] },
    { openPublisher: () => assert.fail('no publish expected') },
  );
  t.after(() => ingest.close());
  const { port } = await ingest.ready;
  // an HTTP request is not RTMP: closed at once
  await new Promise<void>((resolve, reject) => {
    const s = createConnection({ host: '127.0.0.1', port }, () => s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    s.on('error', reject);
    s.on('close', () => resolve());
    s.resume();
  });
  // two silent sockets fill the limit, a third is refused, the silent ones time out
  const silent = [0, 1].map(() => createConnection({ host: '127.0.0.1', port }));
  await Promise.all(silent.map((s) => new Promise((r) => s.once('connect', r))));
  await waitFor(() => ingest.stats().connectionsActive === 2, 2000, 'two connections active');
  const third = createConnection({ host: '127.0.0.1', port });
  await new Promise((r) => third.once('close', r));
  await Promise.all(silent.map((s) => new Promise((r) => s.once('close', r))));
  const st = ingest.stats();
  assert.equal(st.protocolErrors, 1);
  assert.equal(st.refusedConnections, 1);
  assert.equal(st.timeouts, 2);
  await ingest.close();
  await ingest.close();
});

async function waitFor(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
