// One live HLS track: an engine consumer feeding a LiveWindow, the init sections mediabunny builds,
// blocked requests (blocking playlist reload, preload-hinted parts) woken as parts land, and the
// window's bytes counted against the engine's memory ceiling. Owned by HlsService; close() is
// idempotent and releases the consumer, timers, waiters and the counted bytes.
import { randomBytes } from 'node:crypto';
import { captureClockUs, EdgeError, trackPath, type ConsumerHandle, type TrackRef, type TrackSource } from '../engine/api.js';
import { h264InitSection, type InitSection } from './fmp4.js';
import { LiveWindow, type LiveWindowStats, type WindowEvent } from './live-window.js';

/** The engine's memory ceiling as HLS sees it (Engine.budget fits). */
export interface MemoryAccount {
  add(n: number): void;
  remove(n: number): void;
  wouldExceed(n: number): boolean;
}

export interface LiveTrackOptions {
  partTargetMs: number;
  segmentTargetMs: number;
  windowSegments: number;
  windowBytes: number;
  maxBlocked: number;
  /** The consumer's queue: a burst of the camera while we mux (frames leave it at once). */
  queueBytes?: number;
}

export interface LiveTrackStats {
  track: string;
  sid: string;
  state: 'starting' | 'live' | 'source-gone' | 'closed';
  since: number;
  lastRequestAt: number;
  requests: { playlist: number; blockingPlaylist: number; part: number; segment: number; init: number };
  blocked: number;
  blockedPeak: number;
  blockTimeouts: number;
  blockRefused: number;
  resubscribes: number;
  initErrors: number;
  window: LiveWindowStats;
  consumer: ReturnType<ConsumerHandle['stats']> | null;
}

interface Waiter {
  ready: () => boolean;
  done: (ok: boolean) => void;
  timer: NodeJS.Timeout;
}

/** Inits kept: the ones the window's segments use (a stream that changes SPS twice a minute is broken anyway). */
const MAX_INITS = 8;
/** How often a track that went away is looked for again while viewers still ask. */
const RESUBSCRIBE_MS = 1000;

export class LiveTrack {
  readonly sid = randomBytes(4).toString('hex');
  readonly window: LiveWindow;
  private consumer: ConsumerHandle | null = null;
  private readonly inits = new Map<number, Promise<InitSection>>();
  private waiters = new Set<Waiter>();
  private accounted = 0;
  private resubscribeTimer: NodeJS.Timeout | null = null;
  private closed = false;
  /** Capture clock → wall clock, fixed for the session (PROGRAM-DATE-TIME on the one clock). */
  private readonly offsetUs = Date.now() * 1000 - captureClockUs();
  lastRequestAt = Date.now();
  private readonly since = Date.now();
  private state: LiveTrackStats['state'] = 'starting';
  readonly st = { playlist: 0, blockingPlaylist: 0, part: 0, segment: 0, init: 0 };
  private blockedPeak = 0;
  private blockTimeouts = 0;
  private blockRefused = 0;
  private resubscribes = 0;
  private initErrors = 0;

  constructor(
    readonly ref: TrackRef,
    private readonly source: TrackSource,
    private readonly memory: MemoryAccount,
    private readonly o: LiveTrackOptions,
  ) {
    this.window = new LiveWindow({
      partTargetMs: o.partTargetMs,
      segmentTargetMs: o.segmentTargetMs,
      windowSegments: o.windowSegments,
      maxBytes: o.windowBytes,
      sid: this.sid,
    });
    this.subscribe();
  }

  private subscribe(): boolean {
    let c: ConsumerHandle;
    try {
      // fromCache: the cached GOP starts the first segment at once (no wait for the next keyframe).
      c = this.source.subscribe(this.ref, { label: `hls ${this.sid}`, fromCache: true, texts: false, ...(this.o.queueBytes ? { ceilingBytes: this.o.queueBytes } : {}) });
    } catch {
      return false;
    }
    this.consumer = c;
    c.onReadable(() => this.drain());
    c.onClose(() => this.sourceGone(c));
    this.drain();
    return true;
  }

