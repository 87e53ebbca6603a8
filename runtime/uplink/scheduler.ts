// Per-track priority on a thin uplink (pure, no I/O). Given the usable upstream budget and each
// track's demand, decide per track: full / keyframes-only / paused. Rules:
//  - data and audio tracks always go in full and are served first: video never starves them;
//  - video tracks give way in priority order (higher number wins; ties by id for determinism),
//    and a track never gets a better mode than any higher-priority video track (lower ones give
//    way first, even when a small low-priority stream would still fit);
//  - stepping up needs a margin over the demand (hysteresis), so a link at the edge does not flap;
//  - without a confident estimate (the link has not been saturated lately) the highest-priority
//    reduced track is probed one step up: that is how a recovered link is discovered.
// Every decision is counted per track.

export type TrackMode = 'full' | 'keyframes-only' | 'paused';
export type UplinkTrackKind = 'video' | 'audio' | 'data';

export interface TrackDemand {
  id: string;
  kind: UplinkTrackKind;
  priority: number;
  /** Bytes/s the track offers in full. */
  demandBytesPerSec: number;
  /** Bytes/s of its keyframes alone (what keyframes-only costs). */
  keyframeBytesPerSec: number;
  /**
   * The source's encoder takes a bitrate cap (engine.requestEncodingCap): before going
   * keyframes-only the track is asked for less (issue 8). False/unset: straight to keyframes-only.
   */
  cappable?: boolean | undefined;
  /** While capped: what the track offered before the cap (demand now reflects the cap). */
  uncappedBytesPerSec?: number | undefined;
}

export interface SchedulerInput {
  /** Usable upstream bytes/s; null = unknown (nothing measured yet): everything full. */
  budgetBytesPerSec: number | null;
  /** The budget is a measured capacity (the link was saturated recently), not just a lower bound. */
  confident: boolean;
  tracks: TrackDemand[];
  /** Modes from the last decision (for hysteresis and probing). */
  previous?: ReadonlyMap<string, TrackMode> | undefined;
  /** Allowed to probe one step up this round (the caller rate-limits probes). */
  probe?: boolean;
}

export interface SchedulerOptions {
  /** Plan for this share of the estimate: 0.85 leaves room for framing, keepalives and jitter. */
  headroom?: number;
  /** Step up only when demand × margin fits: 1.2 keeps a link at the edge from flapping. */
  upgradeMargin?: number;
}

export const DEFAULT_PRIORITY: Record<UplinkTrackKind, number> = { data: 100, audio: 75, video: 50 };

const RANK: Record<TrackMode, number> = { paused: 0, 'keyframes-only': 1, full: 2 };
const BY_RANK: TrackMode[] = ['paused', 'keyframes-only', 'full'];

function safe(n: number): number {
  return Number.isFinite(n) && n > 0 ? n : 0;
}

/**
 * One decision round: a mode per track id. Pure. When `caps` is given, a cappable video track that
 * no longer fits in full is kept full under an encoder cap (bytes/s, set in `caps`) as long as the
 * cap leaves it more than its keyframes; `caps.set(id, null)` lifts a cap once the uncapped
 * demand fits again. Caps move only on a confident (measured) budget.
 */
