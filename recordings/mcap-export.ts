// MCAP export: the video and sensor tracks of a time range in one file (@mcap/core), with
// Foxglove schemas (foxglove.CompressedVideo for H.264 as Annex B, foxglove.CompressedImage for
// JPEG, JSON for sensor records), every message on the one capture clock (log time = capture
// µs + the run's wallclock offset), so the tracks line up in Foxglove.
import fs from 'node:fs';
import path from 'node:path';
import { McapWriter, type IWritable } from '@mcap/core';
import { mimeBase } from '../runtime/engine/api.js';
import type { SegmentRow } from './index-db.js';
import { segmentPackets, toBytes } from './playback.js';
import { decodeFileHeader, scanRecords } from './record-file.js';

const TIME = {
  type: 'object',
  properties: { sec: { type: 'integer', minimum: 0 }, nsec: { type: 'integer', minimum: 0, maximum: 999999999 } },
};

// Field sets as published in foxglove/schemas (jsonschema flavour): bytes are base64 strings.
const COMPRESSED_VIDEO = {
  title: 'foxglove.CompressedVideo',
  description: 'A single frame of a compressed video bitstream',
  type: 'object',
  properties: {
    timestamp: TIME,
    frame_id: { type: 'string' },
    data: { type: 'string', contentEncoding: 'base64' },
    format: { type: 'string' },
  },
};

const COMPRESSED_IMAGE = {
  title: 'foxglove.CompressedImage',
  description: 'A compressed image',
  type: 'object',
  properties: {
    timestamp: TIME,
    frame_id: { type: 'string' },
    data: { type: 'string', contentEncoding: 'base64' },
    format: { type: 'string' },
  },
};

const RECORD = {
  title: 'moth.Record',
  description: 'A sensor record: the JSON object as published, or {text} / {data} for non-JSON payloads',
  type: 'object',
  additionalProperties: true,
};

class FileWritable implements IWritable {
  private pos = 0n;
  constructor(private readonly fd: number) {}
  position(): bigint {
    return this.pos;
  }
  async write(buffer: Uint8Array): Promise<void> {
    let off = 0;
    while (off < buffer.length) off += fs.writeSync(this.fd, buffer, off, buffer.length - off);
    this.pos += BigInt(buffer.length);
  }
}

/** AVCC (length-prefixed) sample → Annex B, with SPS/PPS in front of a keyframe that lacks them. */
export function avccToAnnexB(sample: Uint8Array, avcC: Uint8Array | null, key: boolean): Buffer {
  const lenSize = avcC && avcC.length > 4 ? (avcC[4]! & 3) + 1 : 4;
  const nals: Uint8Array[] = [];
  let off = 0;
  while (off + lenSize <= sample.length) {
    let n = 0;
    for (let i = 0; i < lenSize; i++) n = n * 256 + sample[off + i]!;
    off += lenSize;
    if (n === 0 || off + n > sample.length) break;
    nals.push(sample.subarray(off, off + n));
    off += n;
  }
  const hasSps = nals.some((x) => (x[0]! & 0x1f) === 7);
  const params: Uint8Array[] = [];
  if (key && !hasSps && avcC && avcC.length > 6) {
    let p = 5;
    const nsps = avcC[p++]! & 0x1f;
    for (let i = 0; i < nsps && p + 2 <= avcC.length; i++) {
      const l = (avcC[p]! << 8) | avcC[p + 1]!;
      params.push(avcC.subarray(p + 2, p + 2 + l));
      p += 2 + l;
    }
    const npps = avcC[p++] ?? 0;
    for (let i = 0; i < npps && p + 2 <= avcC.length; i++) {
      const l = (avcC[p]! << 8) | avcC[p + 1]!;
      params.push(avcC.subarray(p + 2, p + 2 + l));
      p += 2 + l;
    }
  }
  const sc = Buffer.from([0, 0, 0, 1]);
  return Buffer.concat([...params, ...nals].flatMap((x) => [sc, x]));
}

export interface ExportResult {
  messages: number;
  channels: number;
  segments: number;
  bytes: number;
}

function stamp(ns: bigint): { sec: number; nsec: number } {
  return { sec: Number(ns / 1_000_000_000n), nsec: Number(ns % 1_000_000_000n) };
}

