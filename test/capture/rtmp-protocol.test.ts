// Pure RTMP protocol code: AMF0, chunk streams (fmt 0–3, extended timestamps), FLV/AVC, the
// server session's command flow. Property tests feed arbitrary bytes: only typed errors come out.

import test from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Amf0Error, decodeAmf0, encodeAmf0, type Amf0Value } from '../../drivers/ingest/rtmp/amf0.js';
import { ChunkError, ChunkReader, ChunkWriter, MSG, u32, type RtmpMessage } from '../../drivers/ingest/rtmp/chunk.js';
import { AvcDepacketizer, FlvError, FlvStreamReader, parseAvcDecoderConfig, parseVideoTag, splitAvcc } from '../../drivers/ingest/rtmp/flv.js';
import { clientC0C1, HANDSHAKE_SIZE, HandshakeError, ServerHandshake } from '../../drivers/ingest/rtmp/handshake.js';
import { RtmpServerSession, type PublishRequest, type RtmpSessionHandler } from '../../drivers/ingest/rtmp/session.js';

const rnd = (n: number): Buffer => Buffer.alloc(n, 7);

// ---------------------------------------------------------------------------------------------
// AMF0

test('AMF0: a connect command round-trips', () => {
  const values: Amf0Value[] = ['connect', 1, { app: 'live', tcUrl: 'rtmp://127.0.0.1/live', fpad: false, capabilities: 15, nested: { a: [1, 'x', null] } }, null, undefined];
  const back = decodeAmf0(encodeAmf0(...values));
  assert.equal(back[0], 'connect');
  assert.equal(back[1], 1);
  assert.deepEqual(JSON.parse(JSON.stringify(back[2])), JSON.parse(JSON.stringify(values[2])));
  assert.equal(back[3], null);
  assert.equal(back[4], undefined);
});

test('AMF0: long strings, dates, ECMA arrays decode', () => {
  const long = 'x'.repeat(70_000);
  const [s] = decodeAmf0(encodeAmf0(long));
  assert.equal(s, long);
  const d = new Date(1_700_000_000_000);
  const [dd] = decodeAmf0(encodeAmf0(d));
  assert.ok(dd instanceof Date && dd.getTime() === d.getTime());
  // ECMA array as ffmpeg writes onMetaData: count, then key/value pairs, then 00 00 09
  const ecma = Buffer.concat([Buffer.from([8, 0, 0, 0, 1, 0, 5]), Buffer.from('width'), encodeAmf0(1280), Buffer.from([0, 0, 9])]);
  const [m] = decodeAmf0(ecma);
  assert.equal((m as Record<string, Amf0Value>)['width'], 1280);
});

test('AMF0: "__proto__" keys are plain data, not prototype changes', () => {
  const buf = Buffer.concat([Buffer.from([3, 0, 9]), Buffer.from('__proto__'), encodeAmf0({ polluted: true }), Buffer.from([0, 0, 9])]);
  const [o] = decodeAmf0(buf);
  assert.equal(({} as Record<string, unknown>)['polluted'], undefined);
  assert.ok(o && typeof o === 'object');
});

test('AMF0: hostile input gives Amf0Error only, and lengths do not allocate', () => {
  // strict array claiming 4 G elements in 5 bytes
  assert.throws(() => decodeAmf0(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0])), Amf0Error);
  // long string claiming 4 GB
  assert.throws(() => decodeAmf0(Buffer.from([0x0c, 0xff, 0xff, 0xff, 0xff, 0x41])), Amf0Error);
  // deep nesting
  assert.throws(() => decodeAmf0(Buffer.alloc(10_000, 0x0a).fill(0, 0, 0)), Amf0Error);
  const deep = Buffer.concat(Array.from({ length: 1000 }, () => Buffer.from([0x0a, 0, 0, 0, 1])));
  assert.throws(() => decodeAmf0(deep), Amf0Error);
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
      try {
        decodeAmf0(Buffer.from(bytes));
      } catch (err) {
        assert.ok(err instanceof Amf0Error, `unexpected ${String(err)}`);
      }
    }),
    { numRuns: 3000 },
  );
});

