// V4L2 / USB camera through ffmpeg's v4l2 demuxer:
//  - H.264 cameras: the camera's own H.264 copied through (no transcoding), split into AUs;
//  - MJPEG cameras: each JPEG as one frame of an image/jpeg track, or encoded to H.264;
//  - raw (YUYV) cameras: encoded to H.264.
// Encoding uses the board's encoder: h264_v4l2m2m on a Pi 4 (and Pi 3/Zero 2 W), libx264
// ultrafast/zerolatency where there is none (Pi 5, Orin Nano, x86). The board profile picks `auto`.

import { z } from 'zod';
import { EdgeError, type DriverOutput, type DriverStats, type EncodingCap, type SourceDriver, type TrackSpec } from '../../runtime/engine/api.js';
import { EncoderCapLoop, type CappedSettings } from './encoding-cap.js';
import { resolveFfmpeg } from '../exec/ffmpeg.js';
import { h264Mime } from '../../runtime/engine/h264.js';
import { classifyCommon, PipeSource } from './pipe-source.js';

export interface CameraDeps {
  ffmpegPath?: string;
}

/** /dev/videoN or a stable udev name under /dev/v4l/by-id or by-path. Nothing else reaches ffmpeg. */
export const V4L2_DEVICE_RE = /^\/dev\/(?:video\d{1,3}|v4l\/by-(?:id|path)\/[A-Za-z0-9._:+-]{1,200})$/;

const trackLabel = z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/);

export const v4l2DriverSchema = z
  .object({
    kind: z.literal('v4l2'),
    track: trackLabel.default('video'),
    device: z.string().regex(V4L2_DEVICE_RE, '/dev/videoN, /dev/v4l/by-id/… or /dev/v4l/by-path/…').default('/dev/video0'),
    /** What the camera delivers (see `moth-edge devices`). */
    inputFormat: z.enum(['h264', 'mjpeg', 'yuyv422']).default('h264'),
    /** The track: H.264 (passthrough for an H.264 camera, else encoded) or JPEG images (mjpeg only). */
    output: z.enum(['h264', 'jpeg']).default('h264'),
    width: z.number().int().min(16).max(4096).multipleOf(2).default(1280),
    height: z.number().int().min(16).max(2160).multipleOf(2).default(720),
    fps: z.number().int().min(1).max(120).default(30),
    /** Encoder when one is needed. `auto` = what the board profile says, else libx264. */
    encoder: z.enum(['auto', 'h264_v4l2m2m', 'libx264']).default('auto'),
    bitrateKbps: z.number().int().min(100).max(50_000).default(2000),
    /** Seconds between keyframes when encoding. */
    keyintSeconds: z.number().min(0.2).max(10).default(1),
    startTimeoutMs: z.number().int().min(1000).max(60_000).default(8000),
    stallTimeoutMs: z.number().int().min(500).max(60_000).default(3000),
  })
  .strict()
  .refine((c) => !(c.output === 'jpeg' && c.inputFormat !== 'mjpeg'), { message: 'output "jpeg" needs inputFormat "mjpeg"', path: ['output'] });
export type V4l2Config = z.infer<typeof v4l2DriverSchema>;

export interface V4l2Deps extends CameraDeps {
  /** The board's preferred H.264 encoder (board profile), used when encoder is `auto`. */
  boardEncoder?: 'h264_v4l2m2m' | 'libx264';
}

export type V4l2Mode = 'h264-passthrough' | 'jpeg-passthrough' | 'encode';

export function v4l2Mode(c: V4l2Config): V4l2Mode {
  if (c.output === 'jpeg') return 'jpeg-passthrough';
  if (c.inputFormat === 'h264') return 'h264-passthrough';
  return 'encode';
}

const FLV_OUT = ['-flush_packets', '1', '-f', 'flv', 'pipe:1'];

/**
 * `outFps` below the camera's fps (a thermal/uplink cap) drops frames before the encoder (`-r`):
 * the camera keeps its mode, only the encoded rate falls. Ignored for passthrough.
 */
