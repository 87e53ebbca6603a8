import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import WebSocket from 'ws';
import { PangPublisher } from '../../runtime/egress/pang-publisher.js';
import { PangPuller } from '../../runtime/egress/pang-puller.js';
import { NAL, nalType, splitAnnexB } from '../../runtime/egress/h264-rtp.js';
import { silentLog, type EgressLog } from '../../runtime/egress/pang-link.js';
import { StrictPangPeer } from '../sim/strict-pang-peer.js';
import { FakeSource, h264Fixture, playFixture } from './fake-source.js';
import { fastBackoff, probeH264, selfSignedCert, tempDir, waitFor } from './helpers.js';
import { testEngine } from './engine-fixture.js';

const CHAN = '0123456789abcdefghij'; // rs/xid form
const KEY = 'sekrit-key-42';
const cam = { channel: 'cam', source: 'base', track: 'video' };

function capturingLog(): EgressLog & { lines: string[] } {
  const lines: string[] = [];
  const put = (o: Record<string, unknown>, m: string): void => {
    lines.push(JSON.stringify({ ...o, msg: m }));
  };
  return { lines, debug: put, info: put, warn: put, error: put };
}

function publisher(peer: StrictPangPeer, src: FakeSource, over: Partial<ConstructorParameters<typeof PangPublisher>[0]> = {}, ep: Partial<ConstructorParameters<typeof PangPublisher>[0]['endpoint']> = {}): PangPublisher {
  return new PangPublisher({
    name: 'up0',
    endpoint: { url: peer.url, channel: CHAN, key: KEY, source: 'base', track: 'video', ...ep },
    from: cam,
    maxBufferedBytes: 512 * 1024,
    source: src,
    log: silentLog,
    backoff: fastBackoff,
    ...over,
  });
}

test('publishes real H.264 to the strict peer: MIME first, SPS/PPS before every IDR, a subscriber decodes it', async (t) => {
  const dir = await tempDir(t);
  const fx = await h264Fixture(dir, { seconds: 2, size: '640x360' });
  const peer = new StrictPangPeer({ channels: { [CHAN]: KEY } });
  await peer.listen();
  t.after(() => peer.close());
  const src = new FakeSource();
  src.setMime(cam, fx.mime);
  const pub = publisher(peer, src, { mimeResendMs: 100 });
  t.after(() => pub.close());
  pub.start();
  const path = `${CHAN}/base/video`;
  await waitFor(() => peer.track(path).publisher !== null, 5000, 'publisher session');

  // An independent subscriber on the peer records what a viewer gets.
  const sub = new WebSocket(`${peer.url}/pang/ws/sub?channel=${CHAN}&key=${KEY}`);
  t.after(() => sub.terminate());
  const got: Array<{ binary: boolean; data: Buffer }> = [];
  sub.on('message', (d, binary) => got.push({ binary, data: d as Buffer }));
  await new Promise((r) => sub.once('open', r));

  const player = playFixture(src, cam, fx);
  await player.done;
  await waitFor(() => pub.stats().framesOut >= fx.aus.length, 10_000, 'all frames sent');
  await waitFor(() => got.filter((m) => m.binary).length >= fx.aus.length, 10_000, 'subscriber got all frames');

  // MIME text first on the publisher session, and re-sent about once per resend interval.
  const msgs = peer.messages(path);
  assert.equal(msgs[0]!.binary, false);
  assert.equal(msgs[0]!.data.toString(), fx.mime);
  assert.ok(msgs.filter((m) => !m.binary).length >= 3, 'MIME re-sent periodically');
  // Every IDR message has SPS and PPS in front; one AU per message.
  const bins = msgs.filter((m) => m.binary && m.data.length > 0);
  assert.equal(bins.length, fx.aus.length);
  for (const m of bins) {
    const types = splitAnnexB(m.data).map(nalType);
    if (types.includes(NAL.IDR)) {
      assert.ok(types.indexOf(NAL.SPS) >= 0 && types.indexOf(NAL.SPS) < types.indexOf(NAL.IDR), 'SPS before IDR');
      assert.ok(types.indexOf(NAL.PPS) >= 0 && types.indexOf(NAL.PPS) < types.indexOf(NAL.IDR), 'PPS before IDR');
    }
  }
  assert.equal(peer.pingsIgnored, 0, 'the client never relies on ping/pong');
  // The subscriber's recording decodes with the real ffprobe.
  const file = join(dir, 'sub.h264');
  await writeFile(file, Buffer.concat(got.filter((m) => m.binary).map((m) => m.data)));
  const probe = await probeH264(file);
  assert.equal(probe.frames, fx.aus.length);
  assert.equal(probe.width, 640);
  const s = pub.stats();
  assert.equal(s.state, 'connected');
  assert.equal(s.dropped.gopTail, 0);
  assert.ok(!JSON.stringify(s).includes(KEY), 'no key in stats');
});

