// WHIP publisher against werift on the receiving side (our own WHIP ingest endpoint over real
// HTTP), and against endpoints that fail in every documented way.
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { registerEgressRoutes } from '../../runtime/egress/http.js';
import { WhipIngest } from '../../runtime/egress/whip-ingest.js';
import { WhipPublisher } from '../../runtime/egress/whip-publisher.js';
import { HttpServer } from '../../runtime/http/server.js';
import type { EgressLog } from '../../runtime/egress/pang-link.js';
import { silentLog } from '../../runtime/egress/pang-link.js';
import { h264Fixture } from './fake-source.js';
import { feedEngine, testEngine } from './engine-fixture.js';
import { fastBackoff, probeH264, tempDir, waitFor } from './helpers.js';

const cam = { channel: 'cam', source: 'base', track: 'video' };
const TOKEN = 'tok-very-secret-123';

function capturingLog(): EgressLog & { lines: string[] } {
  const lines: string[] = [];
  const put = (o: Record<string, unknown>, m: string): void => void lines.push(JSON.stringify({ ...o, msg: m }));
  return { lines, debug: put, info: put, warn: put, error: put };
}

test('WHIP publisher → WHIP ingest (werift receiver over HTTP): frames land in a local track and decode; DELETE on stop', async (t) => {
  const dir = await tempDir(t);
  const fx = await h264Fixture(dir, { seconds: 2, size: '640x360' });
  const engine = testEngine(['cam', 'ingest']);
  t.after(() => engine.close());
  const feeder = feedEngine(engine, cam, fx, { loop: true });
  t.after(() => feeder.stop());
  const ingest = new WhipIngest({ engine, log: silentLog, token: TOKEN, maxSessions: 2 });
  t.after(() => ingest.close());
  const http = new HttpServer({ host: '127.0.0.1', port: 0, maxConnections: 64 });
  registerEgressRoutes(http.router, { ingest: { server: ingest, channel: 'ingest' }, dashboard: false });
  const addr = await http.listen();
  t.after(() => http.close());

  const got: Buffer[] = [];
  const inRef = { channel: 'ingest', source: 'robot', track: 'video' };
  const log = capturingLog();
  const pub = new WhipPublisher({ name: 'w0', url: `http://127.0.0.1:${addr.port}/whip/ingest/robot/video`, token: TOKEN, tracks: [cam], source: engine, log, backoff: fastBackoff, timeoutMs: 10_000 });
  t.after(() => pub.close());
  pub.start();
  await waitFor(() => pub.stats().state === 'connected', 15_000, 'WHIP session connected');
  await waitFor(() => engine.listTracks().some((x) => x.channel === 'ingest' && x.mime?.startsWith('video/h264;width=640')), 15_000, 'ingested track with MIME from the SPS');
  const c = engine.subscribe(inRef, { label: 'test' });
  const take = (): void => {
    for (let it = c.next(); it; it = c.next()) if (it.type === 'frame') got.push(it.frame.data);
  };
  c.onReadable(take);
  take();
  await waitFor(() => got.length >= 60, 20_000, '60 ingested access units');
  await writeFile(join(dir, 'in.h264'), Buffer.concat(got));
  const p = await probeH264(join(dir, 'in.h264'));
  assert.ok(p.frames >= 60);
  assert.equal(p.width, 640);
  const st = pub.stats();
  assert.equal(st.negotiatedProfile, '42c01f');
  assert.ok(st.feeds[0]!.framesOut >= 60);
  assert.ok(ingest.stats().sessions[0]!.plis >= 1, 'ingest asked for a keyframe at start');
  assert.ok(feeder.keyRequests() >= 1, 'the PLI reached the camera driver');
  for (const l of log.lines) assert.ok(!l.includes(TOKEN));
  assert.ok(!JSON.stringify(st).includes(TOKEN));
  assert.ok(st.feeds[0]!.rtcpIn >= 1, 'receiver reports arrive');
  pub.close();
  await waitFor(() => ingest.stats().sessions.length === 0, 5000, 'DELETE ended the ingest session');
  assert.equal(pub.stats().state, 'closed');
});

