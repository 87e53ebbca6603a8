// RTSP driver against a real RTSP camera (GStreamer's gst-rtsp-server via python3-gi) over TCP and
// UDP with digest auth, with both clients (native: ours; ffmpeg: the fallback); a camera killed and
// restarted mid-stream → the track resumes at a keyframe and what a pang subscriber got decodes with
// ffprobe. Credentials never appear in stats, errors or (native) any process's argv.

import test from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createRtspDriver, rtspArgs, rtspDriverSchema, rtspUrlWithCredentials, validRtspUrl } from '../../drivers/camera/rtsp.js';
import { EdgeError, type Frame } from '../../runtime/engine/api.js';
import { Engine } from '../../runtime/engine/engine.js';
import { DriverSupervisor } from '../../runtime/supervisor.js';
import { silentLogger } from '../../runtime/log.js';
import { HttpServer } from '../../runtime/http/server.js';
import { PangServer } from '../../runtime/pang/server.js';
import WebSocket from 'ws';
import { startRtspCamera } from '../sim/rtsp-camera.js';
import { childPids, probe, recordingOutput, run, tempDir, waitFor } from './helpers.js';
import { nalUnits } from '../../runtime/engine/h264.js';

const USER = 'admin';
const PASS = 'p@ss:w0rd/#';

test('RTSP args: credentials percent-encoded into the URL, redaction list, no shell, URL validated', () => {
  const cfg = rtspDriverSchema.parse({ kind: 'rtsp', url: 'rtsp://cam.local:554/stream1', username: USER, password: PASS, transport: 'udp' });
  const t = rtspUrlWithCredentials(cfg);
  assert.equal(t.url, 'rtsp://admin:p%40ss%3Aw0rd%2F%23@cam.local:554/stream1');
  assert.equal(t.safeUrl, 'rtsp://cam.local:554/stream1');
  assert.ok(t.secrets.includes(PASS) && t.secrets.includes('p%40ss%3Aw0rd%2F%23'));
  const args = rtspArgs(cfg, t.url);
  assert.equal(args[args.indexOf('-rtsp_transport') + 1], 'udp');
  assert.equal(args[args.indexOf('-i') + 1], t.url);
  assert.equal(args[args.indexOf('-c:v') + 1], 'copy', 'no transcoding');
  assert.deepEqual(args.slice(-5), ['-flush_packets', '1', '-f', 'flv', 'pipe:1'], 'FLV out: frame ends are explicit');
  // inline credentials are kept and redacted the same way
  const inline = rtspUrlWithCredentials({ url: 'rtsp://u:secret@10.0.0.2/live' });
  assert.deepEqual(inline.secrets.includes('secret'), true);
  assert.equal(inline.safeUrl, 'rtsp://10.0.0.2/live');
  for (const bad of ['-i /etc/passwd', 'http://x/y', 'rtsp://', 'rtsp://host/a b', 'rtsp://h/\n-f', 'file:///dev/video0']) {
    assert.equal(validRtspUrl(bad), false, bad);
  }
  assert.throws(() => createRtspDriver({ kind: 'rtsp', url: 'rtsp://user:hunter2@/x y' }), (e: unknown) => e instanceof EdgeError && e.code === 'CONFIG_INVALID' && !e.message.includes('hunter2'));
});

