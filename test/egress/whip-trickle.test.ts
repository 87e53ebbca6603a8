// Trickle ICE by PATCH (RFC 9725 §4.3) against a test WHIP server with werift on the answering
// side that learns the publisher's candidates ONLY from PATCH bodies: it strips candidates from
// the offer and from its own answer (so the publisher cannot reach it first and be learned as a
// peer-reflexive candidate). Media flowing proves the PATCHed candidates were used; the sdpfrag
// format, Content-Type and If-Match are asserted. A server without trickle (405) makes the next
// session send a complete offer.
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test, type TestContext } from 'node:test';
import type { RTCPeerConnection } from 'werift';
import { silentLog } from '../../runtime/egress/pang-link.js';
import { parseTrickleFragment, withoutCandidates } from '../../runtime/egress/sdp.js';
import { closePeer, createPeer, gatheringComplete, loadWerift } from '../../runtime/egress/webrtc.js';
import { WhipPublisher } from '../../runtime/egress/whip-publisher.js';
import { h264Fixture } from './fake-source.js';
import { feedEngine, testEngine } from './engine-fixture.js';
import { fastBackoff, tempDir, waitFor } from './helpers.js';

const cam = { channel: 'cam', source: 'base', track: 'video' };
const ETAG = '"whip-test-etag-1"';

interface TrickleServer {
  url: string;
  offers: string[];
  patches: Array<{ contentType: string | undefined; ifMatch: string | undefined; body: string }>;
  rtpPackets: () => number;
  sessions: number;
}

