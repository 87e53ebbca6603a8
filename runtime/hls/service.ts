// HLS service: one LiveTrack per requested H.264 track, started by the first request and stopped
// after idleTimeoutSeconds without one; at most maxTracks at once. stats() for /api/stats.
import { EdgeError, mimeBase, trackPath, type TrackRef, type TrackSource } from '../engine/api.js';
import type { HlsConfig } from './config.js';
import { LiveTrack, type LiveTrackStats, type MemoryAccount } from './live.js';

export interface HlsServiceOptions {
  config: HlsConfig;
  source: TrackSource;
  memory: MemoryAccount;
  log?: { info(o: object, m: string): void };
  /** Tests shorten the idle sweep; default a quarter of the idle timeout (≤ 5 s). */
  sweepMs?: number;
}

export interface HlsStats {
  tracks: number;
  maxTracks: number;
  started: number;
  idleStopped: number;
  refused: number;
  heldBytes: number;
  live: LiveTrackStats[];
}

type HttpStatusError = EdgeError & { status: number };

function refused(code: string, status: number, message: string): HttpStatusError {
  return Object.assign(new EdgeError(code, message), { status });
}

export class HlsService {
  private readonly tracks = new Map<string, LiveTrack>();
  private readonly sweeper: NodeJS.Timeout;
  private closed = false;
  private started = 0;
  private idleStopped = 0;
  private refusedCount = 0;

  constructor(private readonly o: HlsServiceOptions) {
    const idleMs = o.config.idleTimeoutSeconds * 1000;
    this.sweeper = setInterval(() => this.sweep(Date.now()), o.sweepMs ?? Math.min(5000, Math.max(100, idleMs / 4)));
    this.sweeper.unref?.();
  }

  /** The live track for a ref, started on first use. Throws EdgeError with an HTTP status. */
  live(ref: TrackRef): LiveTrack {
    if (this.closed) throw refused('HLS_CLOSED', 503, 'HLS is stopping');
    const key = trackPath(ref);
    const have = this.tracks.get(key);
    if (have) {
      have.touch();
      return have;
    }
    const t = this.o.source.listTracks().find((x) => trackPath(x) === key);
    if (!t) throw refused('HLS_UNKNOWN_TRACK', 404, `no track ${key}`);
    if (!t.mime || mimeBase(t.mime) !== 'video/h264') {
      // Audio renditions (EXT-X-MEDIA TYPE=AUDIO beside the video playlist) come with audio tracks.
      throw refused('HLS_NOT_H264', 415, `track ${key} is ${t.mime ? mimeBase(t.mime) : 'without MIME'}; HLS serves H.264 tracks`);
    }
    if (this.tracks.size >= this.o.config.maxTracks) {
      this.refusedCount++;
      throw refused('HLS_BUSY', 503, `${this.o.config.maxTracks} tracks are already served over HLS`);
    }
    const c = this.o.config;
    const lt = new LiveTrack({ ...ref }, this.o.source, this.o.memory, {
      partTargetMs: c.partTargetMs,
      segmentTargetMs: c.segmentTargetMs,
      windowSegments: c.windowSegments,
      windowBytes: c.windowBytes,
      maxBlocked: c.maxBlockedRequests,
    });
    this.tracks.set(key, lt);
    this.started++;
    this.o.log?.info({ track: key, sid: lt.sid }, 'HLS muxing started');
    return lt;
  }

  /** A running track (for segment/part requests): never starts one. */
  running(ref: TrackRef): LiveTrack | undefined {
    const t = this.tracks.get(trackPath(ref));
    t?.touch();
    return t;
  }

  sweep(now: number): void {
    const idleMs = this.o.config.idleTimeoutSeconds * 1000;
    for (const [key, t] of this.tracks) {
      if (now - t.lastRequestAt < idleMs) continue;
      t.close();
      this.tracks.delete(key);
      this.idleStopped++;
      this.o.log?.info({ track: key, sid: t.sid }, 'HLS muxing stopped (no requests)');
    }
  }

  stats(): HlsStats {
    const live = [...this.tracks.values()].map((t) => t.stats());
    return {
      tracks: this.tracks.size,
      maxTracks: this.o.config.maxTracks,
      started: this.started,
      idleStopped: this.idleStopped,
      refused: this.refusedCount,
      heldBytes: live.reduce((a, t) => a + t.window.heldBytes, 0),
      live,
    };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.sweeper);
    for (const t of this.tracks.values()) t.close();
    this.tracks.clear();
  }
}
