import {
  EdgeError,
  type ConsumerHandle,
  type EncodingCap,
  type SubscribeOptions,
  type TrackKind,
  type TrackRef,
  type TrackSource,
} from './api.js';
import { MemoryBudget } from './budget.js';
import { channelIdFor, randomChannelId, XID_RE } from './xid.js';
import type { Consumer } from './consumer.js';
import { Track, type PublishStyle, type PublisherOwner, type TrackLimits, type TrackPublisher } from './track.js';

export type { TrackPublisher, PublisherOwner, PublishStyle } from './track.js';

export interface EngineOptions {
  /** Sum of every buffered frame (GOP caches + queues), in bytes. */
  memoryCeilingBytes: number;
  consumerQueueBytes: number;
  gopCacheBytes: number;
  trackLingerMs: number;
  /** Instant channels are removed this long after creation once idle (Moth: 1 h). */
  instantChannelTtlMs: number;
  /** Bound on the number of instant channels, so a client cannot create them without end. */
  maxInstantChannels: number;
}

export interface ChannelInit {
  id: string;
  name?: string;
  key?: string;
}

export class Channel {
  readonly sources = new Map<string, Map<string, Track>>();
  readonly createdAt = Date.now();
  lastActiveAt = Date.now();
  record = false;
  trans = false;
  constructor(
    readonly id: string,
    readonly name: string | undefined,
    public key: string | undefined,
    readonly instant: boolean,
  ) {}

  tracks(): Track[] {
    const out: Track[] = [];
    for (const s of this.sources.values()) out.push(...s.values());
    return out;
  }

  get idle(): boolean {
    return this.tracks().every((t) => t.idle);
  }
}

/** A random channel id in Moth's rs/xid form (valid for xid parsers, last char included). */
export function newChannelId(): string {
  return randomChannelId();
}

export { XID_RE };

/** channel → source → track, with bounded queues and one memory ceiling. */
export class Engine implements TrackSource {
  readonly budget: MemoryBudget;
  private readonly channels = new Map<string, Channel>();
  private readonly instantByName = new Map<string, Channel>();
  private consumerSeq = 0;
  private readonly sweeper: NodeJS.Timeout;
  private closed = false;
  instantChannelsCreated = 0;
  instantChannelsExpired = 0;
  instantChannelsRefused = 0;

  constructor(readonly opts: EngineOptions) {
    this.budget = new MemoryBudget(opts.memoryCeilingBytes);
    // Expire instant channels: a minute's granularity is plenty for a 1 h lifetime.
    this.sweeper = setInterval(() => this.sweep(Date.now()), Math.min(60_000, opts.instantChannelTtlMs));
    this.sweeper.unref();
  }

  addStaticChannel(init: ChannelInit): Channel {
    if (this.channels.has(init.id)) throw new EdgeError('CHANNEL_EXISTS', `channel ${init.id} already exists`);
    const ch = new Channel(init.id, init.name, init.key, false);
    this.channels.set(ch.id, ch);
    return ch;
  }

  channel(id: string): Channel | undefined {
    return this.channels.get(id);
  }

  /** Find or create an instant channel by name; the first key given becomes the channel's key. */
  instantChannel(name: string, key: string | undefined): Channel {
    const found = this.instantByName.get(name);
    if (found) return found;
    if (this.instantByName.size >= this.opts.maxInstantChannels) {
      this.instantChannelsRefused++;
      throw new EdgeError('TOO_MANY_CHANNELS', `instant channel limit ${this.opts.maxInstantChannels} reached`);
    }
    // Derived from the name: an instant channel that expires and comes back keeps its id, so its
    // recordings stay in one folder and its WHEP/API URLs keep working.
    let id = channelIdFor(name, 'instant');
    while (this.channels.has(id)) id = newChannelId();
    const ch = new Channel(id, name, key || undefined, true);
    this.channels.set(id, ch);
    this.instantByName.set(name, ch);
    this.instantChannelsCreated++;
    return ch;
  }

  /** An instant channel by name, without creating it. */
  findInstantChannel(name: string): Channel | undefined {
    return this.instantByName.get(name);
  }

  /** Find a channel by id or, for static channels, by configured name. */
  findChannel(idOrName: string): Channel | undefined {
    const byId = this.channels.get(idOrName);
    if (byId) return byId;
    for (const ch of this.channels.values()) if (!ch.instant && ch.name === idOrName) return ch;
    return undefined;
  }

  /**
   * Names and ids are interchangeable wherever a channel is addressed (HTTP paths, query parameters):
   * an id, a static channel's name, else an instant channel's name. Unknown → the text unchanged, so
   * the caller's own "unknown channel" error names what was asked for.
   */
  resolveChannelId(idOrName: string): string {
    return this.findChannel(idOrName)?.id ?? this.instantByName.get(idOrName)?.id ?? idOrName;
  }

  /** The ref with its channel given by id (see resolveChannelId). */
  resolveRef<T extends TrackRef>(ref: T): T {
    const id = this.resolveChannelId(ref.channel);
    return id === ref.channel ? ref : { ...ref, channel: id };
  }

  /** The channel's configured or instant name, else its id (for people: dashboard, logs). */
  channelLabel(id: string): string {
    return this.channels.get(id)?.name ?? id;
  }

  listChannels(): Channel[] {
    return [...this.channels.values()];
  }

  closeChannel(id: string, reason = 'channel closed'): boolean {
    const ch = this.channels.get(id);
    if (!ch) return false;
    for (const t of ch.tracks()) t.terminate(reason);
    if (ch.instant) {
      this.channels.delete(id);
      if (ch.name) this.instantByName.delete(ch.name);
    } else {
      ch.sources.clear();
    }
    return true;
  }

