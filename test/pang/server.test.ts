import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { chmodSync } from 'node:fs';
import { WebSocket } from 'ws';
import { nalUnits } from '../../runtime/engine/h264.js';
import type { App } from '../../runtime/app.js';
import { closeCodeOf, collect, encodeH264, ffprobe, startApp, tempDir, waitFor, writeFile } from '../support/app.js';

const CH = 'm0thedge000000000000';
const KEYED = 'c0ffee00000000000000';

describe('local pang server against the real runtime', () => {
  let app: App;
  let base: string;
  let h264: Buffer[];
  const tmp = tempDir();

  before(async () => {
    app = await startApp({
      engine: { trackLingerSeconds: 0.3 },
      server: { maxMessageBytes: '256KiB' },
      channels: [
        {
          id: CH,
          name: 'robot',
          sources: [
            { name: 'base', driver: { kind: 'testpattern', width: 640, height: 360, fps: 30 } },
            { name: 'base', driver: { kind: 'simulated', track: 'imu', rateHz: 100 } },
          ],
        },
        { id: KEYED, name: 'secret', key: 'sesame-key' },
      ],
    });
    base = `ws://127.0.0.1:${app.port}/pang/ws`;
    const stream = await encodeH264(tmp.dir, { width: 320, height: 240, fps: 30, frames: 30, gop: 10 });
    const { AnnexBSplitter } = await import('../../runtime/engine/h264.js');
    const s = new AnnexBSplitter();
    h264 = [...s.push(stream), ...s.flush()].map((a) => a.data);
  });
  after(async () => {
    await app.close();
    tmp.cleanup();
  });

  test('a subscriber of the test pattern gets the MIME first, then H.264 that ffprobe decodes at the configured size', async () => {
    const c = collect(`${base}/sub?channel=${CH}`);
    await waitFor(() => c.binaries.length >= 60, 20_000, '60 video frames');
    c.ws.close();
    assert.equal(c.order[0], 't', 'MIME text first');
    // A subscriber that joins before the camera's first frame gets the driver's preliminary MIME,
    // then the SPS-derived one in-band: the MIME in effect at the first frame is the complete one.
    const textsBeforeFirstFrame = c.order.indexOf('b');
    assert.match(c.texts[textsBeforeFirstFrame - 1]!, /^video\/h264;width=640;height=360;framerate=30;codecs=avc1\.[0-9A-F]{6}$/);
    for (const t of c.texts) assert.match(t, /^video\/h264(;|$)/, 'every text is a MIME');
    const frames = c.binaries.slice(0, 60);
    assert.ok(nalUnits(frames[0]!).some((n) => (n[0]! & 0x1f) === 7), 'starts at a keyframe with SPS');
    const file = writeFile(tmp.dir, 'sub.h264', Buffer.concat(frames));
    const p = await ffprobe(file);
    assert.deepEqual({ codec: p.codec, width: p.width, height: p.height, frames: p.frames }, { codec: 'h264', width: 640, height: 360, frames: 60 });
    assert.equal(p.errors, '', 'no decode errors');
  });

  test('the simulated sensor track carries one JSON record per message, in order', async () => {
    const c = collect(`${base}/sub?channel=robot&track=imu`);
    await waitFor(() => c.binaries.length >= 20, 10_000, '20 imu records');
    c.ws.close();
    assert.equal(c.texts[0], 'application/json');
    const seqs = c.binaries.map((b) => (JSON.parse(b.toString()) as { seq: number }).seq);
    for (let i = 1; i < seqs.length; i++) assert.equal(seqs[i], seqs[i - 1]! + 1, 'no gap, no reorder');
  });

  test('Moth client conventions: MIME then binaries, relayed to a subscriber byte for byte', async () => {
    const sub = collect(`${base}/sub?channel=instant&name=relay&track=cam`);
    await sub.opened;
    const pub = new WebSocket(`${base}/pub?channel=instant&name=relay&track=cam`);
    await new Promise((r) => pub.once('open', r));
    const mime = 'video/h264;width=320;height=240;framerate=30;codecs=avc1.42C00D';
    const sent: Array<string | Buffer> = [mime];
    pub.send(mime);
    h264.forEach((au, i) => {
      if (i === 15) {
        pub.send(mime); // re-sent about once a second, as Moth publishers do
        sent.push(mime);
      }
      pub.send(au, { binary: true });
      sent.push(au);
    });
    await waitFor(() => sub.binaries.length === h264.length, 10_000, 'every relayed frame');
    pub.close();
    let bi = 0;
    let ti = 0;
    assert.equal(sub.order.length, sent.length);
    sent.forEach((m, i) => {
      if (typeof m === 'string') {
        assert.equal(sub.order[i], 't');
        assert.equal(sub.texts[ti++], m);
      } else {
        assert.equal(sub.order[i], 'b');
        assert.ok(sub.binaries[bi++]!.equals(m), `frame ${bi} identical`);
      }
    });
    // When the publisher leaves, the subscriber is told after the linger time.
    const closed = await sub.closed;
    assert.equal(closed.code, 4404);
    assert.equal(closed.reason, 'publisher gone');
  });

  test('a late subscriber starts at the cached keyframe, with the MIME first', async () => {
    const pub = new WebSocket(`${base}/pub?channel=instant&name=late&mime=video/h264`);
    await new Promise((r) => pub.once('open', r));
    for (const au of h264.slice(0, 14)) pub.send(au, { binary: true }); // keyframes at 0 and 10
    await waitFor(() => (app.engine.stats().channels.find((c) => c.name === 'late')?.tracks[0]?.framesIn ?? 0) === 14, 5000, 'frames in');
    const sub = collect(`${base}/sub?channel=instant&name=late`);
    await waitFor(() => sub.binaries.length === 4, 5000, 'GOP cache');
    assert.equal(sub.texts[0], 'video/h264');
    assert.ok(sub.binaries[0]!.equals(h264[10]!));
    sub.ws.close();
    pub.close();
  });

  test('refusals carry 44xx codes and reasons', async () => {
    assert.deepEqual(await closeCodeOf(`${base}/sub?channel=nosuchchannel0000000`), { code: 4404, reason: 'unknown channel' });
    assert.equal((await closeCodeOf(`${base}/sub?channel=${KEYED}`)).code, 4401);
    assert.deepEqual(await closeCodeOf(`${base}/sub?channel=${KEYED}&key=wrong`), { code: 4401, reason: 'wrong key' });
    assert.equal((await closeCodeOf(`${base}/sub?channel=${CH}&codec=av1`)).code, 4400);
    assert.equal((await closeCodeOf(`${base}/sub`)).code, 4400);
    assert.equal((await closeCodeOf(`${base}/bogus?channel=${CH}`)).code, 4400);
    // The camera's track is held by its driver: a second (mono) publisher is refused.
    assert.deepEqual(await closeCodeOf(`${base}/pub?channel=${CH}`), { code: 4409, reason: 'track already published' });
    // The right key works.
    const ok = collect(`${base}/sub?channel=${KEYED}&key=sesame-key&track=t`);
    await ok.opened;
    ok.ws.close();
    assert.ok((app.pang.stats().refused['4401'] ?? 0) >= 2, 'refusals counted in stats');
  });

  test('oversized message closes with 1009; the server keeps serving', async () => {
    const pub = new WebSocket(`${base}/pub?channel=instant&name=big&mime=application/octet-stream`);
    await new Promise((r) => pub.once('open', r));
    const closed = new Promise<number>((r) => pub.once('close', (code) => r(code)));
    pub.send(Buffer.alloc(300 * 1024), { binary: true });
    assert.equal(await closed, 1009);
    const c = collect(`${base}/sub?channel=${CH}&track=imu`);
    await waitFor(() => c.binaries.length > 0, 5000, 'still serving');
    c.ws.close();
  });

  test('a plain HTTP request to a ws path gets 426 with a JSON reason', async () => {
    const r = await fetch(`http://127.0.0.1:${app.port}/pang/ws/sub?channel=${CH}`);
    assert.equal(r.status, 426);
    const body = (await r.json()) as { error: { code: string } };
    assert.equal(body.error.code, 'UPGRADE_REQUIRED');
  });

  test('a binary before any MIME is relayed (nothing lost) and counted', async () => {
    const sub = collect(`${base}/sub?channel=instant&name=nomime&track=raw`);
    await sub.opened;
    const pub = new WebSocket(`${base}/pub?channel=instant&name=nomime&track=raw`);
    await new Promise((r) => pub.once('open', r));
    pub.send(Buffer.from('early'), { binary: true });
    pub.send('text/plain');
    pub.send(Buffer.from('later'), { binary: true });
    await waitFor(() => sub.binaries.length === 2, 5000, 'both binaries');
    assert.deepEqual(sub.binaries.map(String), ['early', 'later']);
    const t = app.engine.findTrack({ channel: app.engine.instantChannel('nomime', undefined).id, source: 'base', track: 'raw' })!;
    assert.equal(t.framesBeforeMime, 1);
    pub.close();
    sub.ws.close();
  });

  test('ctl: ping/pong, info, set_channel key, show/close session; garbage gets an error and the session stays', async () => {
    const ctl = collect(`${base}/ctl?channel=instant&name=ctltest`);
    await ctl.opened;
    const req = (o: unknown) => ctl.ws.send(typeof o === 'string' ? o : JSON.stringify(o));
    const replies = () => ctl.texts.map((t) => JSON.parse(t) as { type: string; data: string; req_id?: string });
    req('{garbage');
    await waitFor(() => ctl.texts.length === 1, 3000, 'error reply');
    assert.equal(replies()[0]!.type, 'error');
    req({ type: 'ping', data: '', req_id: 'r1' });
    await waitFor(() => ctl.texts.length === 2, 3000, 'pong');
    assert.equal(replies()[1]!.type, 'pong');
    assert.equal(replies()[1]!.req_id, 'r1');
    const viewer = collect(`${base}/sub?channel=instant&name=ctltest&track=x`);
    await viewer.opened;
    req({ type: 'show_session', data: '{}' });
    await waitFor(() => ctl.texts.length === 3, 3000, 'show_session');
    const sessions = (JSON.parse(replies()[2]!.data) as { sessions: Array<{ id: string; role: string }> }).sessions;
    const subSession = sessions.find((s) => s.role === 'sub')!;
    assert.ok(subSession);
    req({ type: 'close_session', data: JSON.stringify({ id: subSession.id }) });
    assert.equal((await viewer.closed).code, 4410);
    req({ type: 'set_channel', data: JSON.stringify({ key: 'newkey' }) });
    await waitFor(() => ctl.texts.length === 5, 3000, 'set_channel');
    assert.equal(JSON.parse(replies()[4]!.data).hasKey, true);
    assert.equal((await closeCodeOf(`${base}/sub?channel=instant&name=ctltest`)).code, 4401);
    req({ type: 'info_channel', data: '' });
    await waitFor(() => ctl.texts.length === 6, 3000, 'info_channel');
    assert.equal(replies()[5]!.type, 'info_channel');
    req({ type: 'info_track', data: JSON.stringify({ track: 'nope' }) });
    await waitFor(() => ctl.texts.length === 7, 3000, 'info_track error');
    assert.equal(replies()[6]!.type, 'error');
    assert.equal(ctl.ws.readyState, WebSocket.OPEN, 'ctl session still open after errors');
    ctl.ws.close();
  });

  test('meb: every participant gets everyone else\'s messages, never its own', async () => {
    const url = `${base}/meb?channel=instant&name=meb&track=chat`;
    const ps = [collect(url), collect(url), collect(url)];
    await Promise.all(ps.map((p) => p.opened));
    ps.forEach((p, i) => p.ws.send(`hello from ${i}`));
    await waitFor(() => ps.every((p) => p.texts.length === 2), 5000, 'two messages each');
    ps.forEach((p, i) => {
      assert.ok(!p.texts.includes(`hello from ${i}`), 'no echo');
      assert.equal(p.texts.length, 2);
    });
    ps.forEach((p) => p.ws.close());
  });

  test('an idle publisher is closed after its timeout (4408)', async () => {
    const r = await closeCodeOf(`${base}/pub?channel=instant&name=idle&timeout=1`, 5000);
    assert.equal(r.code, 4408);
  });

  test('stats, metrics and healthz describe the tracks', async () => {
    const s = (await (await fetch(`http://127.0.0.1:${app.port}/api/stats`)).json()) as {
      engine: { channels: Array<{ id: string; tracks: Array<{ track: string; fps: number; framesIn: number }> }>; memory: { ceilingBytes: number } };
      drivers: Array<{ state: string; ready: boolean }>;
      board: { engineBudgetMb: number };
      thermal: { tracks: number; level: number };
    };
    assert.equal(s.thermal.tracks, 1, 'the thermal governor watches the one encoding camera (the test pattern)');
    assert.equal(s.engine.memory.ceilingBytes, s.board.engineBudgetMb * 1024 * 1024, 'memoryCeiling "auto" takes the board profile budget');
    const robot = s.engine.channels.find((c) => c.id === CH)!;
    assert.ok(robot.tracks.find((t) => t.track === 'video')!.framesIn > 0);
    assert.ok(s.drivers.every((d) => d.ready));
    const m = await (await fetch(`http://127.0.0.1:${app.port}/metrics`)).text();
    assert.match(m, /moth_edge_track_frames_total\{channel="m0thedge000000000000",source="base",track="video"\} \d+/);
    assert.match(m, /moth_edge_pang_refused_total\{code="4401"\}/);
    const h = await fetch(`http://127.0.0.1:${app.port}/healthz`);
    assert.equal(h.status, 200);
  });
});