const amfValue: fc.Arbitrary<Amf0Value> = fc.letrec<{ v: Amf0Value }>((tie) => ({
  v: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.double({ noNaN: true }),
    fc.boolean(),
    fc.string(),
    fc.constant(null),
    fc.constant(undefined),
    fc.array(tie('v'), { maxLength: 4 }),
    fc.dictionary(fc.string({ minLength: 1, maxLength: 8 }), tie('v'), { maxKeys: 4 }),
  ),
})).v;

test('AMF0: encode → decode is the identity (property)', () => {
  fc.assert(
    fc.property(fc.array(amfValue, { maxLength: 5 }), (vals) => {
      const back = decodeAmf0(encodeAmf0(...vals));
      assert.deepEqual(normalize(back), normalize(vals));
    }),
    { numRuns: 500 },
  );
});

function normalize(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(normalize);
  if (v && typeof v === 'object' && !(v instanceof Date)) {
    const o: Record<string, unknown> = {};
    for (const k of Object.keys(v)) o[k] = normalize((v as Record<string, unknown>)[k]);
    return o;
  }
  if (Object.is(v, -0)) return 0;
  return v;
}

// ---------------------------------------------------------------------------------------------
// Chunk streams

function readAll(reader: ChunkReader, bytes: Buffer, pieces: number[]): RtmpMessage[] {
  const out: RtmpMessage[] = [];
  let p = 0;
  for (const n of pieces) {
    if (p >= bytes.length) break;
    out.push(...reader.push(bytes.subarray(p, p + n)));
    p += n;
  }
  if (p < bytes.length) out.push(...reader.push(bytes.subarray(p)));
  return out;
}

test('chunks: fmt 0–3 with extended timestamps, split at any byte, reassemble (property)', () => {
  const msgArb = fc.record({
    csid: fc.constantFrom(3, 4, 6, 63, 64, 319, 320, 65599),
    typeId: fc.constantFrom(MSG.video, MSG.audio, MSG.dataAmf0),
    streamId: fc.constantFrom(1, 2),
    tsStep: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 100 }), fc.constant(0xffffff), fc.integer({ min: 0xffffff, max: 0x2000000 })),
    len: fc.oneof(fc.integer({ min: 0, max: 300 }), fc.constant(128), fc.constant(256)),
  });
  fc.assert(
    fc.property(
      fc.array(msgArb, { minLength: 1, maxLength: 30 }),
      fc.array(fc.integer({ min: 1, max: 64 }), { maxLength: 200 }),
      fc.constantFrom(1, 50, 128, 4096),
      (specs, pieces, chunkSize) => {
        const w = new ChunkWriter(true);
        const wire: Buffer[] = [];
        const expected: RtmpMessage[] = [];
        // the first message sets the chunk size, as a real peer does
        wire.push(w.encode({ csid: 2, typeId: MSG.setChunkSize, streamId: 0, timestamp: 0, payload: u32(chunkSize) }));
        expected.push({ csid: 2, typeId: MSG.setChunkSize, streamId: 0, timestamp: 0, payload: u32(chunkSize) });
        const ts = new Map<number, number>();
        let seq = 0;
        for (const s of specs) {
          const t = ((ts.get(s.csid) ?? 0) + s.tsStep) >>> 0;
          ts.set(s.csid, t);
          const payload = Buffer.alloc(s.len, seq++ & 0xff);
          const m = { csid: s.csid, typeId: s.typeId, streamId: s.streamId, timestamp: t, payload };
          wire.push(w.encode(m));
          expected.push(m);
        }
        const got = readAll(new ChunkReader(), Buffer.concat(wire), pieces);
        assert.equal(got.length, expected.length);
        for (let i = 0; i < got.length; i++) {
          assert.equal(got[i]!.csid, expected[i]!.csid);
          assert.equal(got[i]!.typeId, expected[i]!.typeId);
          assert.equal(got[i]!.streamId, expected[i]!.streamId);
          assert.equal(got[i]!.timestamp, expected[i]!.timestamp, `timestamp of message ${i}`);
          assert.ok(got[i]!.payload.equals(expected[i]!.payload));
        }
      },
    ),
    { numRuns: 400 },
  );
});