test('keepalive: an idle track keeps the session open past the peer idle timeout with empty binaries', async (t) => {
  const peer = new StrictPangPeer({ channels: { [CHAN]: KEY } });
  await peer.listen();
  t.after(() => peer.close());
  const src = new FakeSource();
  src.setMime(cam, 'video/h264');
  let idleCloses = 0;
  peer.on('idleClose', () => idleCloses++);
  const pub = publisher(peer, src, { keepaliveMs: 400, mimeResendMs: 10_000 }, { timeoutSec: 2 });
  t.after(() => pub.close());
  pub.start();
  const path = `${CHAN}/base/video`;
  // 7 keepalives at ≥ 400 ms span ≥ 2.8 s > the 2 s idle timeout.
  await waitFor(() => peer.messages(path).filter((m) => m.binary && m.data.length === 0).length >= 7, 15_000, '7 keepalives');
  assert.equal(idleCloses, 0);
  assert.equal(pub.stats().reconnects, 0);
  assert.ok(pub.stats().keepalives >= 7);
});

test('refusals (wrong key, unknown channel, licence limit) back off with growing, capped delays and never log the key', async (t) => {
  for (const [name, peerOpts, ep] of [
    ['wrong key', { channels: { [CHAN]: KEY } }, { key: 'wrong-key-99' }],
    ['unknown channel', { channels: {} }, {}],
    ['licence limit', { channels: { [CHAN]: KEY }, refuseAll: true }, {}],
  ] as const) {
    const peer = new StrictPangPeer(peerOpts);
    await peer.listen();
    const src = new FakeSource();
    src.setMime(cam, 'video/h264');
    const log = capturingLog();
    const pub = publisher(peer, src, { log }, ep);
    pub.start();
    await waitFor(() => peer.refusals >= 4, 10_000, `${name}: 4 refusals`);
    const s = pub.stats();
    assert.equal(s.lastError?.code, 'UPSTREAM_REFUSED', name);
    assert.ok(s.failures.UPSTREAM_REFUSED! >= 3);
    assert.ok(s.state === 'backoff' || s.state === 'connecting');
    // no tight loop: the first delay is at least half the initial delay (jitter), later ones grow to the cap
    const at = Date.now();
    const before = peer.refusals;
    await new Promise((r) => setTimeout(r, 300));
    assert.ok(peer.refusals - before <= 300 / 25 + 1, 'bounded attempt rate');
    void at;
    // The refusal log is throttled (one line per code per minute), with a count, without the key.
    const warns = log.lines.filter((l) => l.includes('UPSTREAM_REFUSED'));
    assert.equal(warns.length, 1, `${name}: throttled log`);
    for (const l of log.lines) assert.ok(!l.includes(KEY) && !l.includes('wrong-key-99'), 'no key in logs');
    assert.ok(!JSON.stringify(s).includes('wrong-key-99') && !JSON.stringify(s).includes(KEY));
    pub.close();
    pub.close(); // idempotent
    await peer.close();
  }
});

