// Fan-out: 20 subscribers of one 1080p30 track, one of them reading at 10 % speed. The others
// must receive every frame in order; the slow one loses whole GOP tails, within its ceiling.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Socket } from 'node:net';
import { WebSocket } from 'ws';
import { AnnexBSplitter } from '../../runtime/engine/h264.js';
import { collect, encodeH264, startApp, tempDir, waitFor } from '../support/app.js';

const FRAMES = 360; // 12 s at 30 fps
const CEILING = 1024 * 1024;

test('20 subscribers, one at 10 % speed: others get every frame in order, the slow one drops whole GOP tails within its ceiling', async (t) => {
  const { dir, cleanup } = tempDir();
  const app = await startApp({ engine: { consumerQueue: CEILING, memoryCeiling: '256MiB' }, channels: [] });
  t.after(async () => {
    await app.close();
    cleanup();
  });
  const stream = await encodeH264(dir, { width: 1920, height: 1080, fps: 30, frames: 90, gop: 30, bitrateKbps: 8000 });
  const sp = new AnnexBSplitter();
  const enc = [...sp.push(stream), ...sp.flush()];
  assert.equal(enc.length, 90);
  const encHex = new Map(enc.map((a, i) => [a.data.toString('base64'), i]));

  const base = `ws://127.0.0.1:${app.port}/pang/ws`;
  const url = `${base}/sub?channel=instant&name=fan&track=cam`;
  // Fast subscribers check each frame as it arrives (kept nothing, so RSS measures the server).
  const fast = Array.from({ length: 19 }, () => {
    const ws = new WebSocket(url);
    const st = { ws, n: 0, bad: -1, texts: 0, opened: new Promise((r) => ws.once('open', r)) };
    ws.on('message', (d: Buffer, bin: boolean) => {
      if (!bin) return void st.texts++;
      if (st.bad < 0 && !d.equals(enc[st.n % 90]!.data)) st.bad = st.n;
      st.n++;
    });
    return st;
  });
  const slow = collect(url);
  await Promise.all([...fast.map((c) => c.opened), slow.opened]);
  // 10 % speed: the slow viewer reads at a tenth of the track's byte rate (8 Mbit/s → 100 kB/s).
  const sock = (slow.ws as unknown as { _socket: Socket })._socket;
  let slowBytes = 0;
  let throttled = true;
  sock.on('data', (b: Buffer) => {
    slowBytes += b.length;
    if (throttled && slowBytes > allowed()) sock.pause();
  });
  const t0 = performance.now();
  const allowed = () => ((performance.now() - t0) / 1000) * 100_000;
  sock.pause();
  const duty = setInterval(() => {
    if (slowBytes < allowed()) sock.resume();
  }, 20);
  t.after(() => clearInterval(duty));

  const pub = new WebSocket(`${base}/pub?channel=instant&name=fan&track=cam`);
  await new Promise((r) => pub.once('open', r));
  pub.send('video/h264;width=1920;height=1080;framerate=30');
  let rssPeak = process.memoryUsage().rss;
  let sent = 0;
  await new Promise<void>((resolve) => {
    const start = performance.now();
    const tick = setInterval(() => {
      const due = Math.min(FRAMES, Math.floor((performance.now() - start) / (1000 / 30)) + 1);
      while (sent < due) pub.send(enc[sent++ % 90]!.data, { binary: true });
      rssPeak = Math.max(rssPeak, process.memoryUsage().rss);
      if (sent >= FRAMES) {
        clearInterval(tick);
        resolve();
      }
    }, 5);
  });
  await waitFor(() => fast.every((c) => c.n >= FRAMES), 30_000, 'every fast subscriber to get every frame');
  const bufferPeak = app.engine.budget.peak;
  for (const c of fast) {
    assert.equal(c.n, FRAMES);
    assert.equal(c.bad, -1, `frame ${c.bad} out of order or not whole`);
    assert.equal(c.texts, 1, 'the MIME');
  }
  // The slow subscriber's server-side queue: bounded, drops counted.
  const port = sock.localPort;
  const sess = app.pang.sessionList().find((s) => s.remote.endsWith(`:${port}`))!;
  assert.ok(sess, 'slow session found');
  const cs = sess.consumer!;
  t.diagnostic(`slow consumer: peak ${cs.peakBytes} B of ${cs.ceilingBytes}, drops ${JSON.stringify(cs.dropped)}, delivered ${cs.itemsOut}`);
  assert.ok(cs.peakBytes <= CEILING, 'queue never above its ceiling');
  const drops = Object.values(cs.dropped).reduce((a, b) => a + b, 0);
  assert.ok(drops > 0, 'the slow subscriber dropped frames, and they are counted');
  assert.ok(app.engine.stats().totals.dropped >= drops, 'drops visible in engine stats');
  // What the slow one got: whole access units; after every gap, a keyframe.
  clearInterval(duty);
  throttled = false;
  sock.resume();
  await waitFor(() => sess.consumer !== null && (app.pang.sessionList().find((s) => s.id === sess.id)?.consumer?.queuedItems ?? 0) === 0, 20_000, 'slow queue drained');
  let prev = -1;
  for (const b of slow.binaries) {
    const k = encHex.get(b.toString('base64'));
    assert.ok(k !== undefined, 'a whole access unit, byte-exact');
    if (prev >= 0 && k !== (prev + 1) % 90) assert.ok(enc[k]!.key, `after a gap (${prev} → ${k}) the stream resumes at a keyframe`);
    prev = k;
  }
  t.diagnostic(`rss peak ${(rssPeak / 1048576).toFixed(0)} MiB, engine buffer peak ${(bufferPeak / 1048576).toFixed(1)} MiB`);
  // 20 queues × 1 MiB ceiling + GOP cache: the engine's buffered bytes are bounded by design…
  assert.ok(bufferPeak <= 20 * CEILING + 4 * 1024 * 1024, `engine buffers bounded (${bufferPeak})`);
  // …and the whole process (server + 20 clients in one process) stays far below a Pi's memory.
  assert.ok(rssPeak < 300 * 1024 * 1024, `RSS bounded (${rssPeak})`);
  pub.close();
  for (const c of [...fast, slow]) c.ws.close();
});