test('WHIP ingest refuses a wrong token (401), a foreign channel (403), a non-SDP body (415) and malformed offers (400)', async (t) => {
  const engine = testEngine(['cam', 'ingest']);
  t.after(() => engine.close());
  const ingest = new WhipIngest({ engine, log: silentLog, token: TOKEN, maxSessions: 2 });
  t.after(() => ingest.close());
  const http = new HttpServer({ host: '127.0.0.1', port: 0, maxConnections: 64 });
  registerEgressRoutes(http.router, { ingest: { server: ingest, channel: 'ingest', aliases: ['lan'] }, dashboard: false });
  const { port } = await http.listen();
  t.after(() => http.close());
  const post = (path: string, body: string, headers: Record<string, string>) => fetch(`http://127.0.0.1:${port}${path}`, { method: 'POST', body, headers });
  const sdpH = { 'content-type': 'application/sdp' };
  let r = await post('/whip/ingest/a/video', 'v=0', { ...sdpH, authorization: 'Bearer nope' });
  assert.equal(r.status, 401);
  assert.equal(((await r.json()) as { error: { code: string } }).error.code, 'WHIP_UNAUTHORIZED');
  r = await post('/whip/cam/base/video', 'v=0', { ...sdpH, authorization: `Bearer ${TOKEN}` });
  assert.equal(r.status, 403);
  r = await post('/whip/ingest/a/video', 'v=0', { 'content-type': 'text/plain', authorization: `Bearer ${TOKEN}` });
  assert.equal(r.status, 415);
  r = await post('/whip/ingest/a/video', 'v=0\r\nbogus\r\n', { ...sdpH, authorization: `Bearer ${TOKEN}` });
  assert.equal(r.status, 400);
  assert.match(((await r.json()) as { error: { code: string } }).error.code, /^SDP_/);
  r = await post('/whip/ingest/a%2F..%2Fx/video', 'v=0', { ...sdpH, authorization: `Bearer ${TOKEN}` });
  assert.equal(r.status, 400);
  r = await post('/whip/lan/a/video', 'v=0\r\nbogus\r\n', { ...sdpH, authorization: `Bearer ${TOKEN}` });
  assert.equal(r.status, 400, 'the channel alias is accepted (then the SDP is refused)');
});

type Mode = 'status' | 'bad-sdp' | 'silent' | 'no-location' | 'huge';

