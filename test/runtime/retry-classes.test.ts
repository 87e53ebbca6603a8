// Issue 14: which failures are a refusal (long backoff) and which the network or a device away
// (fast retries), for capture drivers and WHIP — and the engine keeps a track's records unique.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { driverFailureClass } from '../../runtime/supervisor.js';
import { whipFailureClass } from '../../runtime/egress/whip-publisher.js';
import { failureClassOf } from '../../runtime/egress/link.js';
import { Engine } from '../../runtime/engine/engine.js';

test('driver failures: auth, not found, bad config and missing binaries are refusals; a camera that went away is not', () => {
  for (const c of ['RTSP_AUTH_FAILED', 'RTSP_NOT_FOUND', 'RTSP_NO_H264', 'CONFIG_INVALID', 'FFMPEG_NOT_FOUND', 'SERIAL_BAD_PATH', 'ONVIF_AUTH_FAILED', 'EACCES']) assert.equal(driverFailureClass(c, null), 'refused', c);
  for (const c of ['RTSP_CONNECT_FAILED', 'RTSP_STREAM_ENDED', 'STALLED', 'START_TIMEOUT', 'RTSP_TIMEOUT', 'ECONNREFUSED', 'PROCESS_FAILED', null]) assert.equal(driverFailureClass(c, 'x'), 'network', String(c));
  assert.equal(driverFailureClass(null, 'ffmpeg: 401 Unauthorized'), 'refused');
});

test('WHIP and pang link failures: 4xx and bad answers are refusals; timeouts, 5xx, lost sessions are the network', () => {
  for (const c of ['WHIP_HTTP_401', 'WHIP_HTTP_403', 'WHIP_HTTP_404', 'WHIP_CONFIG', 'WHIP_BAD_ANSWER']) assert.equal(whipFailureClass(c), 'refused', c);
  for (const c of ['WHIP_HTTP_408', 'WHIP_HTTP_503', 'WHIP_TIMEOUT', 'WHIP_SESSION_LOST', 'WHIP_FAILED', 'WHIP_TRACK_NOT_READY']) assert.equal(whipFailureClass(c), 'network', c);
  for (const c of ['UPSTREAM_REFUSED', 'UPSTREAM_HTTP_REFUSED', 'UPSTREAM_TLS', 'TRACK_BUSY']) assert.equal(failureClassOf(c), 'refused', c);
  for (const c of ['UPSTREAM_CONN_REFUSED', 'UPSTREAM_TIMEOUT', 'UPSTREAM_STALLED', 'UPSTREAM_DROPPED', 'UPSTREAM_BUSY', 'UPSTREAM_HTTP_UNAVAILABLE']) assert.equal(failureClassOf(c), 'network', c);
});

test('the engine keeps (track, wallclock) unique and ordered: a burst read in one chunk is spread 1 µs apart', (t) => {
  const e = new Engine({ memoryCeilingBytes: 8 * 1024 * 1024, consumerQueueBytes: 1024 * 1024, gopCacheBytes: 1024 * 1024, trackLingerMs: 50, instantChannelTtlMs: 60_000, maxInstantChannels: 2 });
  t.after(() => e.close());
  e.addStaticChannel({ id: 'c0ffee00000000000000', name: 'r' });
  const ref = { channel: 'c0ffee00000000000000', source: 'base', track: 'gps' };
  const pub = e.publisher(ref, { label: 'nmea' });
  pub.setMime('application/json');
  const c = e.subscribe(ref, { label: 'check' });
  const wall = 1_700_000_000_000;
  for (let i = 0; i < 5; i++) pub.write({ ts: 5000, wallclock: wall, key: true, data: Buffer.from(`{"i":${i}}`) });
  pub.write({ ts: 9000, wallclock: wall - 3_600_000, key: true, data: Buffer.from('{"i":5}') }); // the clock was set back an hour
  const got: Array<{ ts: number; wall: number }> = [];
  for (let it = c.next(); it; it = c.next()) if (it.type === 'frame') got.push({ ts: it.frame.ts, wall: it.frame.wallclock });
  assert.deepEqual(got.slice(0, 5).map((g) => g.ts), [5000, 5001, 5002, 5003, 5004]);
  for (let i = 1; i < 5; i++) assert.ok(got[i]!.wall > got[i - 1]!.wall && got[i]!.wall - wall < 0.01, `wallclock ${got[i]!.wall}`);
  assert.equal(got[5]!.wall, wall - 3_600_000, 'a step back of an hour is the clock being set: taken as it is');
  const st = e.findTrack(ref)!.stats();
  assert.equal(st.identityAdjusted, 4);
  assert.equal(st.clockSteps, 1);
});
