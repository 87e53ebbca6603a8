// ONVIF camera: the `onvif` package asks the camera (GetCapabilities → GetProfiles →
// GetStreamUri, WS-UsernameToken digest) where its H.264 stream is, and the RTSP driver pulls it.
// The same camera's PTZ service is offered to the control side (ptzOptions()).

import type { Cam } from 'onvif';
import { z } from 'zod';
import { EdgeError, type DriverOutput, type DriverStats, type SourceDriver, type TrackSpec } from '../../runtime/engine/api.js';
import type { OnvifOptions as PtzOnvifOptions } from '../ptz/onvif.js';
import { h264Mime } from '../../runtime/engine/h264.js';
import { createRtspDriver, rtpPortRangeSchema, type CameraDeps, type RtspDriver } from './rtsp.js';
import { DEFAULT_RTP_PORT_RANGE } from './rtsp-client/session.js';

const trackLabel = z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/);

export const onvifDriverSchema = z
  .object({
    kind: z.literal('onvif'),
    track: trackLabel.default('video'),
    /** Camera address (IP or DNS name), as `moth-edge discover` lists it. */
    host: z.string().regex(/^[A-Za-z0-9.-]{1,253}$|^\[[0-9a-fA-F:]+\]$/, 'a hostname or IP address'),
    port: z.number().int().min(1).max(65535).default(80),
    /** Device service path. */
    path: z.string().regex(/^\/[A-Za-z0-9_./-]{0,200}$/).default('/onvif/device_service'),
    // The onvif package writes the username into the SOAP XML unescaped: keep it to safe characters.
    username: z.string().regex(/^[A-Za-z0-9_.@-]{1,64}$/, 'letters, digits and _ . @ -'),
    password: z.string().min(1).max(128),
    /** A media profile token; default the first H.264 profile (the camera's main stream). */
    profileToken: z.string().regex(/^[A-Za-z0-9_.:-]{1,64}$/).optional(),
    /** Use the configured host/port in service addresses (a camera behind NAT reports its own LAN IP). */
    preserveAddress: z.boolean().default(false),
    transport: z.enum(['tcp', 'udp']).default('tcp'),
    /** UDP transport: local RTP/RTCP ports, as the rtsp driver's rtpPortRange. */
    rtpPortRange: rtpPortRangeSchema.default([...DEFAULT_RTP_PORT_RANGE] as [number, number]),
    /** The RTSP client for the stream (see the rtsp driver): native, or ffmpeg as the fallback. */
    client: z.enum(['native', 'ffmpeg']).default('native'),
    /** SOAP call timeout. */
    soapTimeoutMs: z.number().int().min(500).max(60_000).default(5000),
    startTimeoutMs: z.number().int().min(1000).max(120_000).default(10_000),
    stallTimeoutMs: z.number().int().min(500).max(60_000).default(3000),
  })
  .strict();
export type OnvifCameraConfig = z.infer<typeof onvifDriverSchema>;

export interface OnvifStreamInfo {
  profileToken: string;
  profileName: string;
  /** The RTSP URI from GetStreamUri (credentials are added by the RTSP driver, never stored here). */
  streamUri: string;
  width: number | null;
  height: number | null;
  fps: number | null;
  /** The PTZ service URL, when the camera has one and the profile carries a PTZ configuration. */
  ptzXAddr: string | null;
  /** Device clock minus ours, as the package measured it (ms). */
  timeShiftMs: number | null;
}

interface ProfileShape {
  $?: { token?: string };
  name?: string;
  videoEncoderConfiguration?: { encoding?: string; resolution?: { width?: number | string; height?: number | string }; rateControl?: { frameRateLimit?: number | string } };
  PTZConfiguration?: unknown;
}

function num(v: unknown): number | null {
  const n = typeof v === 'number' ? v : typeof v === 'string' ? Number(v) : NaN;
  return Number.isFinite(n) && n > 0 ? n : null;
}

function mapOnvifError(err: unknown, host: string, what: string): EdgeError {
  const msg = String((err as Error)?.message ?? err);
  const ctx = { host, step: what };
  if (/not ?authori[sz]ed|unauthori[sz]ed|authentication failed|401/i.test(msg)) return new EdgeError('ONVIF_AUTH_FAILED', `${what}: camera ${host} refused the credentials`, ctx);
  if (/ECONNREFUSED|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN|timeout|ETIMEDOUT|ECONNRESET/i.test(msg)) {
    return new EdgeError('ONVIF_CONNECT_FAILED', `${what}: camera ${host} unreachable (${msg.slice(0, 120)})`, ctx);
  }
  return new EdgeError('ONVIF_FAILED', `${what}: ${msg.slice(0, 200)}`, ctx);
}