test('connection refused, unresolvable host and untrusted TLS give typed errors and back off; a CA file or insecure connects', async (t) => {
  const dir = await tempDir(t);
  const src = new FakeSource();
  src.setMime(cam, 'video/h264');
  // A port with nothing listening.
  const closed = new StrictPangPeer({ channels: { [CHAN]: KEY } });
  const port = await closed.listen();
  await closed.close();
  const a = new PangPublisher({ name: 'a', endpoint: { url: `ws://127.0.0.1:${port}`, channel: CHAN, source: 'base', track: 'video' }, from: cam, maxBufferedBytes: 65536, source: src, log: silentLog, backoff: fastBackoff });
  t.after(() => a.close());
  a.start();
  await waitFor(() => (a.stats().failures.UPSTREAM_CONN_REFUSED ?? 0) >= 2, 5000, 'ECONNREFUSED twice');

  const b = new PangPublisher({ name: 'b', endpoint: { url: 'ws://no-such-host.invalid:8276', channel: CHAN, source: 'base', track: 'video' }, from: cam, maxBufferedBytes: 65536, source: src, log: silentLog, backoff: fastBackoff, handshakeTimeoutMs: 3000 });
  t.after(() => b.close());
  b.start();
  await waitFor(() => b.stats().lastError !== null, 10_000, 'DNS failure');
  assert.match(b.stats().lastError!.code, /^UPSTREAM_(DNS|TIMEOUT)$/);

  const { certFile, keyFile } = await selfSignedCert(dir);
  const tls = new StrictPangPeer({ channels: { [CHAN]: KEY }, tls: { cert: readFileSync(certFile), key: readFileSync(keyFile) } });
  await tls.listen();
  t.after(() => tls.close());
  const c = publisher(tls, src, { name: 'c' });
  t.after(() => c.close());
  c.start();
  await waitFor(() => c.stats().lastError !== null, 5000, 'TLS failure');
  assert.equal(c.stats().lastError!.code, 'UPSTREAM_TLS');
  c.close();

  const d = publisher(tls, src, { name: 'd', caFile: certFile });
  t.after(() => d.close());
  d.start();
  await waitFor(() => tls.track(`${CHAN}/base/video`).publisher !== null, 5000, 'wss with CA file');
  d.close();
  await waitFor(() => tls.track(`${CHAN}/base/video`).publisher === null, 5000, 'session gone');
  const e = publisher(tls, src, { name: 'e', insecure: true });
  t.after(() => e.close());
  e.start();
  await waitFor(() => tls.track(`${CHAN}/base/video`).publisher !== null, 5000, 'wss insecure');
  e.close();
});

test('upstream restart mid-stream: reconnects with backoff and resumes at a keyframe', async (t) => {
  const dir = await tempDir(t);
  const fx = await h264Fixture(dir, { seconds: 2, size: '320x240', gop: 15 });
  const peer = new StrictPangPeer({ channels: { [CHAN]: KEY } });
  const port = await peer.listen();
  t.after(() => peer.close());
  const src = new FakeSource();
  const pub = publisher(peer, src);
  t.after(() => pub.close());
  pub.start();
  const player = playFixture(src, cam, fx, { loop: true });
  t.after(() => player.stop());
  const path = `${CHAN}/base/video`;
  await waitFor(() => peer.messages(path).filter((m) => m.binary).length >= 20, 10_000, '20 frames before restart');
  await peer.close(); // crash: every socket cut without a close frame
  await waitFor(() => pub.stats().state !== 'connected', 5000, 'link noticed the cut');
  const cutAt = peer.messages(path).length;
  await peer.listen(port);
  await waitFor(() => peer.messages(path).filter((m, i) => i >= cutAt && m.binary && m.data.length > 0).length >= 20, 10_000, 'frames after restart');
  const after = peer.messages(path).slice(cutAt);
  assert.equal(after[0]!.binary, false, 'MIME first on the new session');
  const firstBin = after.find((m) => m.binary && m.data.length > 0)!;
  assert.ok(splitAnnexB(firstBin.data).some((n) => nalType(n) === NAL.IDR), 'resumes at a keyframe');
  const s = pub.stats();
  assert.equal(s.state, 'connected');
  assert.ok(s.reconnects >= 1);
  assert.ok((s.failures.UPSTREAM_DROPPED ?? 0) + (s.failures.UPSTREAM_REFUSED ?? 0) + (s.failures.UPSTREAM_CONN_REFUSED ?? 0) >= 1);
});

