import {
  EdgeError,
  mimeKind,
  trackPath,
  type ConsumerStats,
  type DropReason,
  type EncodingCap,
  type Frame,
  type QueueItem,
  type SubscribeOptions,
  type TrackKind,
  type TrackRef,
} from './api.js';
import type { MemoryBudget } from './budget.js';
import { Consumer, HeldFrame, ITEM_OVERHEAD } from './consumer.js';

export type PublishStyle = 'mono' | 'multi';

/** Who writes a track: a driver, a pang publisher, a WHIP/RTMP ingest… */
export interface PublisherOwner {
  label: string;
  /** Ask the source for a keyframe; false when it cannot. */
  requestKeyframe?: () => boolean;
  /** Cap the source's encoding on behalf of a caller; false when it cannot. */
  setEncodingCap?: (by: string, cap: EncodingCap | null) => boolean;
}

export interface TrackLimits {
  consumerQueueBytes: number;
  gopCacheBytes: number;
  /** How long a track without publisher keeps its consumers before closing them ("publisher gone"). */
  lingerMs: number;
}

/** The writing end of a track, handed to one publisher. close() is idempotent. */
export interface TrackPublisher {
  readonly ref: TrackRef;
  readonly origin: number;
  setMime(mime: string): void;
  write(frame: Frame): void;
  /** A text message forwarded in order with the frames (REXT…, a MIME re-send). */
  text(text: string): void;
  /** Messages bundle-mode subscribers send back to the publisher. */
  onBack(cb: (item: QueueItem) => void): void;
  close(): void;
}

let nextOrigin = 1;
export function newOrigin(): number {
  return nextOrigin++;
}

interface PublisherEntry {
  origin: number;
  owner: PublisherOwner;
  back: Array<(item: QueueItem) => void>;
  since: number;
}

/** A window counter for fps and bitrate, rolled once a second. */
class RateWindow {
  private start = Date.now();
  private frames = 0;
  private bytes = 0;
  fps = 0;
  bitrate = 0;
  add(bytes: number, now: number): void {
    this.roll(now);
    this.frames++;
    this.bytes += bytes;
  }
  roll(now: number): void {
    const dt = now - this.start;
    if (dt < 1000) return;
    // A window with no traffic for 2 s reads as 0, not as the last busy second.
    this.fps = dt > 2000 ? 0 : (this.frames * 1000) / dt;
    this.bitrate = dt > 2000 ? 0 : (this.bytes * 8000) / dt;
    this.start = now;
    this.frames = 0;
    this.bytes = 0;
  }
}

export class Track {
  mime: string | undefined;
  kind: TrackKind = 'data';
  readonly consumers = new Set<Consumer>();
  private readonly publishers = new Map<number, PublisherEntry>();
  private gop: HeldFrame[] = [];
  private gopBytes = 0;
  private lingerTimer: NodeJS.Timeout | undefined;
  private readonly rate = new RateWindow();
  // Counters (stats()).
  framesIn = 0;
  bytesIn = 0;
  keyframesIn = 0;
  textsIn = 0;
  mimeChanges = 0;
  gopCacheDrops = 0;
  lastFrameTs: number | null = null;
  lastFrameWallclock: number | null = null;
  framesBeforeMime = 0;
  /** Frames moved 1 µs past their predecessor to keep (track, wallclock) unique and ordered. */
  identityAdjusted = 0;
  /** Wallclock steps back of more than a second (the clock was set) taken as they are. */
  clockSteps = 0;
  keyframeRequests = 0;
  keyframeRequestsUnserved = 0;
  encodingCapRequests = 0;
  encodingCapRequestsUnserved = 0;
  private droppedByClosed: Record<DropReason, number> = {
    'queue-full': 0,
    'gop-tail': 0,
    'stale-gop': 0,
    memory: 0,
    'text-overflow': 0,
  };

  constructor(
    readonly ref: TrackRef,
    readonly style: PublishStyle,
    private readonly limits: TrackLimits,
    private readonly budget: MemoryBudget,
    private readonly shed: (need: number) => void,
    private readonly nextConsumerId: () => number,
    private readonly onIdle: (t: Track) => void,
  ) {}

  get path(): string {
    return trackPath(this.ref);
  }

  get publisherCount(): number {
    return this.publishers.size;
  }

  get idle(): boolean {
    return this.publishers.size === 0 && this.consumers.size === 0;
  }

