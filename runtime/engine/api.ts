// The engine's small public surface. drivers/ and recordings/ import only this module
// (architecture.md: "may import the engine's small public types only").

export {
  Backoff,
  RetryPolicy,
  DEFAULT_NETWORK_BACKOFF,
  DEFAULT_REFUSED_BACKOFF,
  httpFailureClass,
  isNetworkErrno,
  type BackoffOptions,
  type FailureClass,
  type RetryPolicyOptions,
} from './backoff.js';
export { ThrottledLog, redactUrl, type LevelLog } from './throttled-log.js';
export { MsUnwrapper, SourceClock, type SourceClockOptions, type SourceClockStats } from './source-clock.js';

/** One encoded unit: a whole H.264 access unit, one JPEG image, or one data record. */
export interface Frame {
  /** Capture time in µs on the one monotonic capture clock (captureClockUs). */
  ts: number;
  /** Wall-clock time in ms since the epoch at capture (Date.now()). */
  wallclock: number;
  /** True for an access unit a decoder can start at (IDR with SPS/PPS), and for every data record. */
  key: boolean;
  data: Buffer;
}

/** The one capture clock: monotonic µs. Never jumps with NTP; recordings and egress keep it. */
export function captureClockUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

/** Map a capture timestamp back to wall-clock ms (for paths and UIs), using the current offset. */
export function captureToWallclock(tsUs: number): number {
  return Date.now() - (captureClockUs() - tsUs) / 1000;
}

export type TrackKind = 'video' | 'audio' | 'data';

/** video/* → GOP-aware; audio/* → independent frames; everything else (json, text, image/jpeg) → records. */
export function mimeKind(mime: string | undefined): TrackKind {
  if (!mime) return 'data';
  const base = mime.split(';', 1)[0]!.trim().toLowerCase();
  if (base.startsWith('video/')) return 'video';
  if (base.startsWith('audio/')) return 'audio';
  return 'data';
}

/** The MIME without parameters, lower-cased: `video/h264;width=…` → `video/h264`. */
export function mimeBase(mime: string): string {
  return mime.split(';', 1)[0]!.trim().toLowerCase();
}

/** `video/h264;width=1280;height=720` → { width: '1280', height: '720' }. */
export function mimeParams(mime: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of mime.split(';').slice(1)) {
    const i = part.indexOf('=');
    if (i > 0) out[part.slice(0, i).trim().toLowerCase()] = part.slice(i + 1).trim();
  }
  return out;
}

/** Address of a track in the engine: channel → source → track. */
export interface TrackRef {
  channel: string;
  source: string;
  track: string;
}

export function trackPath(ref: TrackRef): string {
  return `${ref.channel}/${ref.source}/${ref.track}`;
}

/** Error with a stable code and context. Context values that are secrets must not be put here. */
export class EdgeError extends Error {
  readonly code: string;
  readonly context: Record<string, unknown>;
  /** The message without the leading "CODE: " (for answers that carry the code separately). */
  readonly detail: string;
  constructor(code: string, message: string, context: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    // A message that already starts with this code (a re-thrown EdgeError's .message) is not prefixed twice.
    const detail = message.startsWith(`${code}: `) ? message.slice(code.length + 2) : message;
    super(`${code}: ${detail}`, options);
    this.name = 'EdgeError';
    this.code = code;
    this.context = context;
    this.detail = detail;
  }
}

// ---------------------------------------------------------------------------------------------
// Source drivers

/** What a driver declares before it runs: the tracks it will write and their initial MIME. */
export interface TrackSpec {
  track: string;
  mime: string;
}

/** Where a running driver writes. Owned by the runtime; a driver never keeps it past run(). */
export interface DriverOutput {
  /** Set or change a track's MIME (e.g. once the SPS gave width/height/profile). */
  setMime(track: string, mime: string): void;
  /** Publish one frame on a track the driver described. Never blocks; the engine bounds memory. */
  write(track: string, frame: Frame): void;
}

export type DriverStats = Record<string, number | string | boolean | null>;

/** What /healthz asks a driver that knows better than "a frame arrived" (a port that is missing). */
export interface DriverHealth {
  up: boolean;
  /** Why it is down (no secrets). */
  reason?: string;
}

/**
 * A capture driver (camera, sensor, ingest). The supervisor calls run(); run resolves or rejects
 * when the device/process ends, and the supervisor restarts it with jittered backoff. run must
 * return promptly after `signal` aborts and must leave no child process or open handle behind.
 */
export interface SourceDriver {
  readonly kind: string;
  describe(): TrackSpec[];
  run(out: DriverOutput, signal: AbortSignal): Promise<void>;
  /** Ask for a keyframe (a WHIP PLI, a new subscriber). Returns false when the device cannot. */
  requestKeyframe?(): boolean;
  /**
   * Cap how the source encodes, on behalf of `by` (e.g. "thermal", "uplink"); `cap` null lifts that
   * caller's cap. The driver applies the lowest cap of all callers (EncodingCaps does the merging)
   * and returns false when it cannot change its encoding (passthrough cameras, ingests).
   */
  setEncodingCap?(by: string, cap: EncodingCap | null): boolean;
  /** Health beyond the supervisor's state (optional): a sensor whose port is missing is down. */
  health?(): DriverHealth;
  stats(): DriverStats;
}

