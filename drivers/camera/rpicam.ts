// Raspberry Pi camera through `rpicam-vid` (or `libcamera-vid` on Bullseye-era images): H.264
// Annex-B on stdout with inline SPS/PPS before every IDR, size/fps/bitrate/intra period from
// config. rpicam-vid encodes on the VideoCore on Pi 4 and older; on Pi 5 (no hardware encoder)
// it uses its libav software path, so keep the size modest there (board profile).

import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { z } from 'zod';
import { EdgeError, type DriverOutput, type DriverStats, type EncodingCap, type SourceDriver, type TrackSpec } from '../../runtime/engine/api.js';
import { EncoderCapLoop } from './encoding-cap.js';
import { h264Mime } from '../../runtime/engine/h264.js';
import { classifyCommon, PipeSource } from './pipe-source.js';

const trackLabel = z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/);

export const rpicamDriverSchema = z
  .object({
    kind: z.literal('rpicam'),
    track: trackLabel.default('video'),
    /** Camera index as `rpicam-vid --list-cameras` numbers them. */
    camera: z.number().int().min(0).max(7).default(0),
    width: z.number().int().min(64).max(4608).multipleOf(2).default(1280),
    height: z.number().int().min(64).max(2592).multipleOf(2).default(720),
    fps: z.number().min(1).max(120).default(30),
    bitrateKbps: z.number().int().min(100).max(25_000).default(2000),
    /** Frames between IDRs. Short: the tool cannot make a keyframe on request. Default = 1 s. */
    intraFrames: z.number().int().min(1).max(600).optional(),
    profile: z.enum(['baseline', 'main', 'high']).default('baseline'),
    level: z.enum(['4', '4.1', '4.2']).default('4.1'),
    hflip: z.boolean().default(false),
    vflip: z.boolean().default(false),
    rotation: z.union([z.literal(0), z.literal(180)]).default(0),
    /** `auto` finds rpicam-vid, then libcamera-vid, on PATH. */
    tool: z.enum(['auto', 'rpicam-vid', 'libcamera-vid']).default('auto'),
    startTimeoutMs: z.number().int().min(1000).max(60_000).default(10_000),
    stallTimeoutMs: z.number().int().min(500).max(60_000).default(3000),
  })
  .strict();
export type RpicamConfig = z.infer<typeof rpicamDriverSchema>;

export interface RpicamDeps {
  /** An absolute path to the tool (tests, unusual installs); skips the PATH search. */
  toolPath?: string;
  /** PATH to search; defaults to process.env.PATH. */
  searchPath?: string;
}

export function rpicamArgs(c: RpicamConfig): string[] {
  const intra = c.intraFrames ?? Math.max(1, Math.round(c.fps));
  const args = [
    '--camera', String(c.camera),
    '-t', '0', // run until stopped
    '-n', // no preview window on a headless robot
    '--codec', 'h264',
    '--inline', // SPS/PPS before every IDR: a subscriber can start at any keyframe
    '--flush', // flush stdout after every frame: latency over syscalls
    '--width', String(c.width),
    '--height', String(c.height),
    '--framerate', String(c.fps),
    '--bitrate', String(c.bitrateKbps * 1000),
    '--intra', String(intra),
    '--profile', c.profile,
    '--level', c.level,
  ];
  if (c.hflip) args.push('--hflip');
  if (c.vflip) args.push('--vflip');
  if (c.rotation) args.push('--rotation', String(c.rotation));
  args.push('-o', '-');
  return args;
}

function isExecutable(p: string): boolean {
  try {
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export function resolveRpicamTool(tool: RpicamConfig['tool'], deps: RpicamDeps = {}): string {
  if (deps.toolPath) {
    if (!deps.toolPath.startsWith('/') || !isExecutable(deps.toolPath)) {
      throw new EdgeError('RPICAM_NOT_FOUND', `${deps.toolPath} is not an executable absolute path`);
    }
    return deps.toolPath;
  }
  const names = tool === 'auto' ? ['rpicam-vid', 'libcamera-vid'] : [tool];
  const dirs = (deps.searchPath ?? process.env.PATH ?? '/usr/bin:/bin').split(delimiter).filter((d) => d.startsWith('/'));
  for (const n of names) for (const d of dirs) if (isExecutable(join(d, n))) return join(d, n);
  throw new EdgeError('RPICAM_NOT_FOUND', `no ${names.join(' or ')} on PATH (install rpicam-apps)`, { searched: names });
}

export class RpicamDriver implements SourceDriver {
  readonly kind = 'rpicam';
  private readonly pipe = new PipeSource();
  private readonly tool: string;
  private readonly caps: EncoderCapLoop;

  constructor(private readonly cfg: RpicamConfig, deps: RpicamDeps = {}) {
    this.tool = resolveRpicamTool(cfg.tool, deps);
    this.caps = new EncoderCapLoop({ fps: cfg.fps, bitrateKbps: cfg.bitrateKbps });
  }

  describe(): TrackSpec[] {
    return [{ track: this.cfg.track, mime: h264Mime(undefined, this.cfg.fps) }];
  }

  async run(out: DriverOutput, signal: AbortSignal): Promise<void> {
    // one rpicam-vid per effective cap: it cannot change framerate/bitrate while it runs
    await this.caps.run(signal, (capped, childSignal) => this.runOnce(out, { ...this.cfg, fps: capped.fps, bitrateKbps: capped.bitrateKbps }, childSignal));
  }

  private async runOnce(out: DriverOutput, cfg: RpicamConfig, signal: AbortSignal): Promise<void> {
    const name = this.tool.split('/').pop() ?? 'rpicam-vid';
    await this.pipe.run(
      {
        codec: 'h264',
        track: cfg.track,
        fps: cfg.fps,
        child: {
          cmd: this.tool,
          args: rpicamArgs(cfg),
          label: `${name}(camera ${cfg.camera})`,
          startTimeoutMs: cfg.startTimeoutMs,
          stallTimeoutMs: cfg.stallTimeoutMs,
          // libcamera releases the sensor on SIGTERM; give it time or the next start finds it busy
          killGraceMs: 2000,
        },
        classify: (e) =>
          // the sensor stopped delivering (ribbon, power): libcamera's dequeue timer fires
          /dequeue|frontend has timed out/i.test(e.message) ? 'RPICAM_CAMERA_LOST'
            : classifyCommon('RPICAM', e.message) ?? (e.code === 'PROCESS_EXITED' ? 'RPICAM_EXITED' : undefined),
      },
      out,
      signal,
    );
  }

  /** fps/bitrate caps (thermal, uplink): rpicam-vid restarts with capped --framerate/--bitrate. */
  setEncodingCap(by: string, cap: EncodingCap | null): boolean {
    return this.caps.set(by, cap);
  }

  requestKeyframe(): boolean {
    return false; // rpicam-vid has no IDR-on-request (its signals pause/quit); intraFrames bounds the wait
  }

  stats(): DriverStats {
    return { tool: this.tool, camera: this.cfg.camera, ...this.pipe.stats(), ...this.caps.stats() };
  }
}

export function createRpicamDriver(cfg: z.input<typeof rpicamDriverSchema>, deps: RpicamDeps = {}): RpicamDriver {
  const parsed = rpicamDriverSchema.safeParse(cfg);
  if (!parsed.success) {
    throw new EdgeError('CONFIG_INVALID', `rpicam driver: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  }
  return new RpicamDriver(parsed.data, deps);
}
