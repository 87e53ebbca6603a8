// The embedded default camera: ffmpeg's test source encoded to H.264 (or JPEG), run through the
// shared PipeSource (FLV tags → access units with ffmpeg's timestamps, SPS read for the MIME).
// Needs no hardware.

import { z } from 'zod';
import type { DriverOutput, EncodingCap, SourceDriver, TrackSpec } from '../../runtime/engine/api.js';
import { EncoderCapLoop } from './encoding-cap.js';
import { resolveFfmpeg } from '../exec/ffmpeg.js';
import { h264Mime } from '../../runtime/engine/h264.js';
import { PipeSource } from './pipe-source.js';

export const testPatternDriverSchema = z
  .object({
    kind: z.literal('testpattern'),
    track: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/).default('video'),
    codec: z.enum(['h264', 'jpeg']).default('h264'),
    width: z.number().int().min(16).max(3840).multipleOf(2).default(1280),
    height: z.number().int().min(16).max(2160).multipleOf(2).default(720),
    fps: z.number().int().min(1).max(60).default(30),
    bitrateKbps: z.number().int().min(50).max(50_000).default(2000),
    /** Seconds between keyframes (GOP length). */
    keyintSeconds: z.number().min(0.1).max(10).default(1),
    pattern: z.enum(['testsrc2', 'testsrc', 'smptebars', 'smptehdbars', 'rgbtestsrc']).default('testsrc2'),
    profile: z.enum(['baseline', 'main', 'high']).default('baseline'),
  })
  .strict();
export type TestPatternConfig = z.infer<typeof testPatternDriverSchema>;

export interface CameraDeps {
  ffmpegPath?: string;
}

export function testPatternArgs(c: TestPatternConfig): string[] {
  const gop = Math.max(1, Math.round(c.fps * c.keyintSeconds));
  const input = ['-hide_banner', '-loglevel', 'warning', '-nostdin', '-re', '-f', 'lavfi', '-i',
    `${c.pattern}=size=${c.width}x${c.height}:rate=${c.fps}`];
  if (c.codec === 'jpeg') {
    return [...input, '-c:v', 'mjpeg', '-q:v', '5', '-pix_fmt', 'yuvj420p', '-f', 'image2pipe', 'pipe:1'];
  }
  return [
    ...input,
    '-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-profile:v', c.profile,
    '-pix_fmt', 'yuv420p', '-g', String(gop), '-keyint_min', String(gop), '-sc_threshold', '0',
    '-b:v', `${c.bitrateKbps}k`, '-maxrate', `${c.bitrateKbps}k`, '-bufsize', `${Math.round(c.bitrateKbps / 2)}k`,
    // SPS/PPS in front of every IDR: a late subscriber can start at any keyframe.
    '-x264-params', 'repeat-headers=1',
    // FLV, not raw H.264: every tag carries ffmpeg's timestamp (frames keep the encoder's spacing
    // after a stall instead of arriving in one burst) and its size (a frame leaves at once).
    '-flush_packets', '1', '-f', 'flv', 'pipe:1',
  ];
}

export class TestPatternDriver implements SourceDriver {
  readonly kind = 'testpattern';
  private readonly pipe = new PipeSource();
  private readonly ffmpeg: string;
  private readonly caps: EncoderCapLoop;

  constructor(
    private readonly cfg: TestPatternConfig,
    deps: CameraDeps = {},
  ) {
    this.ffmpeg = resolveFfmpeg(deps.ffmpegPath).path;
    this.caps = new EncoderCapLoop({ fps: cfg.fps, bitrateKbps: cfg.bitrateKbps });
  }

  describe(): TrackSpec[] {
    const mime = this.cfg.codec === 'jpeg' ? 'image/jpeg' : h264Mime(undefined, this.cfg.fps);
    return [{ track: this.cfg.track, mime }];
  }

  async run(out: DriverOutput, signal: AbortSignal): Promise<void> {
    // one encoder child per effective cap; a cap change restarts it inside this run
    await this.caps.run(signal, (capped, childSignal) => this.runChildOnce(out, { ...this.cfg, fps: capped.fps, bitrateKbps: capped.bitrateKbps }, childSignal));
  }

  private runChildOnce(out: DriverOutput, cfg: TestPatternConfig, signal: AbortSignal): Promise<void> {
    return this.pipe.run(
      {
        child: { cmd: this.ffmpeg, args: testPatternArgs(cfg), label: `ffmpeg testpattern(${cfg.track})`, startTimeoutMs: 10_000, stallTimeoutMs: 5_000 },
        codec: cfg.codec === 'jpeg' ? 'jpeg' : 'h264-flv',
        track: cfg.track,
        fps: cfg.fps,
        jpegSize: { width: cfg.width, height: cfg.height },
        // lavfi makes exactly one image per 1/fps of its clock: image n was made at n/fps
        frameRateClock: cfg.codec === 'jpeg' ? cfg.fps : undefined,
      },
      out,
      signal,
    );
  }

  requestKeyframe(): boolean {
    return false; // ffmpeg's lavfi → x264 pipeline takes no keyframe requests; GOP is keyintSeconds.
  }

  /** fps/bitrate caps (thermal, uplink): the encoder restarts with capped arguments. */
  setEncodingCap(by: string, cap: EncodingCap | null): boolean {
    return this.caps.set(by, cap);
  }

  stats() {
    return { ...this.pipe.stats(), ...this.caps.stats() };
  }
}

export function createTestPatternDriver(cfg: TestPatternConfig, deps: CameraDeps = {}): TestPatternDriver {
  return new TestPatternDriver(cfg, deps);
}
