// RTSP camera, H.264 passed through untouched. Two clients:
//  - native (default): our TypeScript RTSP/RTP client (rtsp-client/: TCP interleaved or UDP,
//    Basic/Digest, RTP H.264 depacketizer) — no child process, so no second copy of every byte
//    through a pipe, and the password is in no process's argv;
//  - ffmpeg: ffmpeg does the RTSP/RTP client work and copies H.264 out as FLV, cut into access units
//    here. The fallback for what the native client does not speak (rtsps://, packetization-mode 2).
// Either way a cut or stalled camera ends the run with a typed error and the supervisor restarts it.

import { z } from 'zod';
import { captureClockUs, EdgeError, type DriverOutput, type DriverStats, type SourceDriver, type TrackSpec } from '../../runtime/engine/api.js';
import { resolveFfmpeg } from '../exec/ffmpeg.js';
import { h264Mime, parseSps, type SpsInfo } from '../../runtime/engine/h264.js';
import { classifyCommon, PipeSource, redactUserinfo } from './pipe-source.js';
import type { DeviceAuth, DeviceAuthRegistry } from '../auth/device-auth.js';
import { DEFAULT_RTP_PORT_RANGE, MAX_READ_COALESCE_MS, RtspClientCounters, RtspSession, rtpPortPairs } from './rtsp-client/session.js';

export interface CameraDeps {
  ffmpegPath?: string;
  /** Device accounts shared with the camera's ISAPI/ONVIF services (one lock-out state per host+user). */
  accounts?: DeviceAuthRegistry;
}

const AUTH_CODES = { failed: 'RTSP_AUTH_FAILED', locked: 'RTSP_AUTH_LOCKED' };

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

