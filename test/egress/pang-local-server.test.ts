// The pang publisher against the foundation's local pang server (runtime/pang/server.ts), and
// the server's `codec` option served by the TranscodeService: a subscriber with codec=jpeg gets
// JPEGs from one shared ffmpeg; codec=h264 on an H.264 track is pass-through; a bad codec is
// refused with a clear close.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import WebSocket from 'ws';
import { PangPublisher } from '../../runtime/egress/pang-publisher.js';
import { silentLog } from '../../runtime/egress/pang-link.js';
import { HttpServer } from '../../runtime/http/server.js';
import { silentLogger } from '../../runtime/log.js';
import { PangServer } from '../../runtime/pang/server.js';
import { TranscodeService } from '../../runtime/transcode/service.js';
import { FakeSource, h264Fixture, playFixture } from './fake-source.js';
import { testEngine } from './engine-fixture.js';
import { fastBackoff, probeH264, tempDir, waitFor } from './helpers.js';

const CHAN = 'a0b1c2d3e4f5g6h7i8j9';

test('pang publisher → local pang server: subscribers get decodable H.264, codec=jpeg is transcoded once, bad codec refused', async (t) => {
  const dir = await tempDir(t);
  const fx = await h264Fixture(dir, { seconds: 2, size: '640x360' });
  const engine = testEngine([]);
  engine.addStaticChannel({ id: CHAN, key: 'k1' });
  t.after(() => engine.close());
  const transcode = new TranscodeService({ engine, log: silentLog });
  t.after(() => transcode.close());
  const pang = new PangServer(engine, { maxMessageBytes: 8 * 1024 * 1024, log: silentLogger(), transcoder: transcode });
  const http = new HttpServer({ host: '127.0.0.1', port: 0, maxConnections: 64 });
  pang.registerRoutes(http.router);
  http.onUpgrade('/pang/ws', (req, socket, head) => pang.handleUpgrade(req, socket, head));
  const { port } = await http.listen();
  t.after(async () => {
    await pang.close();
    await http.close();
  });

  const robot = new FakeSource();
  const cam = { channel: 'cam', source: 'base', track: 'video' };
  robot.setMime(cam, fx.mime);
  const pub = new PangPublisher({ name: 'local', endpoint: { url: `ws://127.0.0.1:${port}`, channel: CHAN, key: 'k1', source: 'base', track: 'video' }, from: cam, maxBufferedBytes: 512 * 1024, source: robot, log: silentLog, backoff: fastBackoff });
  t.after(() => pub.close());
  pub.start();
  await waitFor(() => engine.listTracks().some((x) => x.channel === CHAN && x.mime === fx.mime), 5000, 'MIME reached the local server');

  const subUrl = `ws://127.0.0.1:${port}/pang/ws/sub?channel=${CHAN}&key=k1&source=base&track=video`;
  const plain = new WebSocket(subUrl);
  const jpeg = new WebSocket(`${subUrl}&codec=jpeg`);
  const same = new WebSocket(`${subUrl}&codec=h264`);
  t.after(() => (plain.terminate(), jpeg.terminate(), same.terminate()));
  const got = { plain: [] as Buffer[], jpeg: [] as Buffer[], same: [] as Buffer[], texts: [] as string[] };
  plain.on('message', (d, b) => (b ? got.plain.push(d as Buffer) : got.texts.push(String(d))));
  jpeg.on('message', (d, b) => b && got.jpeg.push(d as Buffer));
  same.on('message', (d, b) => b && got.same.push(d as Buffer));
  await Promise.all([plain, jpeg, same].map((w) => new Promise((r) => w.once('open', r))));

  const player = playFixture(robot, cam, fx);
  await player.done;
  await waitFor(() => got.plain.length >= fx.aus.length - 5 && got.jpeg.length >= 5 && got.same.length >= fx.aus.length - 5, 20_000, () => `subscribers received (${got.plain.length} ${got.jpeg.length} ${got.same.length} of ${fx.aus.length})`);
  assert.equal(got.texts[0], fx.mime, 'MIME first');
  await writeFile(join(dir, 'plain.h264'), Buffer.concat(got.plain));
  const p = await probeH264(join(dir, 'plain.h264'));
  assert.equal(p.width, 640);
  assert.ok(p.frames >= got.plain.length - 1, `ffprobe decoded ${p.frames} of ${got.plain.length}`);
  for (const j of got.jpeg) assert.ok(j[0] === 0xff && j[1] === 0xd8);
  const ts = transcode.stats();
  assert.equal(ts.transcoders.length, 1, 'one ffmpeg for jpeg; h264 passes through');
  assert.equal(ts.counters.passThrough, 1);

  const badCodec = new WebSocket(`${subUrl}&codec=gif`);
  const closed = await new Promise<number>((r) => {
    badCodec.on('close', (code) => r(code));
    badCodec.on('error', () => {});
  });
  assert.equal(closed, 4400, 'bad codec refused with 4400 bad request');
  jpeg.terminate();
  await waitFor(() => transcode.stats().transcoders.length === 0, 5000, 'transcoder stopped when its last subscriber left');
});
