// RTSP over UDP binds its RTP/RTCP pair inside a configured range (rtpPortRange), so a robot behind
// a firewall opens exactly that range. Against the real GStreamer RTSP server over UDP: the frames
// arrive on a pair inside the range, the kernel shows our sockets there, and a range with every
// pair taken fails with a typed error that names the range.
import assert from 'node:assert/strict';
import { createSocket, type Socket } from 'node:dgram';
import { test } from 'node:test';
import { createRtspDriver, rtspDriverSchema } from '../../drivers/camera/rtsp.js';
import { rtpPortPairs } from '../../drivers/camera/rtsp-client/session.js';
import { EdgeError } from '../../runtime/engine/api.js';
import { startRtspCamera } from '../sim/rtsp-camera.js';
import { recordingOutput, run, waitFor } from './helpers.js';

function bindUdp(port: number): Promise<Socket | null> {
  return new Promise((resolve) => {
    const s = createSocket('udp4');
    s.once('error', () => {
      s.close();
      resolve(null);
    });
    s.bind(port, '127.0.0.1', () => resolve(s));
  });
}

/** Four free ports from an even one, found by binding (no fixed port): the range under test. */
async function freeRange(): Promise<[number, number]> {
  for (let i = 0; i < 50; i++) {
    const first = 2 * Math.floor(20000 + Math.random() * 4000); // 40000..47998
    const held = await Promise.all([0, 1, 2, 3].map((k) => bindUdp(first + k)));
    for (const s of held) s?.close();
    if (held.every(Boolean)) return [first, first + 3];
  }
  throw new Error('no 4 free UDP ports found');
}

test('rtpPortRange: pairs of a range, and ranges without a pair are refused', () => {
  assert.deepEqual(rtpPortPairs([50000, 50019]), { first: 50000, count: 10 });
  assert.deepEqual(rtpPortPairs([50001, 50004]), { first: 50002, count: 1 }, 'odd start: the next even port');
  assert.deepEqual(rtpPortPairs([50000, 50000]), { first: 50000, count: 0 });
  assert.deepEqual(rtspDriverSchema.parse({ kind: 'rtsp', url: 'rtsp://c/x' }).rtpPortRange, [20000, 63999], 'the default');
  for (const bad of [[50001, 50002], [50010, 50000], [80, 81], [50000]]) {
    assert.equal(rtspDriverSchema.safeParse({ kind: 'rtsp', url: 'rtsp://c/x', transport: 'udp', rtpPortRange: bad }).success, false, JSON.stringify(bad));
  }
});

test('RTSP over UDP against the GStreamer server: RTP and RTCP arrive on a pair inside rtpPortRange', { timeout: 60_000 }, async (t) => {
  const cam = await startRtspCamera({ transport: 'udp' });
  t.after(() => cam.stop());
  const range = await freeRange();
  const drv = createRtspDriver({ kind: 'rtsp', url: cam.url, transport: 'udp', rtpPortRange: range });
  const out = recordingOutput();
  const ac = new AbortController();
  const running = drv.run(out, ac.signal);
  t.after(async () => {
    ac.abort();
    await running.catch(() => {});
  });
  await waitFor(() => out.frames.length >= 10, 20_000, '10 frames over RTSP/UDP');
  const st = drv.stats();
  assert.equal(st.rtpTransport, 'udp');
  const [rtp, rtcp] = String(st.udpPorts).split('-').map(Number) as [number, number];
  assert.ok(rtp >= range[0] && rtcp <= range[1] && rtp % 2 === 0 && rtcp === rtp + 1, `pair ${rtp}-${rtcp} inside ${range.join('-')}`);
  // The kernel agrees: both sockets are bound on those ports.
  const { stdout } = await run('ss', ['-uanH']);
  for (const p of [rtp, rtcp]) assert.match(stdout, new RegExp(`127\\.0\\.0\\.1:${p}\\s`), `a UDP socket on ${p}`);
  ac.abort();
  await running;
  assert.equal(out.frames[0]!.key, true);
});

test('RTSP over UDP: a range whose every pair is taken fails with RTSP_UDP_BIND_FAILED naming the range', { timeout: 60_000 }, async (t) => {
  const cam = await startRtspCamera({ transport: 'udp' });
  t.after(() => cam.stop());
  const range = await freeRange();
  const held = await Promise.all([0, 1, 2, 3].map((k) => bindUdp(range[0] + k)));
  t.after(() => held.forEach((s) => s?.close()));
  assert.ok(held.every(Boolean), 'the range is held by this test');
  const drv = createRtspDriver({ kind: 'rtsp', url: cam.url, transport: 'udp', rtpPortRange: range, startTimeoutMs: 5000 });
  await assert.rejects(drv.run(recordingOutput(), new AbortController().signal), (e: unknown) => {
    assert.ok(e instanceof EdgeError);
    assert.equal(e.code, 'RTSP_UDP_BIND_FAILED');
    assert.match(e.message, new RegExp(`${range[0]}-${range[1]}.*widen rtpPortRange`));
    return true;
  });
});