  /** Get the track, creating it (and its source) on first use. */
  track(ref: TrackRef, style: PublishStyle = 'mono'): Track {
    const ch = this.channels.get(ref.channel);
    if (!ch) throw new EdgeError('UNKNOWN_CHANNEL', `unknown channel ${ref.channel}`, { channel: ref.channel });
    let src = ch.sources.get(ref.source);
    if (!src) {
      src = new Map();
      ch.sources.set(ref.source, src);
    }
    let t = src.get(ref.track);
    if (!t) {
      const limits: TrackLimits = {
        consumerQueueBytes: this.opts.consumerQueueBytes,
        gopCacheBytes: this.opts.gopCacheBytes,
        lingerMs: this.opts.trackLingerMs,
      };
      t = new Track(
        { ...ref },
        style,
        limits,
        this.budget,
        (need) => this.shed(need),
        () => ++this.consumerSeq,
        (tr) => this.onTrackIdle(tr),
      );
      src.set(ref.track, t);
    }
    ch.lastActiveAt = Date.now();
    return t;
  }

  findTrack(ref: TrackRef): Track | undefined {
    return this.channels.get(ref.channel)?.sources.get(ref.source)?.get(ref.track);
  }

  /** The writing end of a track. Throws TRACK_BUSY when a mono track already has a publisher. */
  publisher(ref: TrackRef, owner: PublisherOwner, style: PublishStyle = 'mono'): TrackPublisher {
    if (this.closed) throw new EdgeError('ENGINE_CLOSED', 'engine is stopping');
    return this.track(ref, style).attach(owner, style);
  }

  subscribe(ref: TrackRef, opts: SubscribeOptions): ConsumerHandle {
    if (this.closed) throw new EdgeError('ENGINE_CLOSED', 'engine is stopping');
    return this.track(ref).subscribe(opts, this.opts.consumerQueueBytes);
  }

  requestKeyframe(ref: TrackRef): boolean {
    return this.findTrack(ref)?.requestKeyframe() ?? false;
  }

  requestEncodingCap(ref: TrackRef, by: string, cap: EncodingCap | null): boolean {
    return this.findTrack(ref)?.requestEncodingCap(by, cap) ?? false;
  }

  listTracks(): Array<TrackRef & { mime: string | undefined; kind: TrackKind; publishers: number }> {
    const out: Array<TrackRef & { mime: string | undefined; kind: TrackKind; publishers: number }> = [];
    for (const ch of this.channels.values()) {
      for (const t of ch.tracks()) out.push({ ...t.ref, mime: t.mime, kind: t.kind, publishers: t.publisherCount });
    }
    return out;
  }

  /**
   * Memory pressure: release at least `need` bytes. The biggest consumer backlogs go first
   * (a slow viewer loses its GOP tail), then GOP caches. The publisher is never blocked.
   */
  shed(need: number): void {
    this.budget.shedEvents++;
    const target = this.budget.ceiling - need;
    const consumers: Consumer[] = [];
    for (const ch of this.channels.values()) for (const t of ch.tracks()) consumers.push(...t.consumers);
    consumers.sort((a, b) => b.queuedBytes - a.queuedBytes);
    for (const c of consumers) {
      if (this.budget.used <= target || c.queuedBytes === 0) break;
      this.budget.shedBytes += c.shed();
    }
    if (this.budget.used <= target) return;
    for (const ch of this.channels.values()) {
      for (const t of ch.tracks()) {
        if (this.budget.used <= target) return;
        this.budget.shedBytes += t.shedCache();
      }
    }
  }

  stats() {
    let framesIn = 0;
    let bytesIn = 0;
    let consumers = 0;
    let dropped = 0;
    const channels = [...this.channels.values()].map((ch) => {
      const tracks = ch.tracks().map((t) => t.stats());
      for (const t of tracks) {
        framesIn += t.framesIn;
        bytesIn += t.bytesIn;
        consumers += t.consumers.length;
        for (const v of Object.values(t.drops)) dropped += v;
      }
      return {
        id: ch.id,
        name: ch.name ?? null,
        instant: ch.instant,
        hasKey: ch.key !== undefined,
        createdAt: ch.createdAt,
        tracks,
      };
    });
    return {
      memory: this.budget.stats(),
      totals: { channels: channels.length, framesIn, bytesIn, consumers, dropped },
      instantChannels: {
        created: this.instantChannelsCreated,
        expired: this.instantChannelsExpired,
        refused: this.instantChannelsRefused,
      },
      channels,
    };
  }

  /** Remove instant channels that are idle and older than their TTL. */
  sweep(now: number): number {
    let n = 0;
    for (const ch of [...this.channels.values()]) {
      if (!ch.instant || !ch.idle) continue;
      if (now - ch.createdAt < this.opts.instantChannelTtlMs) continue;
      this.channels.delete(ch.id);
      if (ch.name) this.instantByName.delete(ch.name);
      this.instantChannelsExpired++;
      n++;
    }
    return n;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.sweeper);
    for (const ch of this.channels.values()) for (const t of ch.tracks()) t.terminate('engine stopping');
  }

  private onTrackIdle(t: Track): void {
    // Idle tracks of instant channels go away with their channel (sweep); static ones stay
    // listed so the dashboard still shows a camera that is restarting.
    const ch = this.channels.get(t.ref.channel);
    if (ch) ch.lastActiveAt = Date.now();
  }
}