/** An upper bound on a source's encoding; an absent field is not capped. */
export interface EncodingCap {
  bitrateBps?: number;
  fps?: number;
}

/**
 * The caps that several callers put on one source, merged to the lowest of each field. Bounded by
 * construction: one entry per caller name, and callers are a fixed set of runtime components.
 */
export class EncodingCaps {
  private readonly caps = new Map<string, EncodingCap>();

  /** Set or lift one caller's cap; true when the effective cap changed. */
  set(by: string, cap: EncodingCap | null): boolean {
    const before = JSON.stringify(this.effective());
    if (cap === null || (cap.bitrateBps === undefined && cap.fps === undefined)) this.caps.delete(by);
    else this.caps.set(by, { ...cap });
    return JSON.stringify(this.effective()) !== before;
  }

  /** The lowest bitrate and fps over all callers. */
  effective(): EncodingCap {
    const out: EncodingCap = {};
    for (const c of this.caps.values()) {
      if (c.bitrateBps !== undefined) out.bitrateBps = Math.min(out.bitrateBps ?? Infinity, c.bitrateBps);
      if (c.fps !== undefined) out.fps = Math.min(out.fps ?? Infinity, c.fps);
    }
    return out;
  }

  /** Apply the caps to configured values (a cap never raises a value). */
  apply(bitrateBps: number, fps: number): { bitrateBps: number; fps: number } {
    const e = this.effective();
    return { bitrateBps: Math.min(bitrateBps, e.bitrateBps ?? Infinity), fps: Math.min(fps, e.fps ?? Infinity) };
  }

  /** Who capped what, for stats. */
  byCaller(): Record<string, EncodingCap> {
    return Object.fromEntries(this.caps);
  }
}

// ---------------------------------------------------------------------------------------------
// Consumers

/** What a consumer reads from a track queue, in publish order. */
export type QueueItem =
  | { type: 'frame'; frame: Frame; mime: string | undefined; origin: number }
  | { type: 'text'; text: string; origin: number };

export type DropReason = 'queue-full' | 'gop-tail' | 'stale-gop' | 'memory' | 'text-overflow';

export interface ConsumerStats {
  id: number;
  label: string;
  queuedItems: number;
  queuedBytes: number;
  ceilingBytes: number;
  peakBytes: number;
  itemsOut: number;
  bytesOut: number;
  dropped: Record<DropReason, number>;
  droppedBytes: number;
  waitingForKeyframe: boolean;
}

export interface SubscribeOptions {
  /** For logs and stats: "pang-sub 127.0.0.1:5123", "recorder", … */
  label: string;
  /** Byte ceiling of this consumer's queue. Defaults to the engine's consumerQueueBytes. */
  ceilingBytes?: number;
  /** Start with the cached GOP (video) / last record (data). Default true. */
  fromCache?: boolean;
  /** Skip items this origin published (meb participants do not get their own messages). */
  selfOrigin?: number;
  /** Deliver text items (MIME, REXT…) too. Default true. */
  texts?: boolean;
}

/** A subscription to one track, with its own bounded queue. Never blocks the publisher. */
export interface ConsumerHandle {
  readonly id: number;
  readonly ref: TrackRef;
  /** The track's current MIME, when known. */
  mime(): string | undefined;
  /** Take the next item, or undefined when the queue is empty. */
  next(): QueueItem | undefined;
  /** Called (synchronously, from publish) whenever the queue goes from empty to non-empty. */
  onReadable(cb: () => void): void;
  /** Called once when the consumer is closed by the engine (publisher gone, track removed). */
  onClose(cb: (reason: string) => void): void;
  /** Resolves when an item is available or the consumer closed; rejects on signal abort. */
  wait(signal?: AbortSignal): Promise<void>;
  readonly closed: boolean;
  stats(): ConsumerStats;
  close(): void;
}

/** The part of the engine consumers (recorder, egress) need. */
export interface TrackSource {
  subscribe(ref: TrackRef, opts: SubscribeOptions): ConsumerHandle;
  /** Ask the track's driver for a keyframe; false when it has none or cannot. */
  requestKeyframe(ref: TrackRef): boolean;
  /** Cap the encoding of the track's source on behalf of `by`; false when no publisher can. */
  requestEncodingCap(ref: TrackRef, by: string, cap: EncodingCap | null): boolean;
  /**
   * Every track that exists now, with its MIME and, where known, how many publishers write it
   * (0: a static channel keeps a track listed after its publisher left).
   */
  listTracks(): Array<TrackRef & { mime: string | undefined; kind: TrackKind; publishers?: number }>;
}