export function v4l2Args(c: V4l2Config, boardEncoder?: 'h264_v4l2m2m' | 'libx264', outFps?: number): string[] {
  const input = [
    '-hide_banner', '-loglevel', 'warning', '-nostdin',
    '-fflags', 'nobuffer', '-flags', 'low_delay',
    '-f', 'v4l2', '-input_format', c.inputFormat,
    '-video_size', `${c.width}x${c.height}`, '-framerate', String(c.fps),
    '-i', c.device,
    '-map', '0:v:0', '-an',
  ];
  const mode = v4l2Mode(c);
  if (mode === 'jpeg-passthrough') return [...input, '-c:v', 'copy', '-f', 'mjpeg', 'pipe:1'];
  if (mode === 'h264-passthrough') {
    // FLV out: frame ends are explicit (no wait for the next frame); UVC cameras put SPS/PPS in-band
    return [...input, '-c:v', 'copy', ...FLV_OUT];
  }
  const enc = c.encoder === 'auto' ? boardEncoder ?? 'libx264' : c.encoder;
  const fps = outFps !== undefined && outFps < c.fps ? Math.max(1, Math.floor(outFps)) : c.fps;
  if (fps !== c.fps) input.push('-r', String(fps));
  const gop = Math.max(1, Math.round(fps * c.keyintSeconds));
  const rate = ['-b:v', `${c.bitrateKbps}k`, '-maxrate', `${c.bitrateKbps}k`, '-bufsize', `${Math.max(100, Math.round(c.bitrateKbps / 2))}k`];
  if (enc === 'h264_v4l2m2m') {
    // The Pi's bcm2835 codec wants yuv420p; SPS/PPS go before each IDR on our side (AvcDepacketizer).
    return [...input, '-pix_fmt', 'yuv420p', '-c:v', 'h264_v4l2m2m', ...rate, '-g', String(gop), ...FLV_OUT];
  }
  return [...input, '-pix_fmt', 'yuv420p', '-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency',
    '-profile:v', 'baseline', ...rate, '-g', String(gop), '-keyint_min', String(gop), '-sc_threshold', '0',
    '-x264-params', 'repeat-headers=1', ...FLV_OUT];
}

export class V4l2Driver implements SourceDriver {
  readonly kind = 'v4l2';
  private readonly pipe = new PipeSource();
  private readonly ffmpeg: string;
  private readonly caps: EncoderCapLoop;

  constructor(private readonly cfg: V4l2Config, private readonly deps: V4l2Deps = {}) {
    this.ffmpeg = resolveFfmpeg(deps.ffmpegPath).path;
    this.caps = new EncoderCapLoop({ fps: cfg.fps, bitrateKbps: cfg.bitrateKbps });
  }

  describe(): TrackSpec[] {
    const mime = this.cfg.output === 'jpeg' ? `image/jpeg;width=${this.cfg.width};height=${this.cfg.height}` : h264Mime(undefined, this.cfg.fps);
    return [{ track: this.cfg.track, mime }];
  }

  async run(out: DriverOutput, signal: AbortSignal): Promise<void> {
    // encode mode: one encoder child per effective cap (a cap change restarts it within this run)
    await this.caps.run(signal, (capped, childSignal) => this.runOnce(out, capped, childSignal));
  }

  private async runOnce(out: DriverOutput, capped: CappedSettings, signal: AbortSignal): Promise<void> {
    const encode = v4l2Mode(this.cfg) === 'encode';
    const cfg = encode ? { ...this.cfg, bitrateKbps: capped.bitrateKbps } : this.cfg;
    await this.pipe.run(
      {
        codec: this.cfg.output === 'jpeg' ? 'jpeg' : 'h264-flv',
        track: this.cfg.track,
        fps: encode ? capped.fps : this.cfg.fps,
        jpegSize: { width: this.cfg.width, height: this.cfg.height },
        child: {
          cmd: this.ffmpeg,
          args: v4l2Args(cfg, this.deps.boardEncoder, encode ? capped.fps : undefined),
          label: `ffmpeg v4l2(${this.cfg.device})`,
          startTimeoutMs: this.cfg.startTimeoutMs,
          stallTimeoutMs: this.cfg.stallTimeoutMs,
          killGraceMs: 1000,
        },
        classify: (e) =>
          // a camera unplugged mid-stream: ffmpeg's dequeue fails with ENODEV
          /vidioc_dqbuf/i.test(e.message) ? 'V4L2_DEVICE_LOST'
            : classifyCommon('V4L2', e.message) ?? (e.code === 'PROCESS_EXITED' ? 'V4L2_STREAM_ENDED' : undefined),
      },
      out,
      signal,
    );
  }

  /** Encode mode restarts its encoder with the cap; a passthrough camera cannot (false: unserved). */
  setEncodingCap(by: string, cap: EncodingCap | null): boolean {
    if (v4l2Mode(this.cfg) !== 'encode') return false;
    return this.caps.set(by, cap);
  }

  requestKeyframe(): boolean {
    return false; // ffmpeg's v4l2 input takes no keyframe requests; the GOP is the camera's (or keyintSeconds)
  }

  stats(): DriverStats {
    return { device: this.cfg.device, mode: v4l2Mode(this.cfg), ...this.pipe.stats(), ...(v4l2Mode(this.cfg) === 'encode' ? this.caps.stats() : {}) };
  }
}

export function createV4l2Driver(cfg: z.input<typeof v4l2DriverSchema>, deps: V4l2Deps = {}): V4l2Driver {
  const parsed = v4l2DriverSchema.safeParse(cfg);
  if (!parsed.success) {
    throw new EdgeError('CONFIG_INVALID', `v4l2 driver: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  }
  return new V4l2Driver(parsed.data, deps);
}