for (const client of ['native', 'ffmpeg'] as const) {
  test(`RTSP (${client}) over TCP with digest auth: whole access units, keyframe first, MIME from SPS, decodable`, async (t) => {
    const dir = await tempDir(t, 'rtsp-');
    const cam = await startRtspCamera({ user: USER, password: PASS, auth: 'digest' });
    t.after(() => cam.stop());
    const drv = createRtspDriver({ kind: 'rtsp', client, url: cam.url, username: USER, password: PASS, transport: 'tcp', fps: 25 });
    const out = recordingOutput();
    const ac = new AbortController();
    const running = drv.run(out, ac.signal);
    await waitFor(() => out.frames.length >= 30, 15_000, '30 frames over RTSP/TCP');
    ac.abort();
    await running;
    assert.equal(out.frames[0]!.key, true, 'a run starts at a keyframe');
    assert.match(out.mimes.at(-1)!.mime, /^video\/h264;width=320;height=240;framerate=25;codecs=avc1\.42/);
    for (let i = 1; i < out.frames.length; i++) assert.ok(out.frames[i]!.ts >= out.frames[i - 1]!.ts);
    const file = join(dir, 'tcp.h264');
    await writeFile(file, Buffer.concat(out.frames.map((f) => f.data)));
    const p = await probe(file);
    assert.equal(p.frames, out.frames.length, 'every access unit decodes as one picture');
    assert.equal(p.width, 320);
    const st = drv.stats();
    assert.ok(typeof st.firstFrameMs === 'number');
    assert.ok(!JSON.stringify(st).includes(PASS) && !JSON.stringify(st).includes('p%40ss'), 'no password in stats');
    assert.deepEqual(await childPids(new RegExp(`127\\.0\\.0\\.1:${cam.port}/cam`)), [], 'ffmpeg is gone after abort');
  });

  test(`RTSP (${client}) over UDP with digest auth pulls the same stream`, async (t) => {
    const cam = await startRtspCamera({ user: USER, password: PASS, auth: 'digest', transport: 'udp' });
    t.after(() => cam.stop());
    const drv = createRtspDriver({ kind: 'rtsp', client, url: cam.url.replace('rtsp://', `rtsp://${USER}:${encodeURIComponent(PASS)}@`), transport: 'udp' });
    const out = recordingOutput();
    const ac = new AbortController();
    const running = drv.run(out, ac.signal);
    await waitFor(() => out.frames.length >= 20, 15_000, '20 frames over RTSP/UDP');
    ac.abort();
    await running;
    assert.equal(out.frames[0]!.key, true);
    assert.equal(drv.stats().transport, 'udp');
    assert.equal(drv.stats().client, client);
    if (client === 'native') {
      assert.equal(drv.stats().authMethod, 'digest');
      assert.equal(drv.stats().rtpTransport, 'udp', 'the camera agreed to RTP over our UDP port pair');
      assert.ok(Number(drv.stats().rtcpPackets) >= 0 && Number(drv.stats().rtpForeign) === 0);
    }
  });

  test(`RTSP (${client}): a wrong password fails with RTSP_AUTH_FAILED, without the password`, async (t) => {
    const cam = await startRtspCamera({ user: USER, password: PASS, auth: 'digest' });
    t.after(() => cam.stop());
    const wrong = 'not-the-pass!';
    const drv = createRtspDriver({ kind: 'rtsp', client, url: cam.url, username: USER, password: wrong });
    const ac = new AbortController();
    await assert.rejects(drv.run(recordingOutput(), ac.signal), (e: unknown) => {
      assert.ok(e instanceof EdgeError);
      assert.equal(e.code, 'RTSP_AUTH_FAILED');
      assert.match(e.message, /401/);
      assert.ok(!e.message.includes(wrong) && !e.message.includes(encodeURIComponent(wrong)), e.message);
      return true;
    });
    assert.ok(!JSON.stringify(drv.stats()).includes(wrong));
  });

  test(`RTSP (${client}): camera killed and restarted mid-stream → reconnect, the track resumes at a keyframe, a pang subscriber decodes all`, async (t) => {
    const dir = await tempDir(t, 'rtsp-reconnect-');
    let cam = await startRtspCamera({ user: USER, password: PASS });
    const port = cam.port;
    t.after(() => cam.stop());
    const engine = new Engine({ memoryCeilingBytes: 64 << 20, consumerQueueBytes: 16 << 20, gopCacheBytes: 4 << 20, trackLingerMs: 30_000, instantChannelTtlMs: 3_600_000, maxInstantChannels: 4 });
    t.after(() => engine.close());
    const CHAN = 'c0a1b2c3d4e5f6g7h8i9';
    engine.addStaticChannel({ id: CHAN });
    const pang = new PangServer(engine, { maxMessageBytes: 8 << 20, log: silentLogger() });
    const http = new HttpServer({ host: '127.0.0.1', port: 0, maxConnections: 16 });
    pang.registerRoutes(http.router);
    http.onUpgrade('/pang/ws', (req, socket, head) => pang.handleUpgrade(req, socket, head));
    const { port: httpPort } = await http.listen();
    t.after(async () => {
      await pang.close();
      await http.close();
    });
    const drv = createRtspDriver({ kind: 'rtsp', client, url: cam.url, username: USER, password: PASS, stallTimeoutMs: 1500 });
    const sup = new DriverSupervisor('front', drv, engine, CHAN, 'base', { restartInitialMs: 100, restartMaxMs: 500, healthyAfterMs: 5000, log: silentLogger(), random: () => 0 });
    const consumer = engine.subscribe({ channel: CHAN, source: 'base', track: 'video' }, { label: 'test-sub' });
    // a real pang subscriber over WebSocket, as a viewer would connect
    const ws = new WebSocket(`ws://127.0.0.1:${httpPort}/pang/ws/sub?channel=${CHAN}&source=base&track=video`);
    t.after(() => ws.terminate());
    const pangGot: Buffer[] = [];
    const pangTexts: string[] = [];
    ws.on('message', (d, binary) => (binary ? pangGot.push(d as Buffer) : pangTexts.push(String(d))));
    await new Promise((r, j) => (ws.once('open', r), ws.once('error', j)));
    const got: Frame[] = [];
    const runOf: number[] = []; // which driver run delivered each frame (delivery is synchronous with the write)
    const drain = () => {
      for (let it = consumer.next(); it; it = consumer.next()) {
        if (it.type !== 'frame') continue;
        got.push(it.frame);
        runOf.push(Number(drv.stats().starts));
      }
    };
    consumer.onReadable(drain);
    sup.start();
    t.after(() => sup.close());

    await waitFor(() => got.length >= 25, 15_000, 'frames before the cut');
    await cam.kill();
    await waitFor(() => drv.stats().running === false || Number(drv.stats().starts) >= 2, 10_000, 'the driver notices the cut');
    cam = await startRtspCamera({ user: USER, password: PASS, port });
    await waitFor(() => runOf.filter((r) => r > runOf[0]!).length >= 25, 20_000, 'frames after the camera came back');
    await waitFor(() => pangGot.length >= got.length - 2, 10_000, 'the pang subscriber caught up');
    await sup.close();
    drain();
    const beforeCut = runOf.findIndex((r) => r > runOf[0]!);

    const st = sup.stats();
    assert.ok(st.restarts >= 1, `restarts: ${st.restarts}`);
    assert.match(String(st.lastErrorCode), /^RTSP_(STREAM_ENDED|CONNECT_FAILED)$|^STALLED$/);
    assert.equal(got[0]!.key, true);
    assert.equal(got[beforeCut]!.key, true, 'the track resumes at a keyframe after the reconnect');
    assert.ok(got[beforeCut]!.ts > got[beforeCut - 1]!.ts);
    // Each run decodes whole. The last access unit before the cut may be one the camera died in the
    // middle of (ffmpeg flushes its partial frame at EOF): it is excluded from the exact count.
    const run1 = join(dir, 'run1.h264');
    const run2 = join(dir, 'run2.h264');
    await writeFile(run1, Buffer.concat(got.slice(0, beforeCut - 1).map((f) => f.data)));
    await writeFile(run2, Buffer.concat(got.slice(beforeCut).map((f) => f.data)));
    assert.equal((await probe(run1)).frames, beforeCut - 1, 'the first run decodes');
    assert.equal((await probe(run2)).frames, got.length - beforeCut, 'the run after the reconnect decodes, from its first frame');
    const file = join(dir, 'sub.h264');
    await writeFile(file, Buffer.concat(got.map((f) => f.data)));
    const p = await probe(file);
    assert.ok(p.frames >= got.length - 1, `the whole track decodes across the cut: ${p.frames} of ${got.length}`);
    assert.match(pangTexts[0] ?? '', /^video\/h264/, 'the pang subscriber got a MIME first');
    assert.ok(pangTexts.some((m) => /^video\/h264;width=320;height=240/.test(m)), `the MIME with the size from the SPS followed: ${pangTexts.join(' | ')}`);
    const pangFile = join(dir, 'pang.h264');
    await writeFile(pangFile, Buffer.concat(pangGot));
    const pp = await probe(pangFile);
    assert.ok(pp.frames >= pangGot.length - 1, `what the pang subscriber got decodes: ${pp.frames} of ${pangGot.length}`);
    assert.equal(pp.width, 320);
    assert.deepEqual(await childPids(new RegExp(`127\\.0\\.0\\.1:${port}/cam`)), [], 'no orphan ffmpeg');
  });
}