test('chunks: ffmpeg-style fmt 3 after fmt 0 adds the fmt 0 field again', () => {
  // fmt 0 ts=40 then fmt 3 new message → 80 (ffmpeg/librtmp semantics)
  const body = Buffer.alloc(2, 1);
  const h0 = Buffer.from([0x06, 0, 0, 40, 0, 0, 2, 9, 1, 0, 0, 0]);
  const h3 = Buffer.from([0xc6]);
  const got = new ChunkReader().push(Buffer.concat([h0, body, h3, body]));
  assert.deepEqual(got.map((m) => m.timestamp), [40, 80]);
});

test('chunks: hostile headers give ChunkError, never a big allocation', () => {
  // a 16 MB message header with 10 bytes of body: nothing is allocated for the declared size
  const r = new ChunkReader({ maxMessageBytes: 1 << 20 });
  assert.throws(() => r.push(Buffer.from([0x06, 0, 0, 0, 0xff, 0xff, 0xff, 9, 1, 0, 0, 0, 1, 2, 3])), (e: unknown) => e instanceof ChunkError && e.code === 'RTMP_MESSAGE_TOO_LARGE');
  // fmt 1 on a fresh chunk stream
  assert.throws(() => new ChunkReader().push(Buffer.from([0x46, 0, 0, 0, 0, 0, 1, 9])), ChunkError);
  // a dead reader stays dead
  assert.throws(() => r.push(Buffer.alloc(1)), ChunkError);
  const before = process.memoryUsage().arrayBuffers;
  fc.assert(
    fc.property(fc.array(fc.uint8Array({ minLength: 1, maxLength: 200 }), { maxLength: 10 }), (chunks) => {
      const reader = new ChunkReader({ maxMessageBytes: 64 * 1024, maxPendingBytes: 128 * 1024 });
      try {
        for (const c of chunks) reader.push(Buffer.from(c));
      } catch (err) {
        assert.ok(err instanceof ChunkError, `unexpected ${String(err)}`);
      }
    }),
    { numRuns: 5000 },
  );
  // arbitrary input at most 2 KB per run: memory must not have grown by anything like a message size
  assert.ok(process.memoryUsage().arrayBuffers - before < 64 * 1024 * 1024);
});

test('chunks: pending bytes across interleaved messages are capped', () => {
  const r = new ChunkReader({ maxMessageBytes: 1000, maxPendingBytes: 500 });
  const parts: Buffer[] = [];
  for (let cs = 3; cs < 10; cs++) parts.push(Buffer.from([cs, 0, 0, 0, 0, 0x03, 0xe8, 9, 1, 0, 0, 0]), Buffer.alloc(128));
  assert.throws(() => r.push(Buffer.concat(parts)), (e: unknown) => e instanceof ChunkError && e.code === 'RTMP_CHUNK_OVERFLOW');
});

// ---------------------------------------------------------------------------------------------
// FLV / AVC

const SPS = Buffer.from('6742c01e95a0280bfe5c0440000003004000000f23c58ba8', 'hex');
const PPS = Buffer.from('68ce3c80', 'hex');
function avcConfig(): Buffer {
  return Buffer.concat([Buffer.from([1, 0x42, 0xc0, 0x1e, 0xff, 0xe1]), Buffer.from([0, SPS.length]), SPS, Buffer.from([1, 0, PPS.length]), PPS]);
}
function avcc(...nals: Buffer[]): Buffer {
  return Buffer.concat(nals.flatMap((n) => [u32(n.length), n]));
}

