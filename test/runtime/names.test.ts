// Names and ids are interchangeable wherever a channel is addressed, and ids are stable: a channel
// known by name (configured, WHIP ingest, instant) gets the same id after a restart, so its
// recordings stay in one folder. Real runtime, real ffmpeg (test pattern, stills), werift (WHEP).
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { RTCPeerConnection, RTCRtpCodecParameters } from 'werift';
import { WebSocket } from 'ws';
import type { App } from '../../runtime/app.js';
import { gatheringComplete } from '../../runtime/egress/webrtc.js';
import { channelIdFor, encodeXid, XID_RE } from '../../runtime/engine/xid.js';
import { collect, startApp, tempDir, waitFor } from '../support/app.js';

const config = (root: string) => ({
  channels: [{ name: 'robot', sources: [{ name: 'base', driver: { kind: 'testpattern', width: 320, height: 240, fps: 10, bitrateKbps: 200 } }] }],
  recordings: { enabled: true, root, segmentDurationMs: 2000, fragmentDurationMs: 250, discoverMs: 100 },
  egress: { whipIngest: { enabled: true, token: 'ingest-token-0123456789', channel: 'drone' } },
});

async function whepPlays(base: string, path: string): Promise<number> {
  const pc = new RTCPeerConnection({
    codecs: {
      video: [new RTCRtpCodecParameters({ mimeType: 'video/H264', clockRate: 90000, parameters: 'level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f' })],
      audio: [],
    },
    iceAdditionalHostAddresses: ['127.0.0.1'],
  });
  try {
    let packets = 0;
    pc.addTransceiver('video', { direction: 'recvonly' }).onTrack.subscribe((tr) => tr.onReceiveRtp.subscribe(() => packets++));
    await pc.setLocalDescription(await pc.createOffer());
    await gatheringComplete(pc, 3000);
    const r = await fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/sdp' }, body: pc.localDescription!.sdp });
    assert.equal(r.status, 201, `${path}: ${r.status} ${await r.clone().text()}`);
    await pc.setRemoteDescription({ type: 'answer', sdp: await r.text() });
    await waitFor(() => packets >= 5, 15_000, `RTP over WHEP ${path}`);
    await fetch(`${base}${r.headers.get('location')}`, { method: 'DELETE' });
    return packets;
  } finally {
    await pc.close();
  }
}

test('xid: derived ids are valid rs/xid text (last char 0 or g), stable, and differ by scope', () => {
  const a = channelIdFor('robot');
  assert.match(a, XID_RE);
  assert.match(a, /[0g]$/, 'an xid decoder checks the 4 pad bits of the last char');
  assert.equal(channelIdFor('robot'), a);
  assert.notEqual(channelIdFor('robot', 'instant'), a);
  assert.equal(encodeXid(Buffer.from('4d88e15b60f486e428412dc9', 'hex')), '9m4e2mr0ui3e8a215n4g', "rs/xid's own example");
});

test('a channel name works wherever its id does: WHEP, /api/shot, /shot/ws, /api/recordings, /api/gaps, pang; ids survive a restart', { timeout: 120_000 }, async (t) => {
  const { dir, cleanup } = tempDir('moth-edge-names-');
  t.after(cleanup);
  const root = join(dir, 'rec');
  let app: App | null = await startApp(config(root));
  t.after(async () => app?.close());
  const id = app.engine.findChannel('robot')!.id;
  assert.equal(id, channelIdFor('robot'), 'a configured channel without id: derived from its name');
  const ingestId = app.engine.findChannel('drone')!.id;
  assert.equal(ingestId, channelIdFor('drone'), 'the WHIP ingest channel too');
  const base = `http://127.0.0.1:${app.port}`;
  await waitFor(() => (app!.engine.findTrack({ channel: id, source: 'base', track: 'video' })?.stats().framesIn ?? 0) > 10, 20_000, 'test pattern frames');

  // WHEP by name and by id
  assert.ok((await whepPlays(base, '/whep/robot/base/video')) >= 5);
  assert.ok((await whepPlays(base, `/whep/${id}/base/video`)) >= 5);

  // stills by name: HTTP and the shot WebSocket
  for (const c of ['robot', id]) {
    const r = await fetch(`${base}/api/shot/${c}/base/video.jpg`);
    assert.equal(r.status, 200, `/api/shot/${c}: ${r.status}`);
    const jpeg = Buffer.from(await r.arrayBuffer());
    assert.equal(jpeg.subarray(0, 2).toString('hex'), 'ffd8', 'a JPEG');
  }
  const ws = new WebSocket(`ws://127.0.0.1:${app.port}/shot/ws?channel=robot&source=base&track=video`);
  const still = await new Promise<Buffer>((resolve, reject) => {
    ws.once('open', () => ws.send('shot'));
    ws.once('message', (d, binary) => (binary ? resolve(d as Buffer) : reject(new Error(String(d)))));
    ws.once('error', reject);
  });
  ws.close();
  assert.equal(still.subarray(0, 2).toString('hex'), 'ffd8');

  // recordings by name and by id: the same rows
  type Segs = { count: number; segments: Array<{ channel: string; path: string }> };
  const list = async (c: string) => (await (await fetch(`${base}/api/recordings?channel=${c}&order=desc`)).json()) as Segs;
  await waitFor(async () => (await list('robot')).count > 0, 20_000, 'a recording listed by channel name');
  const byName = await list('robot');
  assert.ok(byName.segments.every((s) => s.channel === id));
  assert.ok((await list(id)).count >= byName.count);
  const pb = await fetch(`${base}/api/recordings/playback?channel=robot&source=base&track=video&from=${Date.now() - 60_000}&to=${Date.now()}`);
  assert.notEqual(pb.status, 400, `playback takes the name: ${pb.status} ${await pb.text()}`);

  // gaps by name are the gaps of the id
  const gaps = (await (await fetch(`${base}/api/gaps?track=robot/base/video`)).json()) as { track: string };
  assert.equal(gaps.track, `${id}/base/video`);

  // pang by name (it always did)
  const sub = collect(`ws://127.0.0.1:${app.port}/pang/ws/sub?channel=robot&source=base&track=video`);
  await sub.opened;
  await waitFor(() => sub.binaries.length > 0, 10_000, 'pang frames by name');
  sub.ws.close();

  // An instant channel's id comes from its name, so it is the same when it comes back.
  const instantId = app.engine.instantChannel('scout', undefined).id;
  assert.equal(instantId, channelIdFor('scout', 'instant'));
  assert.equal(app.engine.resolveChannelId('scout'), instantId, 'instant names resolve in URLs too');

  // Restart with the same config: same ids, recordings in the same folder.
  const firstFolder = join(root, id);
  await app.close();
  app = null;
  assert.ok(existsSync(firstFolder), `recordings under ${firstFolder}`);
  app = await startApp(config(root));
  assert.equal(app.engine.findChannel('robot')!.id, id);
  assert.equal(app.engine.findChannel('drone')!.id, ingestId);
});