test('RTSP native: no child process, and the password is in no process\'s argv while it streams', async (t) => {
  const cam = await startRtspCamera({ user: USER, password: PASS, auth: 'digest' });
  t.after(() => cam.stop());
  const drv = createRtspDriver({ kind: 'rtsp', url: cam.url, username: USER, password: PASS });
  assert.equal(drv.client, 'native', 'native is the default');
  const out = recordingOutput();
  const ac = new AbortController();
  const running = drv.run(out, ac.signal);
  t.after(() => ac.abort());
  await waitFor(() => out.frames.length >= 10, 15_000, 'frames over the native client');
  const { stdout: all } = await run('ps', ['-eo', 'args', '--no-headers']);
  // the simulated camera itself is given the password on its command line; nothing else may have it
  const stdout = all.split('\n').filter((l) => !l.includes('rtsp-server.py')).join('\n');
  assert.ok(!stdout.includes(PASS) && !stdout.includes(encodeURIComponent(PASS)), 'the password is in no command line');
  assert.deepEqual(await childPids(new RegExp(`127\\.0\\.0\\.1:${cam.port}`)), [], 'no ffmpeg (or any child) pulls the camera');
  ac.abort();
  await running;
  const st = drv.stats();
  assert.equal(st.teardowns, 1, 'TEARDOWN sent on stop');
  assert.equal(st.running, false);
});