test('FLV: sequence header → SPS/PPS; IDR gets SPS/PPS in front; P frame passes as is', () => {
  const cfg = parseAvcDecoderConfig(avcConfig());
  assert.equal(cfg.lengthSize, 4);
  assert.ok(cfg.sps[0]!.equals(SPS) && cfg.pps[0]!.equals(PPS));
  const d = new AvcDepacketizer();
  assert.equal(d.push(Buffer.concat([Buffer.from([0x17, 1, 0, 0, 0]), avcc(Buffer.from([0x65, 1, 2]))])), null, 'dropped before config');
  assert.equal(d.push(Buffer.concat([Buffer.from([0x17, 0, 0, 0, 0]), avcConfig()])), 'config');
  const idr = d.push(Buffer.concat([Buffer.from([0x17, 1, 0, 0, 40]), avcc(Buffer.from([0x06, 5]), Buffer.from([0x65, 1, 2]))]));
  assert.ok(idr && idr !== 'config');
  assert.equal(idr.key, true);
  assert.equal(idr.cts, 40);
  const sc = Buffer.from([0, 0, 0, 1]);
  assert.ok(idr.data.equals(Buffer.concat([sc, SPS, sc, PPS, sc, Buffer.from([0x06, 5]), sc, Buffer.from([0x65, 1, 2])])));
  const p = d.push(Buffer.concat([Buffer.from([0x27, 1, 0xff, 0xff, 0xf6]), avcc(Buffer.from([0x41, 9]))]));
  assert.ok(p && p !== 'config');
  assert.equal(p.key, false);
  assert.equal(p.cts, -10);
  assert.ok(p.data.equals(Buffer.concat([sc, Buffer.from([0x41, 9])])));
  assert.equal(d.counters.droppedNoConfig, 1);
});

test('FLV: hostile NAL lengths and configs give typed errors; the depacketizer counts and goes on', () => {
  assert.throws(() => splitAvcc(Buffer.from([0xff, 0xff, 0xff, 0xff, 1]), 4), FlvError);
  assert.throws(() => parseAvcDecoderConfig(Buffer.from([1, 0x42, 0, 0x1e, 0xff, 0xe1, 0xff, 0xff])), FlvError);
  assert.equal(parseVideoTag(Buffer.from([0x1c, 0, 0, 0, 0])).kind, 'other');
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
      try {
        parseVideoTag(Buffer.from(bytes));
      } catch (err) {
        assert.ok(err instanceof FlvError, `unexpected ${String(err)}`);
      }
      const d = new AvcDepacketizer();
      d.push(Buffer.concat([Buffer.from([0x17, 0, 0, 0, 0]), avcConfig()]));
      d.push(Buffer.from(bytes)); // never throws
    }),
    { numRuns: 3000 },
  );
});

// ---------------------------------------------------------------------------------------------
// Handshake + session

test('handshake: C0+C1 → S0+S1+S2 (S2 echoes C1), then C2; a non-RTMP peer is refused', () => {
  const hs = new ServerHandshake(rnd, () => 1000);
  const c0c1 = clientC0C1((n) => Buffer.alloc(n, 3));
  assert.equal(hs.push(c0c1.subarray(0, 100)).state, 'need-more');
  const step = hs.push(c0c1.subarray(100));
  assert.equal(step.state, 'reply');
  if (step.state !== 'reply') return;
  assert.equal(step.send.length, 1 + 2 * HANDSHAKE_SIZE);
  assert.equal(step.send[0], 3);
  assert.ok(step.send.subarray(1 + HANDSHAKE_SIZE + 8).equals(c0c1.subarray(1 + 8)));
  const done = hs.push(Buffer.concat([Buffer.alloc(HANDSHAKE_SIZE), Buffer.from([1, 2])]));
  assert.equal(done.state, 'done');
  if (done.state === 'done') assert.deepEqual([...done.rest], [1, 2]);
  assert.throws(() => new ServerHandshake(rnd, () => 0).push(Buffer.from('GET / HTTP/1.1\r\n')), HandshakeError);
});

interface Captured {
  sent: Buffer[];
  publishes: PublishRequest[];
  videos: Array<{ ts: number; body: Buffer }>;
  closed: string[];
  unpublished: number;
}

function makeSession(accept: (r: PublishRequest) => boolean): { s: RtmpServerSession; c: Captured } {
  const c: Captured = { sent: [], publishes: [], videos: [], closed: [], unpublished: 0 };
  const h: RtmpSessionHandler = {
    send: (b) => c.sent.push(b),
    onPublish: (r) => {
      c.publishes.push(r);
      return accept(r) ? { ok: true } : { ok: false, code: 'NetStream.Publish.BadName', description: 'bad key' };
    },
    onVideo: (ts, body) => c.videos.push({ ts, body }),
    onUnpublish: () => c.unpublished++,
    onClose: (reason) => c.closed.push(reason),
  };
  return { s: new RtmpServerSession(h, { random: rnd, nowMs: () => 0 }), c };
}

