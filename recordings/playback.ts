// Playback: one continuous fMP4 for a time range of a track, remuxed (no transcoding) from the
// segments with mediabunny, as MediaMTX's playback server does. Starts at the keyframe at or
// before `from`, at time 0; timestamps follow the one capture clock (offset to the run's wallclock).
import path from 'node:path';
import { ALL_FORMATS, EncodedPacketSink, EncodedVideoPacketSource, FilePathSource, Input, Mp4OutputFormat, Output, StreamTarget, type EncodedPacket } from 'mediabunny';
import { EdgeError } from '../runtime/engine/api.js';
import type { SegmentRow } from './index-db.js';

export interface PlaybackRange {
  /** wallclock ms */
  fromMs: number;
  toMs: number;
}

export interface PlaybackResult {
  segments: number;
  packets: number;
  /** Set when a segment with a different codec configuration ended the stream early. */
  stoppedAt: string | null;
}

export function toBytes(d: AllowSharedBufferSource): Uint8Array {
  return ArrayBuffer.isView(d) ? new Uint8Array(d.buffer, d.byteOffset, d.byteLength) : new Uint8Array(d);
}

function sameConfig(a: VideoDecoderConfig, b: VideoDecoderConfig): boolean {
  const bytes = (d: AllowSharedBufferSource | undefined) => (d === undefined ? '' : Buffer.from(toBytes(d)).toString('hex'));
  return a.codec === b.codec && a.codedWidth === b.codedWidth && a.codedHeight === b.codedHeight && bytes(a.description) === bytes(b.description);
}

/** One video segment's packets with its decoder config. Closes the input when done. */
export async function* segmentPackets(abs: string, fromRel = 0, toRel = Infinity): AsyncGenerator<{ packet: EncodedPacket; config: VideoDecoderConfig }> {
  const input = new Input({ source: new FilePathSource(abs), formats: ALL_FORMATS });
  try {
    const track = await input.getPrimaryVideoTrack();
    if (!track) throw new EdgeError('PLAYBACK_NO_VIDEO', 'segment has no video track', { path: path.basename(abs) });
    const config = await track.getDecoderConfig();
    if (!config) throw new EdgeError('PLAYBACK_NO_CONFIG', 'segment has no decoder config', { path: path.basename(abs) });
    const sink = new EncodedPacketSink(track);
    const start = fromRel > 0 ? ((await sink.getKeyPacket(fromRel)) ?? (await sink.getFirstPacket())) : await sink.getFirstPacket();
    if (!start) return;
    for await (const packet of sink.packets(start)) {
      if (packet.timestamp > toRel) break;
      yield { packet, config };
    }
  } finally {
    input.dispose();
  }
}

/**
 * Remux `rows` (one track's video segments, any order) within the range into one fMP4 written
 * to `write` (which should resolve when the sink can take more: backpressure).
 */
export async function writePlayback(
  root: string,
  rows: SegmentRow[],
  range: PlaybackRange,
  write: (chunk: Uint8Array) => Promise<void>,
): Promise<PlaybackResult> {
  const segs = rows
    // an open segment (state recording) is a .part still being written: not played until closed
    .filter((r) => r.kind === 'video' && r.present === 1 && r.state !== 'recording' && r.wall_end_ms >= range.fromMs && r.wall_start_ms <= range.toMs)
    .sort((a, b) => a.start_us + a.offset_us - (b.start_us + b.offset_us));
  if (segs.length === 0) throw new EdgeError('PLAYBACK_EMPTY', 'no recording in that range');
  const output = new Output({
    format: new Mp4OutputFormat({ fastStart: 'fragmented', minimumFragmentDuration: 1 }),
    target: new StreamTarget(new WritableStream({ write: (c) => write(c.data) })),
  });
  const src = new EncodedVideoPacketSource('avc');
  output.addVideoTrack(src);
  await output.start();
  // Output time 0 is the first packet written (the keyframe at or before `from`), not the first
  // segment's start: a player's timeline then starts at its first frame, with no empty lead.
  let base: number | null = null;
  let first: VideoDecoderConfig | null = null;
  let lastOut = -Infinity;
  let packets = 0;
  let used = 0;
  let stoppedAt: string | null = null;
  try {
    outer: for (const row of segs) {
      const rowZero = row.start_us + row.offset_us;
      const fromRel = Math.max(0, (range.fromMs - row.wall_start_ms) / 1000);
      const toRel = (range.toMs - row.wall_start_ms) / 1000;
      let n = 0;
      for await (const { packet, config } of segmentPackets(path.join(root, row.path), fromRel, toRel)) {
        if (first === null) first = config;
        else if (!sameConfig(first, config)) {
          stoppedAt = row.path;
          break outer;
        }
        base ??= rowZero + Math.round(packet.timestamp * 1e6);
        const ts = (rowZero - base) / 1e6 + packet.timestamp;
        if (ts <= lastOut) continue; // overlapping segments (clock oddities): keep time moving forward
        lastOut = ts;
        await src.add(packet.clone({ timestamp: ts }), packets === 0 ? { decoderConfig: config } : undefined);
        packets++;
        n++;
      }
      if (n > 0) used++;
    }
    await output.finalize();
  } catch (err) {
    await output.cancel().catch(() => undefined);
    throw err;
  }
  return { segments: used, packets, stoppedAt };
}