  attach(owner: PublisherOwner, style: PublishStyle = this.style): TrackPublisher {
    if ((style === 'mono' || this.style === 'mono') && this.publishers.size > 0) {
      const holder = [...this.publishers.values()][0]!.owner.label;
      throw new EdgeError('TRACK_BUSY', `track ${this.path} already has a publisher (${holder})`, {
        track: this.path,
      });
    }
    if (this.lingerTimer) {
      clearTimeout(this.lingerTimer);
      this.lingerTimer = undefined;
    }
    const entry: PublisherEntry = { origin: newOrigin(), owner, back: [], since: Date.now() };
    this.publishers.set(entry.origin, entry);
    let closed = false;
    const self = this;
    return {
      ref: this.ref,
      origin: entry.origin,
      setMime: (mime) => {
        if (!closed) self.setMime(mime);
      },
      write: (frame) => {
        if (!closed) self.publish(frame, entry.origin);
      },
      text: (text) => {
        if (!closed) self.publishText(text, entry.origin);
      },
      onBack: (cb) => {
        entry.back.push(cb);
      },
      close: () => {
        if (closed) return;
        closed = true;
        self.detachPublisher(entry.origin);
      },
    };
  }

  setMime(mime: string): void {
    if (mime === this.mime) return;
    const kind = mimeKind(mime);
    if (this.mime !== undefined) this.mimeChanges++;
    this.mime = mime;
    if (kind !== this.kind) {
      this.kind = kind;
      this.clearCache();
      for (const c of this.consumers) c.setKind(kind);
    }
  }

  publish(input: Frame, origin: number): void {
    const frame = this.identify(input);
    if (this.mime === undefined) this.framesBeforeMime++;
    const size = frame.data.length + ITEM_OVERHEAD;
    if (this.budget.wouldExceed(size)) this.shed(size);
    const now = Date.now();
    this.framesIn++;
    this.bytesIn += frame.data.length;
    if (frame.key) this.keyframesIn++;
    this.lastFrameTs = frame.ts;
    this.lastFrameWallclock = frame.wallclock;
    this.rate.add(frame.data.length, now);

    const held = new HeldFrame({ type: 'frame', frame, mime: this.mime, origin }, size, this.budget);
    held.retain(); // the publish itself holds it until fan-out is done
    this.cache(held);
    for (const c of this.consumers) c.push(held);
    held.release();
  }

  /**
   * A frame's identity on its track is its capture wallclock (issue 14): the delivery spans, the
   * backfill and the gap report all key records by it. Records read in one serial chunk share a
   * Date.now() and a capture µs, so a frame that does not come after the previous one is moved
   * 1 µs past it (wallclock and ts alike; record files keep the f64 value exactly). A wallclock
   * step back of more than a second is the clock being set (NTP at boot), not a burst: it is taken
   * as it is, and counted; so is a capture time more than a millisecond in the past.
   */
  private identify(frame: Frame): Frame {
    const lastWall = this.lastFrameWallclock;
    const lastTs = this.lastFrameTs;
    let wall = frame.wallclock;
    let ts = frame.ts;
    if (lastWall !== null && wall <= lastWall) {
      if (lastWall - wall <= 1000) wall = lastWall + 0.001;
      else this.clockSteps++;
    }
    // Equal or a hair back (one chunk, one clock read): 1 µs on. A frame from further in the past
    // is a source's fault, kept as it is for its consumers to judge (a recorder drops it, counted).
    if (lastTs !== null && ts <= lastTs && lastTs - ts <= 1000) ts = lastTs + 1;
    if (wall === frame.wallclock && ts === frame.ts) return frame;
    this.identityAdjusted++;
    return { ts, wallclock: wall, key: frame.key, data: frame.data };
  }

  publishText(text: string, origin: number): void {
    this.textsIn++;
    const size = Buffer.byteLength(text) + ITEM_OVERHEAD;
    const held = new HeldFrame({ type: 'text', text, origin }, size, this.budget);
    held.retain();
    for (const c of this.consumers) c.push(held);
    held.release();
  }

  /** Bundle mode: a subscriber's message goes back to the publishers of the track. */
  sendBack(item: QueueItem): number {
    let n = 0;
    for (const p of this.publishers.values()) {
      for (const cb of p.back) {
        try {
          cb(item);
          n++;
        } catch {
          // One failing publisher socket must not stop the others.
        }
      }
    }
    return n;
  }

  subscribe(opts: SubscribeOptions, ceilingDefault: number): Consumer {
    const ceiling = opts.ceilingBytes ?? ceilingDefault;
    const c = new Consumer(
      this.nextConsumerId(),
      this.ref,
      opts.label,
      ceiling,
      this.kind,
      () => this.mime,
      (x) => this.detachConsumer(x),
      opts.selfOrigin,
      opts.texts ?? true,
    );
    this.consumers.add(c);
    if (opts.fromCache ?? true) for (const h of this.gop) c.push(h);
    return c;
  }