/** What a publisher (ffmpeg) sends, built with our writer and AMF encoder. */
function publisherBytes(key: string): Buffer {
  const w = new ChunkWriter(true);
  const cmd = (csid: number, streamId: number, ...v: Amf0Value[]): Buffer => w.encode({ csid, typeId: MSG.commandAmf0, streamId, timestamp: 0, payload: encodeAmf0(...v) });
  return Buffer.concat([
    clientC0C1(rnd),
    Buffer.alloc(HANDSHAKE_SIZE),
    w.encode({ csid: 2, typeId: MSG.setChunkSize, streamId: 0, timestamp: 0, payload: u32(4096) }),
    cmd(3, 0, 'connect', 1, { app: 'live', type: 'nonprivate', tcUrl: 'rtmp://127.0.0.1:1935/live' }),
    cmd(3, 0, 'releaseStream', 2, null, key),
    cmd(3, 0, 'FCPublish', 3, null, key),
    cmd(3, 0, 'createStream', 4, null),
    cmd(8, 1, 'publish', 5, null, key, 'live'),
  ]);
}

function sentCommands(sent: Buffer[]): string[] {
  const r = new ChunkReader();
  const all = Buffer.concat(sent).subarray(1 + 2 * HANDSHAKE_SIZE);
  const out: string[] = [];
  for (const m of r.push(all)) {
    if (m.typeId !== MSG.commandAmf0) continue;
    const v = decodeAmf0(m.payload);
    const info = v[3] && typeof v[3] === 'object' ? (v[3] as Record<string, Amf0Value>)['code'] : v[3];
    out.push(`${String(v[0])}${info !== undefined && info !== null ? ':' + String(info) : ''}`);
  }
  return out;
}

test('session: connect → createStream → publish with the right key → video flows', () => {
  const { s, c } = makeSession((r) => r.name === 'k3y');
  s.push(publisherBytes('k3y?token=1'));
  assert.deepEqual(c.publishes, [{ app: 'live', name: 'k3y', streamId: 1 }]);
  assert.ok(s.isPublishing);
  const cmds = sentCommands(c.sent);
  assert.deepEqual(cmds, ['_result:NetConnection.Connect.Success', '_result', '_result', 'onFCPublish:NetStream.Publish.Start', '_result:1', 'onStatus:NetStream.Publish.Start']);
  const w = new ChunkWriter(false);
  w.chunkSize = 4096;
  // the session's reader learned chunk size 4096 from the publisher's Set Chunk Size
  s.push(w.encode({ csid: 6, typeId: MSG.video, streamId: 1, timestamp: 33, payload: Buffer.from([0x17, 0, 0, 0, 0]) }));
  assert.equal(c.videos.length, 1);
  assert.equal(c.videos[0]!.ts, 33);
  s.push(w.encode({ csid: 3, typeId: MSG.commandAmf0, streamId: 0, timestamp: 0, payload: encodeAmf0('FCUnpublish', 6, null, 'k3y') }));
  assert.equal(c.unpublished, 1);
  assert.equal(s.isPublishing, false);
});

test('session: a wrong key gets onStatus error and the session closes', () => {
  const { s, c } = makeSession(() => false);
  s.push(publisherBytes('wrong'));
  assert.deepEqual(c.closed, ['publish-refused']);
  assert.ok(sentCommands(c.sent).includes('onStatus:NetStream.Publish.BadName'));
  assert.equal(s.isClosed, true);
});

test('session: arbitrary bytes after the handshake close the session with a typed error, never throw', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 400 }), (bytes) => {
      const { s, c } = makeSession(() => true);
      s.push(Buffer.concat([clientC0C1(rnd), Buffer.alloc(HANDSHAKE_SIZE)]));
      s.push(Buffer.from(bytes));
      assert.ok(c.closed.length <= 1);
    }),
    { numRuns: 3000 },
  );
});