test('pull-down: an upstream data track is written into the local engine', async (t) => {
  const peer = new StrictPangPeer({ channels: { [CHAN]: KEY } });
  await peer.listen();
  t.after(() => peer.close());
  const src = new FakeSource();
  const to = { channel: 'operator', source: 'base', track: 'cmd' };
  const local = src.subscribe(to, { label: 'test' });
  const pull = new PangPuller({ name: 'down0', endpoint: { url: peer.url, channel: CHAN, key: KEY, source: 'op', track: 'json' }, to, engine: src, log: silentLog, backoff: fastBackoff });
  t.after(() => pull.close());
  // The operator publishes upstream.
  const op = new WebSocket(`${peer.url}/pang/ws/pub?channel=${CHAN}&key=${KEY}&source=op&track=json`);
  t.after(() => op.terminate());
  await new Promise((r) => op.once('open', r));
  op.send('application/json');
  pull.start();
  await waitFor(() => peer.track(`${CHAN}/op/json`).subscribers.size === 1 && pull.stats().state !== 'idle', 5000, 'pull session');
  // MIME again (a subscriber that joined late gets the current MIME from the server).
  for (let i = 0; i < 5; i++) op.send(Buffer.from(JSON.stringify({ seq: i })), { binary: true });
  op.send(Buffer.alloc(0), { binary: true }); // a keepalive is not a record
  await waitFor(() => pull.stats().framesIn >= 5, 5000, '5 records pulled');
  assert.equal(src.mimeOf(to), 'application/json');
  const recs: number[] = [];
  for (let it = local.next(); it; it = local.next()) if (it.type === 'frame') recs.push((JSON.parse(it.frame.data.toString()) as { seq: number }).seq);
  assert.deepEqual(recs, [0, 1, 2, 3, 4]);
  assert.equal(pull.stats().state, 'connected');
});

test('pull-down of an H.264 track: waits for the first IDR (Moth keeps no keyframe cache), then every AU', async (t) => {
  const dir = await tempDir(t);
  const fx = await h264Fixture(dir, { seconds: 2, size: '320x240', gop: 15 });
  const peer = new StrictPangPeer({ channels: { [CHAN]: KEY } });
  await peer.listen();
  t.after(() => peer.close());
  const src = new FakeSource();
  const to = { channel: 'op', source: 'base', track: 'video' };
  const pull = new PangPuller({ name: 'vid', endpoint: { url: peer.url, channel: CHAN, key: KEY, source: 'op', track: 'video' }, to, engine: src, log: silentLog, backoff: fastBackoff });
  t.after(() => pull.close());
  const op = new WebSocket(`${peer.url}/pang/ws/pub?channel=${CHAN}&key=${KEY}&source=op&track=video`);
  t.after(() => op.terminate());
  await new Promise((r) => op.once('open', r));
  op.send(fx.mime);
  pull.start();
  await waitFor(() => peer.track(`${CHAN}/op/video`).subscribers.size === 1, 5000, 'pull session');
  const local = src.subscribe(to, { label: 'test' });
  // Start mid-GOP: the first 5 AUs are not keyframes.
  const start = 5;
  assert.ok(!fx.aus.slice(start, start + 1)[0]!.key);
  for (const au of fx.aus.slice(start)) op.send(au.data, { binary: true });
  const firstKey = fx.aus.findIndex((a, i) => i >= start && a.key);
  const expected = fx.aus.length - firstKey;
  await waitFor(() => pull.stats().framesIn >= expected, 5000, () => `${expected} AUs pulled (${pull.stats().framesIn})`);
  assert.equal(pull.stats().dropped.waitKeyframe, firstKey - start);
  const got: Buffer[] = [];
  for (let it = local.next(); it; it = local.next()) if (it.type === 'frame') got.push(it.frame.data);
  assert.equal(got.length, expected);
  await writeFile(join(dir, 'pulled.h264'), Buffer.concat(got));
  assert.equal((await probeH264(join(dir, 'pulled.h264'))).frames, expected);
  assert.equal(src.mimeOf(to), fx.mime);
});

test('a configured local track in a channel the engine does not have: typed error and backoff, no crash', async (t) => {
  const peer = new StrictPangPeer({ channels: { [CHAN]: KEY } });
  await peer.listen();
  t.after(() => peer.close());
  const engine = testEngine(['cam']);
  t.after(() => engine.close());
  const pub = new PangPublisher({ name: 'ghost', endpoint: { url: peer.url, channel: CHAN, key: KEY, source: 'base', track: 'video' }, from: { channel: 'nope', source: 'base', track: 'video' }, maxBufferedBytes: 65536, source: engine, log: silentLog, backoff: fastBackoff });
  t.after(() => pub.close());
  pub.start();
  await waitFor(() => (pub.stats().failures.UNKNOWN_CHANNEL ?? 0) >= 2, 5000, 'UNKNOWN_CHANNEL twice');
  assert.equal(pub.stats().lastError!.code, 'UNKNOWN_CHANNEL');
});