export function allocate(input: SchedulerInput, opts: SchedulerOptions = {}, caps?: Map<string, number | null>): Map<string, TrackMode> {
  const headroom = opts.headroom ?? 0.85;
  const margin = opts.upgradeMargin ?? 1.2;
  const out = new Map<string, TrackMode>();
  const budget = input.budgetBytesPerSec;
  if (budget === null || !Number.isFinite(budget)) {
    for (const t of input.tracks) out.set(t.id, 'full');
    return out;
  }
  let avail = safe(budget) * headroom;
  for (const t of input.tracks) {
    if (t.kind === 'video') continue;
    out.set(t.id, 'full');
    avail -= safe(t.demandBytesPerSec);
  }
  const video = input.tracks
    .filter((t) => t.kind === 'video')
    .sort((a, b) => b.priority - a.priority || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  let cap: TrackMode = 'full';
  let probed = !input.probe || input.confident;
  for (const t of video) {
    const prev = input.previous?.get(t.id) ?? 'full';
    const need = (mode: TrackMode): number => {
      const base = mode === 'full' ? safe(t.demandBytesPerSec) : mode === 'keyframes-only' ? safe(t.keyframeBytesPerSec) : 0;
      return RANK[mode] > RANK[prev] ? base * margin : base;
    };
    if (caps && t.cappable && !input.confident && !probed && cap === 'full' && prev === 'full' && t.uncappedBytesPerSec !== undefined) {
      // Capped, and the link carries all of it without a backlog: the capped encoder is what we
      // measure, so no estimate will ever say "it fits" — probe the cap up (×2 per probe), lifting
      // it once that covers what the track offered uncapped. A still-thin link saturates again and
      // the next confident round caps it back within seconds.
      const uncapped = safe(t.uncappedBytesPerSec);
      const raised = safe(t.demandBytesPerSec) * 2;
      caps.set(t.id, raised >= uncapped ? null : raised);
      probed = true;
      out.set(t.id, 'full');
      avail -= Math.min(raised, uncapped);
      continue;
    }
    if (caps && t.cappable && input.confident && cap === 'full') {
      const capped = t.uncappedBytesPerSec !== undefined;
      const uncapped = Math.max(safe(t.uncappedBytesPerSec ?? 0), safe(t.demandBytesPerSec));
      if (uncapped * (capped ? margin : 1) <= avail) {
        // Fits in full without a cap (a capped track needs the step-up margin to lift it).
        if (capped) caps.set(t.id, null);
        out.set(t.id, 'full');
        avail -= uncapped;
        continue;
      }
      if (avail > safe(t.keyframeBytesPerSec) * margin) {
        // Full frame rate at a lower bitrate beats keyframes only: ask the encoder for what fits.
        caps.set(t.id, avail);
        out.set(t.id, 'full');
        avail = 0;
        continue;
      }
      // Not even a cap leaves more than keyframes: step down below (the cap stays until it fits).
    }
    let mode: TrackMode = 'paused';
    for (const m of ['full', 'keyframes-only'] as const) {
      if (RANK[m] > RANK[cap]) continue;
      if (need(m) <= avail) {
        mode = m;
        break;
      }
    }
    // Not confident: the link carried all we offered lately, so the figure is only a lower bound
    // and no reason to step down.
    if (!input.confident && RANK[mode] < RANK[prev]) mode = prev;
    if (!probed && RANK[mode] <= RANK[prev] && RANK[prev] < RANK[cap]) {
      // Not saturated lately: the budget figure is stale or a lower bound. Try one step up.
      mode = BY_RANK[RANK[prev] + 1]!;
      probed = true;
    }
    out.set(t.id, mode);
    avail -= mode === 'full' ? safe(t.demandBytesPerSec) : mode === 'keyframes-only' ? safe(t.keyframeBytesPerSec) : 0;
    if (RANK[mode] < RANK[cap]) cap = mode;
  }
  return out;
}

export interface TrackDecisionStats {
  mode: TrackMode;
  full: number;
  keyframesOnly: number;
  paused: number;
  /** Mode changes (each one logged once by the caller). */
  changes: number;
  probes: number;
  /** Encoder cap requests (each round a cap is set or moved) and lifts; the cap in force. */
  capsSet: number;
  capsLifted: number;
  capBytesPerSec: number | null;
}

export interface SchedulerStats {
  rounds: number;
  lastBudgetBytesPerSec: number | null;
  lastConfident: boolean;
  tracks: Record<string, TrackDecisionStats>;
}

/**
 * The allocation policy with memory: previous modes and counters per track. Bounded: one entry per
 * configured track (tracks not seen in a round are forgotten).
 */
export class UplinkScheduler {
  private prev = new Map<string, TrackMode>();
  private counters = new Map<string, TrackDecisionStats>();
  private rounds = 0;
  private lastBudget: number | null = null;
  private lastConfident = false;

  constructor(private readonly opts: SchedulerOptions = {}) {}

  decide(input: Omit<SchedulerInput, 'previous'>): {
    modes: Map<string, TrackMode>;
    changed: Array<{ id: string; from: TrackMode; to: TrackMode }>;
    /** Encoder caps to set (bytes/s) or lift (null) this round; tracks not listed keep theirs. */
    caps: Map<string, number | null>;
  } {
    const caps = new Map<string, number | null>();
    const modes = allocate({ ...input, previous: this.prev }, this.opts, caps);
    const changed: Array<{ id: string; from: TrackMode; to: TrackMode }> = [];
    const next = new Map<string, TrackDecisionStats>();
    for (const [id, mode] of modes) {
      const c = this.counters.get(id) ?? { mode: 'full', full: 0, keyframesOnly: 0, paused: 0, changes: 0, probes: 0, capsSet: 0, capsLifted: 0, capBytesPerSec: null };
      const cap = caps.get(id);
      if (cap === null) {
        c.capsLifted++;
        c.capBytesPerSec = null;
      } else if (cap !== undefined) {
        c.capsSet++;
        c.capBytesPerSec = Math.round(cap);
      }
      const from = this.prev.get(id) ?? 'full';
      if (mode === 'full') c.full++;
      else if (mode === 'keyframes-only') c.keyframesOnly++;
      else c.paused++;
      if (mode !== from) {
        c.changes++;
        changed.push({ id, from, to: mode });
        if (RANK[mode] > RANK[from] && input.probe && !input.confident) c.probes++;
      }
      c.mode = mode;
      next.set(id, c);
    }
    this.counters = next;
    this.prev = modes;
    this.rounds++;
    this.lastBudget = input.budgetBytesPerSec;
    this.lastConfident = input.confident;
    return { modes, changed, caps };
  }

  /** The track restarted (a new session, already at full): its previous mode no longer holds. */
  forget(id: string): void {
    this.prev.delete(id);
  }

  stats(): SchedulerStats {
    const tracks: Record<string, TrackDecisionStats> = {};
    for (const [id, c] of this.counters) tracks[id] = { ...c };
    return { rounds: this.rounds, lastBudgetBytesPerSec: this.lastBudget, lastConfident: this.lastConfident, tracks };
  }
}

/**
 * Offered bytes/s of one track, in full and keyframes alone: bytes are added as frames arrive,
 * `tick(now)` closes an interval into an EWMA. O(1) state. Pure: the caller passes the clock.
 */
export class DemandMeter {
  private accAll = 0;
  private accKey = 0;
  private lastTick: number | null = null;
  private all = 0;
  private key = 0;
  private seen = false;

  constructor(private readonly halfLifeMs = 3000) {}

  add(bytes: number, key: boolean): void {
    if (!Number.isFinite(bytes) || bytes < 0) return;
    this.accAll += bytes;
    if (key) this.accKey += bytes;
  }

  tick(nowMs: number): void {
    if (this.lastTick === null) {
      this.lastTick = nowMs;
      this.accAll = this.accKey = 0;
      return;
    }
    const iv = nowMs - this.lastTick;
    if (!(iv > 0)) return;
    const rAll = (this.accAll * 1000) / iv;
    const rKey = (this.accKey * 1000) / iv;
    if (!this.seen) {
      this.all = rAll;
      this.key = rKey;
      this.seen = true;
    } else {
      const a = 1 - Math.pow(2, -iv / this.halfLifeMs);
      this.all += a * (rAll - this.all);
      this.key += a * (rKey - this.key);
    }
    this.accAll = this.accKey = 0;
    this.lastTick = nowMs;
  }

  get bytesPerSec(): number {
    return this.all;
  }
  get keyframeBytesPerSec(): number {
    return this.key;
  }
}