describe('driver supervision', () => {
  test('an ffmpeg that exits at once: the error shows its stderr, restarts back off', async (t) => {
    const { dir, cleanup } = tempDir();
    const fake = writeFile(dir, 'ffmpeg', '#!/bin/sh\necho "fake-ffmpeg: /dev/video9: No such device" >&2\nexit 1\n');
    chmodSync(fake, 0o755);
    const app = await startApp({
      ffmpeg: { path: fake },
      // An ffmpeg that exits at once is a device away (fast ladder), not a refusal: cap both.
      supervisor: { restartInitialMs: 50, restartMaxMs: 400, awayInitialMs: 50, awayMaxMs: 400 },
      channels: [{ id: CH, sources: [{ name: 'base', driver: { kind: 'testpattern' } }] }],
    });
    t.after(async () => {
      await app.close();
      cleanup();
    });
    await waitFor(() => app.supervisors[0]!.stats().failures >= 4, 10_000, '4 failures');
    const st = app.supervisors[0]!.stats();
    assert.match(st.lastError ?? '', /No such device/);
    assert.equal(st.lastErrorCode, 'PROCESS_EXITED');
    assert.ok(st.lastDelayMs <= 400, 'capped');
    assert.ok(st.retries.network >= 4 && st.retries.refused === 0, `on the device-away ladder (${JSON.stringify(st.retries)})`);
    assert.equal(st.ready, false);
    const h = await fetch(`http://127.0.0.1:${app.port}/healthz`);
    assert.equal(h.status, 503, 'health says degraded');
  });
});