  private sourceGone(c: ConsumerHandle): void {
    if (this.closed || this.consumer !== c) return;
    this.consumer = null;
    this.apply(this.window.discontinue()); // what was pending closes its segment
    this.state = 'source-gone';
    this.resubscribeTimer = setInterval(() => {
      if (this.closed) return;
      if (this.source.listTracks().some((t) => trackPath(t) === trackPath(this.ref)) && this.subscribe()) {
        this.resubscribes++;
        if (this.resubscribeTimer) clearInterval(this.resubscribeTimer);
        this.resubscribeTimer = null;
      }
    }, RESUBSCRIBE_MS);
    this.resubscribeTimer.unref?.();
  }

  private drain(): void {
    const c = this.consumer;
    if (!c || this.closed) return;
    for (let it = c.next(); it; it = c.next()) {
      if (it.type !== 'frame') continue;
      const f = it.frame;
      this.apply(this.window.push({ ts: f.ts, wallMs: (f.ts + this.offsetUs) / 1000, key: f.key, data: f.data }));
    }
  }

  private apply(events: WindowEvent[]): void {
    let published = false;
    for (const ev of events) {
      if (ev.type === 'init') {
        const p = h264InitSection(ev.init.keyframe, ev.init.config);
        p.catch(() => this.initErrors++);
        this.inits.set(ev.init.id, p);
        for (const id of this.inits.keys()) if (this.inits.size > MAX_INITS && id < ev.init.id) this.inits.delete(id);
      } else {
        published = true;
        if (this.consumer && this.window.ready) this.state = 'live';
      }
    }
    this.account();
    if (published) this.wake();
  }

  /** Keep the engine's ceiling honest: the window's bytes count; under pressure its oldest segments go first. */
  private account(): void {
    let delta = this.window.heldBytes - this.accounted;
    if (delta > 0 && this.memory.wouldExceed(delta)) {
      this.window.shed(delta);
      delta = this.window.heldBytes - this.accounted;
    }
    if (delta > 0) this.memory.add(delta);
    else if (delta < 0) this.memory.remove(-delta);
    this.accounted += delta;
  }

  private wake(): void {
    for (const w of [...this.waiters]) {
      if (w.ready()) {
        this.waiters.delete(w);
        clearTimeout(w.timer);
        w.done(true);
      }
    }
  }

  /**
   * Resolve true once `ready()` holds, false after timeoutMs (or when the session closes). Refused
   * (EdgeError HLS_BUSY, 503) when maxBlocked requests already wait.
   */
  waitUntil(ready: () => boolean, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    if (ready()) return Promise.resolve(true);
    if (this.closed) return Promise.resolve(false);
    if (this.waiters.size >= this.o.maxBlocked) {
      this.blockRefused++;
      return Promise.reject(Object.assign(new EdgeError('HLS_BUSY', `${this.o.maxBlocked} requests already wait on this track`), { status: 503 }));
    }
    return new Promise<boolean>((resolve) => {
      const w: Waiter = {
        ready,
        done: (ok) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(ok);
        },
        timer: setTimeout(() => {
          this.waiters.delete(w);
          this.blockTimeouts++;
          w.done(false);
        }, timeoutMs),
      };
      const onAbort = (): void => {
        this.waiters.delete(w);
        clearTimeout(w.timer);
        w.done(false);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.add(w);
      this.blockedPeak = Math.max(this.blockedPeak, this.waiters.size);
    });
  }

  init(id: number): Promise<InitSection> | undefined {
    return this.inits.get(id);
  }

  touch(): void {
    this.lastRequestAt = Date.now();
  }

  stats(): LiveTrackStats {
    return {
      track: trackPath(this.ref),
      sid: this.sid,
      state: this.closed ? 'closed' : this.state,
      since: this.since,
      lastRequestAt: this.lastRequestAt,
      requests: { ...this.st },
      blocked: this.waiters.size,
      blockedPeak: this.blockedPeak,
      blockTimeouts: this.blockTimeouts,
      blockRefused: this.blockRefused,
      resubscribes: this.resubscribes,
      initErrors: this.initErrors,
      window: this.window.stats(),
      consumer: this.consumer?.stats() ?? null,
    };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.resubscribeTimer) clearInterval(this.resubscribeTimer);
    this.consumer?.close();
    this.consumer = null;
    for (const w of this.waiters) {
      clearTimeout(w.timer);
      w.done(false);
    }
    this.waiters.clear();
    this.memory.remove(this.accounted);
    this.accounted = 0;
  }
}
