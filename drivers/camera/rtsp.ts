// RTSP camera: ffmpeg does the RTSP/RTP client work (TCP or UDP, digest/basic auth) and copies
// the H.264 out as Annex-B, never transcoding; our splitter cuts it into access units.
// A cut camera makes ffmpeg exit 0 as if the stream ended (field-notes), and a half-dead one keeps
// it waiting: both end the run (stream end = failure, stall watchdog) and the supervisor restarts.

import { z } from 'zod';
import { EdgeError, type DriverOutput, type DriverStats, type SourceDriver, type TrackSpec } from '../../runtime/engine/api.js';
import { resolveFfmpeg } from '../exec/ffmpeg.js';
import { h264Mime } from '../../runtime/engine/h264.js';
import { classifyCommon, PipeSource, redactUserinfo } from './pipe-source.js';

export interface CameraDeps {
  ffmpegPath?: string;
}

const trackLabel = z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/);

/** rtsp:// or rtsps:// with a host; no whitespace or control characters (it becomes one argv entry). */
export function validRtspUrl(s: string): boolean {
  if (!/^rtsps?:\/\//i.test(s) || /[\s\x00-\x1f\x7f]/.test(s)) return false;
  try {
    const u = new URL(s);
    return (u.protocol === 'rtsp:' || u.protocol === 'rtsps:') && u.hostname.length > 0;
  } catch {
    return false;
  }
}

export const rtspDriverSchema = z
  .object({
    kind: z.literal('rtsp'),
    track: trackLabel.default('video'),
    /** rtsp://host[:port]/path. Credentials may be inline or in username/password. */
    url: z.string().max(2048).refine(validRtspUrl, 'an rtsp:// or rtsps:// URL with a host'),
    username: z.string().max(256).optional(),
    password: z.string().max(256).optional(),
    /** TCP (interleaved) survives NAT and loss better; UDP has less latency on a clean LAN. */
    transport: z.enum(['tcp', 'udp']).default('tcp'),
    /** For the MIME only (the SPS carries no reliable frame rate). */
    fps: z.number().min(1).max(240).optional(),
    /** No frame within this → START_TIMEOUT (wrong path, camera booting). */
    startTimeoutMs: z.number().int().min(1000).max(120_000).default(10_000),
    /** Frames stop this long → the run ends and reconnects (a cut the TCP stack has not noticed). */
    stallTimeoutMs: z.number().int().min(500).max(60_000).default(3000),
  })
  .strict();
export type RtspConfig = z.infer<typeof rtspDriverSchema>;

/** The URL ffmpeg gets (credentials percent-encoded into userinfo) and the secrets to redact. */
export function rtspUrlWithCredentials(cfg: Pick<RtspConfig, 'url' | 'username' | 'password'>): { url: string; secrets: string[]; safeUrl: string } {
  const u = new URL(cfg.url);
  if (cfg.username !== undefined) u.username = encodeURIComponent(cfg.username);
  if (cfg.password !== undefined) u.password = encodeURIComponent(cfg.password);
  const secrets: string[] = [];
  if (u.password) {
    secrets.push(u.password, decodeURIComponent(u.password));
    if (cfg.password) secrets.push(cfg.password);
  }
  const safe = new URL(u.href);
  safe.username = '';
  safe.password = '';
  return { url: u.href, secrets: secrets.filter((s) => s.length >= 1), safeUrl: safe.href };
}

export function rtspArgs(cfg: RtspConfig, url: string): string[] {
  return [
    '-hide_banner', '-loglevel', 'warning', '-nostdin',
    // no input buffering: a frame leaves as soon as ffmpeg has it
    '-fflags', 'nobuffer', '-flags', 'low_delay',
    '-rtsp_transport', cfg.transport,
    // SDP sprop-parameter-sets give the codec at once; do not sit 5 s probing
    '-analyzeduration', '1000000', '-probesize', '1000000',
    '-i', url,
    '-map', '0:v:0', '-an', '-dn', '-sn',
    '-c:v', 'copy',
    // FLV: each frame ends where its tag says, so it leaves without waiting for the next one.
    // SPS/PPS from the SDP become the sequence header; we put them in front of every IDR.
    '-flush_packets', '1',
    '-f', 'flv', 'pipe:1',
  ];
}

export class RtspDriver implements SourceDriver {
  readonly kind = 'rtsp';
  private readonly pipe = new PipeSource();
  private readonly ffmpeg: string;
  private readonly target: { url: string; secrets: string[]; safeUrl: string };

  constructor(private readonly cfg: RtspConfig, deps: CameraDeps = {}) {
    this.ffmpeg = resolveFfmpeg(deps.ffmpegPath).path;
    this.target = rtspUrlWithCredentials(cfg);
  }

  describe(): TrackSpec[] {
    return [{ track: this.cfg.track, mime: h264Mime(undefined, this.cfg.fps) }];
  }

  /** Where it pulls from, without credentials (for logs, stats, the dashboard). */
  get safeUrl(): string {
    return this.target.safeUrl;
  }

  async run(out: DriverOutput, signal: AbortSignal): Promise<void> {
    const host = new URL(this.target.safeUrl).host;
    await this.pipe.run(
      {
        codec: 'h264-flv',
        track: this.cfg.track,
        fps: this.cfg.fps,
        child: {
          cmd: this.ffmpeg,
          args: rtspArgs(this.cfg, this.target.url),
          label: `ffmpeg rtsp(${host})`,
          redact: this.target.secrets,
          startTimeoutMs: this.cfg.startTimeoutMs,
          stallTimeoutMs: this.cfg.stallTimeoutMs,
          killGraceMs: 1000,
        },
        classify: (e) => classifyCommon('RTSP', e.message) ?? (e.code === 'PROCESS_EXITED' ? 'RTSP_STREAM_ENDED' : undefined),
      },
      out,
      signal,
    );
  }

  requestKeyframe(): boolean {
    return false; // ffmpeg's RTSP client sends no FIR/PLI on request; the camera's GOP rules
  }

  stats(): DriverStats {
    return { url: redactUserinfo(this.target.safeUrl), transport: this.cfg.transport, ...this.pipe.stats() };
  }
}

export function createRtspDriver(cfg: z.input<typeof rtspDriverSchema>, deps: CameraDeps = {}): RtspDriver {
  const parsed = rtspDriverSchema.safeParse(cfg);
  if (!parsed.success) {
    // zod's message may echo the URL: rebuild it without values
    throw new EdgeError('CONFIG_INVALID', `rtsp driver: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  }
  return new RtspDriver(parsed.data, deps);
}