/** A WHIP endpoint: werift answers; `patch` says whether PATCH is supported (204) or not (405). */
async function trickleServer(t: TestContext, patch: 'trickle' | 'none'): Promise<TrickleServer> {
  await loadWerift();
  const peers = new Map<string, RTCPeerConnection>();
  let packets = 0;
  const srv: TrickleServer = { url: '', offers: [], patches: [], rtpPackets: () => packets, sessions: 0 };
  const read = (req: IncomingMessage): Promise<string> =>
    new Promise((resolve) => {
      let b = '';
      req.on('data', (d: Buffer) => (b += d.toString('utf8')));
      req.on('end', () => resolve(b));
    });
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    void (async () => {
      const body = await read(req);
      if (req.method === 'POST') {
        srv.offers.push(body);
        const id = `s${++srv.sessions}`;
        const pc = createPeer();
        peers.set(id, pc);
        pc.onTrack.subscribe((track) => track.onReceiveRtp.subscribe(() => void packets++));
        // Trickle server: knows the publisher's candidates only from PATCH. No-trickle server:
        // takes the offer's candidates (a complete offer is how it learns them).
        await pc.setRemoteDescription({ type: 'offer', sdp: patch === 'trickle' ? withoutCandidates(body) : body });
        await pc.setLocalDescription(await pc.createAnswer());
        await gatheringComplete(pc, 3000);
        // The answer goes out without candidates: the publisher must be reached, not reach.
        res.writeHead(201, { 'content-type': 'application/sdp', location: `/resource/${id}`, etag: ETAG });
        res.end(withoutCandidates(pc.localDescription!.sdp));
        return;
      }
      if (req.method === 'PATCH') {
        srv.patches.push({ contentType: req.headers['content-type'], ifMatch: req.headers['if-match'], body });
        if (patch === 'none') return void res.writeHead(405).end();
        const pc = peers.get(req.url!.split('/').pop()!);
        if (!pc) return void res.writeHead(404).end();
        const frag = parseTrickleFragment(body);
        for (const c of frag.candidates) await pc.addIceCandidate({ candidate: c, sdpMid: frag.mid ?? '0' });
        return void res.writeHead(204).end();
      }
      if (req.method === 'DELETE') {
        const id = req.url!.split('/').pop()!;
        closePeer(peers.get(id) ?? null);
        peers.delete(id);
        return void res.writeHead(200).end();
      }
      res.writeHead(405).end();
    })().catch(() => res.writeHead(500).end());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.after(async () => {
    for (const pc of peers.values()) closePeer(pc);
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });
  srv.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/whip`;
  return srv;
}

test('WHIP trickle by PATCH: offer POSTed without candidates, candidates by sdpfrag with If-Match and end-of-candidates; media flows', async (t) => {
  const dir = await tempDir(t);
  const fx = await h264Fixture(dir, { seconds: 2, size: '320x240' });
  const engine = testEngine();
  t.after(() => engine.close());
  const feeder = feedEngine(engine, cam, fx, { loop: true });
  t.after(() => feeder.stop());
  const srv = await trickleServer(t, 'trickle');
  const pub = new WhipPublisher({ name: 'tr', url: srv.url, tracks: [cam], source: engine, log: silentLog, backoff: fastBackoff, timeoutMs: 10_000, trickle: 'auto' });
  t.after(() => pub.close());
  pub.start();
  await waitFor(() => srv.rtpPackets() >= 100, 20_000, () => `100 RTP packets at the server (${srv.rtpPackets()}); publisher ${JSON.stringify(pub.stats().lastError)}`);
  assert.equal(srv.sessions, 1, 'connected on the first session');
  assert.ok(!srv.offers[0]!.includes('a=candidate:'), 'the trickling offer carried no candidates');
  assert.equal(srv.patches.length, 1);
  const p = srv.patches[0]!;
  assert.equal(p.contentType, 'application/trickle-ice-sdpfrag');
  assert.equal(p.ifMatch, ETAG, 'If-Match carries the ETag of the 201');
  const lines = p.body.split('\r\n');
  assert.equal(lines.at(-1), '', 'CRLF-terminated lines');
  const ufrag = /a=ice-ufrag:(\S+)/.exec(srv.offers[0]!)![1]!;
  const pwd = /a=ice-pwd:(\S+)/.exec(srv.offers[0]!)![1]!;
  const mid = /a=mid:(\S+)/.exec(srv.offers[0]!)![1]!;
  assert.match(lines[0]!, /^a=group:BUNDLE \S+/);
  assert.match(lines[1]!, /^m=video 9 UDP\/TLS\/RTP\/SAVPF( \d+)+$/);
  assert.deepEqual(lines.slice(2, 5), [`a=mid:${mid}`, `a=ice-ufrag:${ufrag}`, `a=ice-pwd:${pwd}`], 'the offer\'s mid and ICE credentials');
  const cands = lines.filter((l) => l.startsWith('a=candidate:'));
  assert.ok(cands.length >= 1);
  for (const c of cands) assert.match(c, /^a=candidate:\S+ 1 udp \d+ [\d.]+ \d+ typ (host|srflx|relay)/);
  assert.equal(lines.at(-2), 'a=end-of-candidates');
  const st = pub.stats();
  assert.equal(st.trickle, 'supported');
  assert.deepEqual(st.offers, { trickle: 1, complete: 0 });
  assert.deepEqual(st.patches, { sent: 1, ok: 1, failed: 0 });
});

test('WHIP trickle auto: an endpoint answering 405 to PATCH gets a complete offer on the next session; trickle off never PATCHes', async (t) => {
  const dir = await tempDir(t);
  const fx = await h264Fixture(dir, { seconds: 2, size: '320x240' });
  const engine = testEngine();
  t.after(() => engine.close());
  const feeder = feedEngine(engine, cam, fx, { loop: true });
  t.after(() => feeder.stop());
  const srv = await trickleServer(t, 'none');
  // The first (trickling) session cannot connect: the server never learns a candidate. ICE times
  // out after 3 s, and the reconnect sends a complete offer, which connects.
  const pub = new WhipPublisher({ name: 'nt', url: srv.url, tracks: [cam], source: engine, log: silentLog, backoff: fastBackoff, timeoutMs: 3000, trickle: 'auto' });
  t.after(() => pub.close());
  pub.start();
  await waitFor(() => srv.rtpPackets() >= 50, 30_000, () => `50 RTP packets (${srv.rtpPackets()}); sessions ${srv.sessions}; ${JSON.stringify(pub.stats().lastError)}`);
  assert.ok(!srv.offers[0]!.includes('a=candidate:'), 'first offer trickled');
  assert.ok(srv.offers.at(-1)!.includes('a=candidate:'), 'the offer after the 405 was complete');
  assert.equal(srv.patches.length, 1, 'no PATCH after the 405');
  const st = pub.stats();
  assert.equal(st.trickle, 'unsupported');
  assert.equal(st.offers.trickle, 1);
  assert.ok(st.offers.complete >= 1);
  assert.deepEqual(st.patches, { sent: 1, ok: 0, failed: 1 });
  pub.close();

  const before = srv.patches.length;
  const offers = srv.offers.length;
  const off = new WhipPublisher({ name: 'off', url: srv.url, tracks: [cam], source: engine, log: silentLog, backoff: fastBackoff, timeoutMs: 10_000, trickle: 'off' });
  t.after(() => off.close());
  off.start();
  await waitFor(() => off.stats().state === 'connected', 15_000, 'trickle off connects with a complete offer');
  assert.ok(srv.offers[offers]!.includes('a=candidate:'));
  assert.equal(srv.patches.length, before, 'trickle off sends no PATCH');
  assert.deepEqual(off.stats().offers, { trickle: 0, complete: 1 });
});