test('RTSP native: a 2 s session timeout → a keepalive every second, each answered, one session throughout', async (t) => {
  // (gst-rtsp-server itself keeps a streaming session alive without them; real cameras do not)
  const cam = await startRtspCamera({ sessionTimeoutS: 2, transport: 'udp' });
  t.after(() => cam.stop());
  const drv = createRtspDriver({ kind: 'rtsp', url: cam.url, stallTimeoutMs: 1500, transport: 'udp' });
  const out = recordingOutput();
  const ac = new AbortController();
  let ended: unknown = null;
  const running = drv.run(out, ac.signal).catch((e) => (ended = e));
  t.after(() => ac.abort());
  // a keepalive every timeout/2 = 1 s: three of them span more than one session timeout
  await waitFor(() => Number(drv.stats().keepalives) >= 3 || ended !== null, 15_000, 'three keepalives');
  const n = out.frames.length;
  await waitFor(() => out.frames.length >= n + 25 || ended !== null, 10_000, 'frames keep coming after the session timeout');
  assert.equal(ended, null, `the session was not dropped: ${String(ended)}`);
  assert.equal(drv.stats().keepaliveFailures, 0);
  assert.equal(drv.stats().starts, 1, 'one session throughout');
  ac.abort();
  await running;
});

test('RTSP native: a camera that sends SPS/PPS only in the SDP → they go in front of every IDR; decodable from any keyframe', async (t) => {
  const dir = await tempDir(t, 'rtsp-sprop-');
  const cam = await startRtspCamera({ configInterval: 0, gop: 10, user: USER, password: PASS, auth: 'basic' });
  t.after(() => cam.stop());
  const drv = createRtspDriver({ kind: 'rtsp', url: cam.url, username: USER, password: PASS });
  const out = recordingOutput();
  const ac = new AbortController();
  const running = drv.run(out, ac.signal);
  t.after(() => ac.abort());
  await waitFor(() => out.frames.filter((f) => f.key).length >= 3, 15_000, 'three keyframes');
  ac.abort();
  await running;
  const st = drv.stats();
  assert.equal(st.authMethod, 'basic');
  assert.ok(Number(st.paramSetsInserted) >= 3, `parameter sets inserted: ${st.paramSetsInserted}`);
  const keys = out.frames.map((f, i) => (f.key ? i : -1)).filter((i) => i >= 0);
  for (const k of keys) {
    const types = nalUnits(out.frames[k]!.data).map((n) => n[0]! & 0x1f);
    assert.ok(types.includes(7) && types.includes(8), `keyframe ${k}: ${types}`);
  }
  // start at the second keyframe, as a late subscriber does
  const from = keys[1]!;
  const file = join(dir, 'late.h264');
  await writeFile(file, Buffer.concat(out.frames.slice(from).map((f) => f.data)));
  assert.equal((await probe(file)).frames, out.frames.length - from);
});

test('RTSP: rtsps:// runs on the ffmpeg client (the native one speaks no TLS)', () => {
  assert.equal(createRtspDriver({ kind: 'rtsp', url: 'rtsps://cam.local/s1' }).client, 'ffmpeg');
  assert.equal(createRtspDriver({ kind: 'rtsp', url: 'rtsp://cam.local/s1', client: 'ffmpeg' }).client, 'ffmpeg');
  assert.equal(createRtspDriver({ kind: 'rtsp', url: 'rtsp://cam.local/s1' }).stats().client, 'native');
});