// ---------------------------------------------------------------------------------------------
// FLV byte streams (cameras run through ffmpeg `-f flv`)

function flvFile(tags: Array<{ type: number; ts: number; body: Buffer }>): Buffer {
  const parts: Buffer[] = [Buffer.from([0x46, 0x4c, 0x56, 1, 1, 0, 0, 0, 9]), u32(0)];
  for (const t of tags) {
    const h = Buffer.alloc(11);
    h[0] = t.type;
    h.writeUIntBE(t.body.length, 1, 3);
    h.writeUIntBE(t.ts & 0xffffff, 4, 3);
    h[7] = (t.ts >>> 24) & 0xff;
    parts.push(h, t.body, u32(11 + t.body.length));
  }
  return Buffer.concat(parts);
}

test('FLV stream: tags come out whole at any split; in-band SPS/PPS start a stream with no sequence header', () => {
  const idr = Buffer.concat([Buffer.from([0x17, 1, 0, 0, 0]), avcc(SPS, PPS, Buffer.from([0x65, 0x88, 1]))]);
  const p = Buffer.concat([Buffer.from([0x27, 1, 0, 0, 0]), avcc(Buffer.from([0x41, 0x9a, 2]))]);
  const file = flvFile([{ type: 18, ts: 0, body: Buffer.from('meta') }, { type: 9, ts: 0, body: idr }, { type: 9, ts: 0x1000021, body: p }]);
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 1, max: 40 }), { maxLength: 40 }), (pieces) => {
      const r = new FlvStreamReader();
      const d = new AvcDepacketizer(4);
      const units: Array<{ key: boolean; data: Buffer }> = [];
      const ts: number[] = [];
      let pos = 0;
      const feed = (b: Buffer) => {
        for (const t of r.push(b)) {
          ts.push(t.timestamp);
          if (t.type !== 9) continue;
          const u = d.push(t.body);
          if (u && u !== 'config') units.push(u);
        }
      };
      for (const n of pieces) {
        if (pos >= file.length) break;
        feed(file.subarray(pos, pos + n));
        pos += n;
      }
      if (pos < file.length) feed(file.subarray(pos));
      assert.deepEqual(ts, [0, 0, 0x1000021]);
      assert.deepEqual(units.map((u) => u.key), [true, false]);
      assert.ok(d.config && d.config.sps[0]!.equals(SPS), 'parameter sets taken in-band');
    }),
    { numRuns: 300 },
  );
  assert.throws(() => new FlvStreamReader().push(Buffer.from('GIF89a....')), FlvError);
  const huge = flvFile([]);
  assert.throws(() => new FlvStreamReader(1024).push(Buffer.concat([huge, Buffer.from([9, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0])])), (e: unknown) => e instanceof FlvError && e.code === 'FLV_TAG_TOO_LARGE');
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
      try {
        new FlvStreamReader(4096).push(Buffer.concat([Buffer.from('FLV\x01\x01\0\0\0\x09', 'latin1'), Buffer.from(bytes)]));
      } catch (err) {
        assert.ok(err instanceof FlvError, String(err));
      }
    }),
    { numRuns: 2000 },
  );
});

test('session: before a publish is accepted, messages are capped at 64 KB (an unauthenticated peer holds little)', () => {
  const { s, c } = makeSession(() => true);
  s.push(Buffer.concat([clientC0C1(rnd), Buffer.alloc(HANDSHAKE_SIZE)]));
  // a 1 MB "command" header before any publish
  s.push(Buffer.from([0x03, 0, 0, 0, 0x10, 0, 0, 20, 0, 0, 0, 0]));
  assert.deepEqual(c.closed, ['protocol-error']);
  // after a publish, a 1 MB video message is fine
  const ok = makeSession(() => true);
  ok.s.push(publisherBytes('key'));
  const w = new ChunkWriter(false);
  w.chunkSize = 4096;
  ok.s.push(w.encode({ csid: 6, typeId: MSG.video, streamId: 1, timestamp: 0, payload: Buffer.alloc(1 << 20, 0x27) }));
  assert.equal(ok.c.videos.length, 1);
  assert.equal(ok.c.closed.length, 0);
});