/** Ask the camera for its stream (and PTZ) addresses. One SOAP conversation; no resource kept. */
export async function resolveOnvifStream(cfg: OnvifCameraConfig): Promise<OnvifStreamInfo> {
  // Loaded on first use: the package costs ~11 MB of RSS that a robot without ONVIF cameras never needs.
  const { Cam } = await import('onvif');
  const cam = new Cam({
    hostname: cfg.host,
    port: cfg.port,
    path: cfg.path,
    username: cfg.username,
    password: cfg.password,
    timeout: cfg.soapTimeoutMs,
    autoconnect: false,
    preserveAddress: cfg.preserveAddress,
  });
  // The package reports some failures by 'error' events as well as callbacks.
  const camEvents = cam as unknown as { on(ev: string, fn: (...a: unknown[]) => void): void };
  camEvents.on('error', () => {});
  camEvents.on('warning', () => {});
  const overall = cfg.soapTimeoutMs * 4;
  const withTimeout = <T>(p: Promise<T>, what: string): Promise<T> => {
    let timer: NodeJS.Timeout | undefined;
    return Promise.race([
      p,
      new Promise<T>((_, reject) => {
        timer = setTimeout(() => reject(new EdgeError('ONVIF_CONNECT_FAILED', `${what}: no answer from ${cfg.host} in ${overall} ms`, { host: cfg.host })), overall);
      }),
    ]).finally(() => clearTimeout(timer));
  };
  await withTimeout(
    new Promise<void>((resolve, reject) => {
      try {
        cam.connect((err: Error | null) => (err ? reject(mapOnvifError(err, cfg.host, 'connect')) : resolve()));
      } catch (err) {
        // getActiveSources throws synchronously on a camera with no usable profile
        reject(new EdgeError('ONVIF_NO_PROFILE', `camera ${cfg.host}: ${(err as Error).message}`, { host: cfg.host }));
      }
    }),
    'connect',
  );
  const camState = cam as unknown as { profiles?: ProfileShape[]; uri?: Record<string, { href?: string } | undefined>; timeShift?: number };
  const profiles = camState.profiles ?? [];
  const h264 = profiles.filter((p) => String(p.videoEncoderConfiguration?.encoding ?? '').toUpperCase() === 'H264');
  const chosen = cfg.profileToken ? profiles.find((p) => p.$?.token === cfg.profileToken) : h264[0];
  if (!chosen || !chosen.$?.token) {
    const tokens = profiles.map((p) => p.$?.token).filter(Boolean).join(', ');
    throw new EdgeError('ONVIF_NO_PROFILE', cfg.profileToken ? `camera ${cfg.host} has no profile ${cfg.profileToken} (has: ${tokens || 'none'})` : `camera ${cfg.host} has no H.264 profile (has: ${tokens || 'none'})`, { host: cfg.host });
  }
  const enc = String(chosen.videoEncoderConfiguration?.encoding ?? '').toUpperCase();
  if (enc && enc !== 'H264') throw new EdgeError('ONVIF_NOT_H264', `profile ${chosen.$.token} encodes ${enc}; only H.264 passes through`, { host: cfg.host });
  const token = chosen.$.token;
  const uri = await withTimeout(
    new Promise<string>((resolve, reject) => {
      cam.getStreamUri({ protocol: 'RTSP', profileToken: token }, (err: Error | null, res?: { uri?: string }) => {
        if (err) return reject(mapOnvifError(err, cfg.host, 'GetStreamUri'));
        const u = typeof res?.uri === 'string' ? res.uri.trim() : '';
        if (!/^rtsps?:\/\//i.test(u)) return reject(new EdgeError('ONVIF_BAD_STREAM_URI', `camera ${cfg.host} gave no RTSP URI for ${token}`, { host: cfg.host }));
        resolve(u);
      });
    }),
    'GetStreamUri',
  );
  const ptz = camState.uri?.['ptz']?.href ?? null;
  return {
    profileToken: token,
    profileName: typeof chosen.name === 'string' ? chosen.name : token,
    streamUri: uri,
    width: num(chosen.videoEncoderConfiguration?.resolution?.width),
    height: num(chosen.videoEncoderConfiguration?.resolution?.height),
    fps: num(chosen.videoEncoderConfiguration?.rateControl?.frameRateLimit),
    ptzXAddr: chosen.PTZConfiguration !== undefined && ptz ? ptz : null,
    timeShiftMs: typeof camState.timeShift === 'number' ? camState.timeShift : null,
  };
}

// RTSP failures after which the stream address may have changed (camera rebooted, DHCP).
const RESOLVE_AGAIN = new Set(['RTSP_NOT_FOUND', 'RTSP_CONNECT_FAILED', 'START_TIMEOUT']);

export class OnvifCameraDriver implements SourceDriver {
  readonly kind = 'onvif';
  private info: OnvifStreamInfo | null = null;
  private rtsp: RtspDriver | null = null;
  private resolves = 0;
  private resolveFailures = 0;
  private lastError: string | null = null;
  private lastErrorCode: string | null = null;

  constructor(private readonly cfg: OnvifCameraConfig, private readonly deps: CameraDeps = {}) {}

  describe(): TrackSpec[] {
    return [{ track: this.cfg.track, mime: h264Mime(undefined) }];
  }

  /** What the control side needs to drive this camera's PTZ head (drivers/ptz/onvif.ts options). */
  ptzOptions(name: string): PtzOnvifOptions & { xaddr: string | null } {
    return {
      name,
      hostname: this.cfg.host,
      port: this.cfg.port,
      username: this.cfg.username,
      password: this.cfg.password,
      profileToken: this.info?.profileToken ?? this.cfg.profileToken,
      timeoutMs: this.cfg.soapTimeoutMs,
      xaddr: this.info?.ptzXAddr ?? null,
    };
  }

  /** The resolved stream, once a run asked the camera (null before). */
  get stream(): OnvifStreamInfo | null {
    return this.info;
  }

  async run(out: DriverOutput, signal: AbortSignal): Promise<void> {
    if (signal.aborted) return;
    if (!this.info || !this.rtsp) {
      this.resolves++;
      try {
        // The SOAP login goes through the camera account's DeviceAuth (shared with its RTSP stream
        // and PTZ service): 2 refusals, then a lock-out without touching the camera.
        const auth = this.deps.accounts?.get(this.cfg.host, this.cfg.username, { label: `camera ${this.cfg.host}`, context: { host: this.cfg.host, user: this.cfg.username } });
        this.info = auth
          ? await auth.run(async () => {
              try {
                return { ok: true as const, value: await resolveOnvifStream(this.cfg) };
              } catch (err) {
                const e = err instanceof EdgeError ? err : mapOnvifError(err, this.cfg.host, 'resolve');
                if (e.code === 'ONVIF_AUTH_FAILED') return { ok: false as const, refused: true as const };
                throw e;
              }
            }, { failed: 'ONVIF_AUTH_FAILED', locked: 'ONVIF_AUTH_LOCKED' })
          : await resolveOnvifStream(this.cfg);
      } catch (err) {
        this.resolveFailures++;
        const e = err instanceof EdgeError ? err : mapOnvifError(err, this.cfg.host, 'resolve');
        this.lastError = e.message;
        this.lastErrorCode = e.code;
        throw e;
      }
      if (signal.aborted) return;
      this.rtsp = createRtspDriver(
        {
          kind: 'rtsp',
          track: this.cfg.track,
          url: this.info.streamUri,
          username: this.cfg.username,
          password: this.cfg.password,
          transport: this.cfg.transport,
          rtpPortRange: this.cfg.rtpPortRange,
          client: this.cfg.client,
          fps: this.info.fps ?? undefined,
          startTimeoutMs: this.cfg.startTimeoutMs,
          stallTimeoutMs: this.cfg.stallTimeoutMs,
        },
        this.deps,
      );
    }
    try {
      await this.rtsp.run(out, signal);
    } catch (err) {
      const e = err as EdgeError;
      this.lastError = e.message;
      this.lastErrorCode = e.code ?? null;
      if (RESOLVE_AGAIN.has(e.code)) this.info = null; // ask the camera again on the next run
      throw err;
    }
  }

  requestKeyframe(): boolean {
    return false;
  }

  setEncodingCap(): boolean {
    return false; // the camera encodes; RTSP passes its H.264 through
  }

  stats(): DriverStats {
    return {
      host: this.cfg.host,
      profileToken: this.info?.profileToken ?? null,
      streamUrl: this.rtsp?.safeUrl ?? null,
      ptzXAddr: this.info?.ptzXAddr ?? null,
      resolves: this.resolves,
      resolveFailures: this.resolveFailures,
      lastError: this.lastError,
      lastErrorCode: this.lastErrorCode,
      ...(this.rtsp ? prefixed(this.rtsp.stats()) : {}),
    };
  }
}

function prefixed(s: DriverStats): DriverStats {
  const out: DriverStats = {};
  for (const [k, v] of Object.entries(s)) out[`rtsp_${k}`] = v;
  return out;
}

export function createOnvifDriver(cfg: z.input<typeof onvifDriverSchema>, deps: CameraDeps = {}): OnvifCameraDriver {
  const parsed = onvifDriverSchema.safeParse(cfg);
  if (!parsed.success) {
    throw new EdgeError('CONFIG_INVALID', `onvif driver: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  }
  return new OnvifCameraDriver(parsed.data, deps);
}