/** [first, last] local UDP ports for RTP/RTCP, holding at least one even/odd pair. */
export const rtpPortRangeSchema = z
  .tuple([z.number().int().min(1024).max(65535), z.number().int().min(1024).max(65535)])
  .refine(([a, b]) => a <= b && rtpPortPairs([a, b]).count >= 1, 'rtpPortRange: [first, last] with first <= last holding at least one even RTP port and the odd port after it, e.g. [50000, 50019]');

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
    /** native: our RTSP client (no child process); ffmpeg: ffmpeg's (rtsps:// always uses ffmpeg). */
    client: z.enum(['native', 'ffmpeg']).default('native'),
    /** For the MIME only (the SPS carries no reliable frame rate). */
    fps: z.number().min(1).max(240).optional(),
    /** No frame within this → START_TIMEOUT (wrong path, camera booting). */
    startTimeoutMs: z.number().int().min(1000).max(120_000).default(10_000),
    /** Frames stop this long → the run ends and reconnects (a cut the TCP stack has not noticed). */
    stallTimeoutMs: z.number().int().min(500).max(60_000).default(3000),
    /**
     * Native client over TCP: when a read ends inside a frame, wait this long before reading the
     * rest of its packet burst, so a frame costs one or two socket wakeups instead of one per
     * packet or two (CPU). The most latency it adds. 0 = off. Ignored for UDP and the ffmpeg client.
     * Off by default: against a camera whose server batches writes (Nagle) holding a read delays
     * the ACK the rest of the frame waits for, and the measured CPU went up, not down; try 4 for a
     * camera that writes one RTP packet per TCP segment (the session gives up holding by itself
     * when it does not batch).
     */
    readCoalesceMs: z.number().int().min(0).max(MAX_READ_COALESCE_MS).default(0),
    /**
     * UDP transport (native client): the local RTP/RTCP ports, inclusive, for a firewall that opens
     * a fixed range. Each camera needs one even/odd pair; leave room for a reconnect. ffmpeg client:
     * not used (ffmpeg picks its own).
     */
    rtpPortRange: rtpPortRangeSchema.default([...DEFAULT_RTP_PORT_RANGE] as [number, number]),
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
  /** Which client runs: native unless configured otherwise or the URL needs TLS. */
  readonly client: 'native' | 'ffmpeg';
  private readonly counters = new RtspClientCounters();
  private readonly native = { frames: 0, bytes: 0, keyframes: 0, starts: 0, firstFrameMs: null as number | null, running: false, lastError: null as string | null, lastErrorCode: null as string | null };
  /** The camera account's auth state, when the URL carries credentials. */
  readonly auth: DeviceAuth | null;

  constructor(private readonly cfg: RtspConfig, deps: CameraDeps = {}) {
    this.ffmpeg = resolveFfmpeg(deps.ffmpegPath).path;
    this.target = rtspUrlWithCredentials(cfg);
    this.client = cfg.client === 'native' && /^rtsp:/i.test(cfg.url) ? 'native' : 'ffmpeg';
    const u = new URL(cfg.url);
    const user = cfg.username ?? (u.username ? safeDecode(u.username) : undefined);
    this.auth =
      user !== undefined && deps.accounts
        ? deps.accounts.get(u.hostname, user, { label: `camera ${u.hostname}`, context: { host: u.hostname, user } })
        : null;
  }

  describe(): TrackSpec[] {
    return [{ track: this.cfg.track, mime: h264Mime(undefined, this.cfg.fps) }];
  }

  /** Where it pulls from, without credentials (for logs, stats, the dashboard). */
  get safeUrl(): string {
    return this.target.safeUrl;
  }

  /**
   * One pull. With credentials it goes through the camera account's DeviceAuth: while it is locked
   * out (2 refusals, by this stream or the camera's PTZ service) it fails at once without touching
   * the camera; the first frame proves the credentials, RTSP_AUTH_FAILED counts as a refusal.
   */
  async run(out: DriverOutput, signal: AbortSignal): Promise<void> {
    if (!this.auth) return this.pull(out, signal);
    const ticket = await this.auth.acquire(AUTH_CODES);
    const seen: DriverOutput = {
      setMime: (t, m) => out.setMime(t, m),
      write: (t, f) => {
        ticket.accepted();
        out.write(t, f);
      },
    };
    try {
      await this.pull(seen, signal);
    } catch (err) {
      if (err instanceof EdgeError && err.code === AUTH_CODES.failed) throw ticket.refused();
      throw err;
    } finally {
      ticket.inconclusive();
    }
  }

  private async pull(out: DriverOutput, signal: AbortSignal): Promise<void> {
    if (this.client === 'native') return this.runNative(out, signal);
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

  private async runNative(out: DriverOutput, signal: AbortSignal): Promise<void> {
    const n = this.native;
    n.starts++;
    const u = new URL(this.cfg.url);
    const username = this.cfg.username ?? (u.username ? safeDecode(u.username) : undefined);
    const password = this.cfg.password ?? (u.password ? safeDecode(u.password) : '');
    const session = new RtspSession(
      {
        url: this.target.safeUrl,
        credentials: username !== undefined ? { username, password } : undefined,
        transport: this.cfg.transport,
        startTimeoutMs: this.cfg.startTimeoutMs,
        stallTimeoutMs: this.cfg.stallTimeoutMs,
        readCoalesceMs: this.cfg.readCoalesceMs,
        rtpPortRange: this.cfg.rtpPortRange,
      },
      this.counters,
    );
    const startedUs = captureClockUs();
    let first = true;
    let mime = '';
    let spsBuf: Buffer | undefined;
    let sps: SpsInfo | undefined;
    n.running = true;
    try {
      await session.run((unit) => {
        // the depacketizer keeps one SPS buffer while the camera repeats the same SPS: parsed
        // (and the MIME rebuilt) only when it changes, not per frame
        if (unit.sps !== spsBuf || first) {
          spsBuf = unit.sps;
          try {
            sps = spsBuf ? parseSps(spsBuf) : undefined;
          } catch {
            sps = undefined;
          }
          const m = h264Mime(sps, this.cfg.fps);
          if (m !== mime) {
            mime = m;
            out.setMime(this.cfg.track, m);
          }
        }
        if (first) {
          first = false;
          n.firstFrameMs = Math.round((captureClockUs() - startedUs) / 1000);
        }
        n.frames++;
        n.bytes += unit.data.length;
        if (unit.key) n.keyframes++;
        out.write(this.cfg.track, { ts: unit.ts, wallclock: unit.wallclock, key: unit.key, data: unit.data });
      }, signal);
    } catch (err) {
      const e = err instanceof EdgeError ? err : new EdgeError('RTSP_FAILED', String((err as Error)?.message ?? err));
      n.lastError = redactUserinfo(e.message);
      n.lastErrorCode = e.code;
      throw e;
    } finally {
      n.running = false;
    }
  }

  requestKeyframe(): boolean {
    return false; // neither client sends FIR/PLI on request (few cameras honour them); the camera's GOP rules
  }

  setEncodingCap(): boolean {
    return false; // passthrough: the camera encodes, we never transcode
  }

  stats(): DriverStats {
    const base = { url: redactUserinfo(this.target.safeUrl), transport: this.cfg.transport, client: this.client };
    if (this.client === 'ffmpeg') return { ...base, ...this.pipe.stats() };
    const n = this.native;
    const c = this.counters;
    return {
      ...base,
      frames: n.frames,
      bytes: n.bytes,
      keyframes: n.keyframes,
      starts: n.starts,
      restarts: Math.max(0, n.starts - 1),
      firstFrameMs: n.firstFrameMs,
      running: n.running,
      lastError: n.lastError,
      lastErrorCode: n.lastErrorCode,
      rtpTransport: c.lastTransport,
      udpPorts: c.udpPorts ? `${c.udpPorts[0]}-${c.udpPorts[1]}` : null,
      rtspRequests: c.requests,
      authMethod: c.lastAuthMethod,
      authChallenges: c.authChallenges,
      staleNonceRetries: c.staleNonceRetries,
      keepalives: c.keepalives,
      keepaliveFailures: c.keepaliveFailures,
      teardowns: c.teardowns,
      rtpMalformed: c.rtpMalformed,
      rtpOtherPayload: c.rtpOtherPayload,
      rtpForeign: c.rtpForeign,
      rtcpPackets: c.rtcpPackets,
      rtcpReportsSent: c.rtcpReportsSent,
      serverRequests: c.serverRequests,
      serverRepliesDropped: c.serverRepliesDropped,
      clockReanchors: c.clockReanchors,
      bytesIn: c.bytesIn,
      reads: c.reads,
      readHolds: c.readHolds,
      readHoldsGivenUp: c.readHoldsGivenUp,
      ...c.depacketizer(),
    };
  }
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
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