/** Write the rows' messages within [fromMs, toMs] (wallclock) into an MCAP file at `out`. */
export async function exportMcap(root: string, rows: SegmentRow[], fromMs: number, toMs: number, out: string): Promise<ExportResult> {
  const segs = rows
    .filter((r) => r.present === 1 && r.wall_end_ms >= fromMs && r.wall_start_ms <= toMs)
    .sort((a, b) => a.start_us + a.offset_us - (b.start_us + b.offset_us));
  const tmp = `${out}.part`;
  const fd = fs.openSync(tmp, 'w');
  const res: ExportResult = { messages: 0, channels: 0, segments: 0, bytes: 0 };
  try {
    const w = new McapWriter({ writable: new FileWritable(fd), useStatistics: true, useChunks: true, useChunkIndex: true, useMessageIndex: true });
    await w.start({ profile: '', library: 'moth-edge recordings' });
    const enc = new TextEncoder();
    const schemas = new Map<string, number>();
    const schema = async (def: { title: string }) => {
      let id = schemas.get(def.title);
      if (id === undefined) {
        id = await w.registerSchema({ name: def.title, encoding: 'jsonschema', data: enc.encode(JSON.stringify(def)) });
        schemas.set(def.title, id);
      }
      return id;
    };
    const channels = new Map<string, { id: number; seq: number }>();
    const channel = async (topic: string, def: { title: string }) => {
      let c = channels.get(topic);
      if (!c) {
        const id = await w.registerChannel({ schemaId: await schema(def), topic, messageEncoding: 'json', metadata: new Map() });
        c = { id, seq: 0 };
        channels.set(topic, c);
      }
      return c;
    };
    for (const row of segs) {
      const topic = `/${row.channel}/${row.source}/${row.track}`;
      const frameId = `${row.channel}/${row.source}/${row.track}`;
      const abs = path.join(root, row.path);
      const offset = BigInt(Math.round(row.offset_us));
      res.segments++;
      if (row.kind === 'video') {
        const c = await channel(topic, COMPRESSED_VIDEO);
        const fromRel = Math.max(0, (fromMs - row.wall_start_ms) / 1000);
        const toRel = (toMs - row.wall_start_ms) / 1000;
        for await (const { packet, config } of segmentPackets(abs, fromRel, toRel)) {
          const capUs = BigInt(Math.round(row.start_us + packet.timestamp * 1e6));
          const ns = (capUs + offset) * 1000n;
          const data = avccToAnnexB(packet.data, config.description ? toBytes(config.description) : null, packet.type === 'key');
          const msg = { timestamp: stamp(ns), frame_id: frameId, data: data.toString('base64'), format: 'h264' };
          await w.addMessage({ channelId: c.id, sequence: c.seq++, logTime: ns, publishTime: ns, data: enc.encode(JSON.stringify(msg)) });
          res.messages++;
        }
      } else {
        const buf = fs.readFileSync(abs);
        const h = decodeFileHeader(buf);
        const jpeg = mimeBase(row.mime) === 'image/jpeg';
        const json = /json/.test(mimeBase(row.mime));
        const c = await channel(topic, jpeg ? COMPRESSED_IMAGE : RECORD);
        for (const r of scanRecords(buf, h.bodyStart)) {
          // the range is in wallclock (what the index and the user speak); the log time is the
          // capture clock on the run's offset (what orders and aligns the tracks)
          if (r.wallclock < fromMs || r.wallclock > toMs) continue;
          const ns = (BigInt(Math.round(r.ts)) + offset) * 1000n;
          let body: unknown;
          if (jpeg) body = { timestamp: stamp(ns), frame_id: frameId, data: r.payload.toString('base64'), format: 'jpeg' };
          else {
            let parsed: unknown;
            if (json) {
              try {
                parsed = JSON.parse(r.payload.toString('utf8'));
              } catch {
                parsed = undefined;
              }
            }
            if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) body = parsed;
            else if (parsed !== undefined) body = { value: parsed };
            else {
              const text = r.payload.toString('utf8');
              body = Buffer.from(text, 'utf8').equals(r.payload) ? { text } : { data: r.payload.toString('base64') };
            }
          }
          await w.addMessage({ channelId: c.id, sequence: c.seq++, logTime: ns, publishTime: ns, data: enc.encode(JSON.stringify(body)) });
          res.messages++;
        }
      }
    }
    await w.end();
    res.channels = channels.size;
  } catch (err) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  fs.fsyncSync(fd);
  fs.closeSync(fd);
  fs.renameSync(tmp, out);
  res.bytes = fs.statSync(out).size;
  return res;
}