async function badEndpoint(t: { after(fn: () => unknown): void }, mode: Mode, status = 400): Promise<{ url: string; seen: () => { posts: number; auth: string[] } }> {
  let posts = 0;
  const auth: string[] = [];
  const held: ServerResponse[] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    req.resume();
    req.on('end', () => {
      posts++;
      auth.push(String(req.headers.authorization ?? ''));
      if (mode === 'status') res.writeHead(status, { 'content-type': 'text/plain' }).end('nope');
      else if (mode === 'bad-sdp') res.writeHead(201, { location: '/r/1', 'content-type': 'application/sdp' }).end('this is not sdp');
      else if (mode === 'huge') res.writeHead(201, { location: '/r/1', 'content-type': 'application/sdp' }).end('v=0\r\n' + 'a=x\r\n'.repeat(40_000));
      else if (mode === 'no-location') res.writeHead(201, { 'content-type': 'application/sdp' }).end('v=0\r\n');
      else held.push(res); // never answers
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.after(() => {
    for (const r of held) r.destroy();
    server.closeAllConnections();
    return new Promise<void>((r) => server.close(() => r()));
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/whip`, seen: () => ({ posts, auth }) };
}

test('WHIP endpoint answers 400/401/404/500, invalid SDP, no Location, or never: typed errors, backoff, no token leaks', async (t) => {
  const engine = testEngine();
  t.after(() => engine.close());
  const vid = engine.publisher(cam, { label: 'cam' });
  vid.setMime('video/h264;codecs=avc1.42E01F');
  t.after(() => vid.close());
  const cases: Array<[Mode, number, string]> = [
    ['status', 400, 'WHIP_HTTP_400'],
    ['status', 401, 'WHIP_HTTP_401'],
    ['status', 404, 'WHIP_HTTP_404'],
    ['status', 500, 'WHIP_HTTP_500'],
    ['bad-sdp', 0, 'WHIP_BAD_ANSWER'],
    ['no-location', 0, 'WHIP_NO_LOCATION'],
    ['huge', 0, 'WHIP_BAD_ANSWER'],
    ['silent', 0, 'WHIP_TIMEOUT'],
  ];
  await Promise.all(
    cases.map(async ([mode, status, code]) => {
      const ep = await badEndpoint(t, mode, status);
      const log = capturingLog();
      const pub = new WhipPublisher({ name: `bad-${mode}-${status}`, url: ep.url, token: TOKEN, tracks: [cam], source: engine, log, backoff: fastBackoff, timeoutMs: 1000, gatherMs: 200 });
      t.after(() => pub.close());
      pub.start();
      await waitFor(() => (pub.stats().failures[code] ?? 0) >= 2, 15_000, () => `${code} twice (retried with backoff): state ${pub.stats().state}, failures ${JSON.stringify(pub.stats().failures)}, posts ${ep.seen().posts}`);
      const s = pub.stats();
      assert.equal(s.lastError!.code, code);
      assert.ok(s.state === 'backoff' || s.state === 'connecting');
      assert.ok(ep.seen().auth.every((a) => a === `Bearer ${TOKEN}`), 'bearer token sent');
      assert.ok(!JSON.stringify(s).includes(TOKEN));
      for (const l of log.lines) assert.ok(!l.includes(TOKEN), 'no token in logs');
      pub.close();
    }),
  );
});

test('WHIP session dropped by the far side: the silent receiver is detected, torn down and re-published', async (t) => {
  const dir = await tempDir(t);
  const fx = await h264Fixture(dir, { seconds: 2, size: '320x240' });
  const engine = testEngine(['cam', 'ingest']);
  t.after(() => engine.close());
  const feeder = feedEngine(engine, cam, fx, { loop: true });
  t.after(() => feeder.stop());
  const ingest = new WhipIngest({ engine, log: silentLog, maxSessions: 2 });
  t.after(() => ingest.close());
  const http = new HttpServer({ host: '127.0.0.1', port: 0, maxConnections: 64 });
  registerEgressRoutes(http.router, { ingest: { server: ingest, channel: 'ingest' }, dashboard: false });
  const { port } = await http.listen();
  t.after(() => http.close());
  const pub = new WhipPublisher({ name: 'drop', url: `http://127.0.0.1:${port}/whip/ingest/robot/video`, tracks: [cam], source: engine, log: silentLog, backoff: fastBackoff, timeoutMs: 10_000, rtcpTimeoutMs: 2000 });
  t.after(() => pub.close());
  pub.start();
  await waitFor(() => (ingest.stats().sessions[0]?.framesIn ?? 0) >= 10, 15_000, 'first session carries frames');
  const first = ingest.stats().sessions[0]!.id;
  // The server drops the session without telling the publisher (crash, restart, cleanup).
  const full = (ingest as unknown as { sessions: { ids(): string[] } }).sessions.ids()[0]!;
  assert.ok(ingest.end(full, 'server restart'));
  await waitFor(() => (pub.stats().failures.WHIP_SESSION_LOST ?? 0) >= 1, 15_000, 'loss detected');
  await waitFor(() => ingest.stats().sessions.some((s) => s.id !== first && s.framesIn >= 10), 20_000, 'a new session carries frames');
  const s = pub.stats();
  assert.equal(s.state, 'connected');
  assert.ok(s.sessions >= 2 && s.reconnects >= 1);
});