  requestKeyframe(): boolean {
    this.keyframeRequests++;
    for (const p of this.publishers.values()) {
      if (p.owner.requestKeyframe?.()) return true;
    }
    this.keyframeRequestsUnserved++;
    return false;
  }

  requestEncodingCap(by: string, cap: EncodingCap | null): boolean {
    this.encodingCapRequests++;
    let served = false;
    for (const p of this.publishers.values()) {
      if (p.owner.setEncodingCap?.(by, cap)) served = true;
    }
    if (!served) this.encodingCapRequestsUnserved++;
    return served;
  }

  /** Close every consumer (channel closed, engine stopping). */
  terminate(reason: string): void {
    if (this.lingerTimer) clearTimeout(this.lingerTimer);
    this.lingerTimer = undefined;
    for (const c of [...this.consumers]) c.terminate(reason);
    this.clearCache();
  }

  consumerStats(): ConsumerStats[] {
    return [...this.consumers].map((c) => c.stats());
  }

  stats() {
    const now = Date.now();
    this.rate.roll(now);
    const drops = { ...this.droppedByClosed };
    for (const c of this.consumers) {
      const d = c.stats().dropped;
      for (const k of Object.keys(drops) as DropReason[]) drops[k] += d[k];
    }
    return {
      channel: this.ref.channel,
      source: this.ref.source,
      track: this.ref.track,
      mime: this.mime ?? null,
      kind: this.kind,
      style: this.style,
      publishers: [...this.publishers.values()].map((p) => ({ label: p.owner.label, since: p.since })),
      consumers: this.consumerStats(),
      framesIn: this.framesIn,
      bytesIn: this.bytesIn,
      keyframesIn: this.keyframesIn,
      textsIn: this.textsIn,
      framesBeforeMime: this.framesBeforeMime,
      identityAdjusted: this.identityAdjusted,
      clockSteps: this.clockSteps,
      mimeChanges: this.mimeChanges,
      fps: round2(this.rate.fps),
      bitrateBps: Math.round(this.rate.bitrate),
      lastFrameTs: this.lastFrameTs,
      lastFrameWallclock: this.lastFrameWallclock,
      gopCacheFrames: this.gop.length,
      gopCacheBytes: this.gopBytes,
      gopCacheDrops: this.gopCacheDrops,
      keyframeRequests: this.keyframeRequests,
      keyframeRequestsUnserved: this.keyframeRequestsUnserved,
      encodingCapRequests: this.encodingCapRequests,
      encodingCapRequestsUnserved: this.encodingCapRequestsUnserved,
      drops,
    };
  }

  /** Memory pressure: the GOP cache is the last thing to go. */
  shedCache(): number {
    const b = this.gopBytes;
    if (b > 0) this.gopCacheDrops++;
    this.clearCache();
    return b;
  }

  private cache(h: HeldFrame): void {
    const frame = (h.item as Extract<QueueItem, { type: 'frame' }>).frame;
    if (this.kind === 'video') {
      if (frame.key) this.clearCache();
      else if (this.gop.length === 0) return; // no keyframe yet: nothing a decoder can start at
      if (this.gopBytes + h.size > this.limits.gopCacheBytes) {
        // A GOP larger than the cache: new consumers wait for the next keyframe instead.
        this.gopCacheDrops++;
        this.clearCache();
        return;
      }
    } else {
      // Data, audio, images: the latest record, so a new viewer sees the current value at once.
      this.clearCache();
      if (h.size > this.limits.gopCacheBytes) return;
    }
    h.retain();
    this.gop.push(h);
    this.gopBytes += h.size;
  }

  private clearCache(): void {
    for (const h of this.gop) h.release();
    this.gop = [];
    this.gopBytes = 0;
  }

  private detachPublisher(origin: number): void {
    this.publishers.delete(origin);
    if (this.publishers.size > 0) return;
    if (this.consumers.size === 0) {
      this.clearCache();
      this.onIdle(this);
      return;
    }
    if (this.lingerTimer) clearTimeout(this.lingerTimer);
    this.lingerTimer = setTimeout(() => {
      this.lingerTimer = undefined;
      if (this.publishers.size === 0) {
        this.mime = undefined;
        this.terminate('publisher gone');
        this.onIdle(this);
      }
    }, this.limits.lingerMs);
  }

  private detachConsumer(c: Consumer): void {
    if (!this.consumers.delete(c)) return;
    const d = c.stats().dropped;
    for (const k of Object.keys(d) as DropReason[]) this.droppedByClosed[k] += d[k];
    if (this.idle) this.onIdle(this);
  }
}

function round2(n: number): number {
  return Math.round(n * 100) / 100;
}
