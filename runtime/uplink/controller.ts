// Uplink controller: the thin shell that runs the priority scheduler over the pang upstream links.
// Every interval it reads each link's drain estimate and demand, decides modes and applies them.
// One timer, cleared in close(); the links are owned by the egress service, not by this.
import type { UplinkEstimate, UplinkEstimator } from './estimator.js';
import { UplinkScheduler, type SchedulerOptions, type SchedulerStats, type TrackDemand, type TrackMode } from './scheduler.js';

/** What the controller needs from a link (PangPublisher fits). */
export interface PrioritizedLink {
  readonly name: string;
  readonly uplink: UplinkEstimator;
  uplinkDemand(): TrackDemand | null;
  setMode(mode: TrackMode): void;
  /** Sessions opened so far; when it changes the link restarted at full (a reconnect after a cut). */
  readonly sessions?: number;
  /**
   * Ask the source's encoder for at most this many bytes/s (null lifts it); false when the source
   * cannot (it is then reported not cappable and steps down to keyframes-only instead).
   */
  setEncodingCap?(bytesPerSec: number | null): boolean;
}

export interface UplinkControllerLog {
  info(obj: Record<string, unknown>, msg: string): void;
}

export interface UplinkControllerOptions {
  links: PrioritizedLink[];
  log: UplinkControllerLog;
  /** Decision period: 500 ms is two acknowledgement samples per link (the publisher ticks every 250 ms). */
  intervalMs?: number;
  /** At most one probe step up per this period when the link is not saturated. */
  probeIntervalMs?: number;
  scheduler?: SchedulerOptions;
  /** Store-and-forward backfill: gets what is left of a measured budget after every live track. */
  backfill?: { setLeftover(bytesPerSec: number | null): void } | undefined;
}

/**
 * Budget of a link shared by several sockets: a saturated (confident) socket measured its share of
 * the capacity; an unsaturated one carried what it offered, which is what it uses of the link. A
 * paused link's stale old figure must not count, hence carried, not the estimate.
 */
export function linkBudget(parts: UplinkEstimate[]): { bytesPerSec: number | null; confident: boolean } {
  let total: number | null = null;
  let confident = false;
  for (const p of parts) {
    if (p.bytesPerSec === null) continue;
    total = (total ?? 0) + (p.confident ? p.bytesPerSec : p.carriedBytesPerSec);
    confident ||= p.confident;
  }
  return { bytesPerSec: total, confident };
}

export interface UplinkControllerStats extends SchedulerStats {
  budgetBytesPerSec: number | null;
  confident: boolean;
  /** Budget left for the backfill after every live track (null: not measured). */
  backfillLeftoverBytesPerSec: number | null;
  encodingCapsRefused: number;
  /** Links that reconnected and were taken back to full at once. */
  reconnectResets: number;
}

export class UplinkController {
  private readonly scheduler: UplinkScheduler;
  private timer: NodeJS.Timeout | null = null;
  private lastProbeAt = -Infinity;
  private budget: { bytesPerSec: number | null; confident: boolean } = { bytesPerSec: null, confident: false };
  private closed = false;
  private leftover: number | null = null;
  private capRefused = 0;
  private resets = 0;
  /** Bounded: one entry per configured link. */
  private readonly sessionsSeen = new Map<string, number>();

  constructor(private readonly o: UplinkControllerOptions) {
    this.scheduler = new UplinkScheduler(o.scheduler);
  }

  start(): void {
    if (this.timer || this.closed) return;
    // 500 ms: a link that thins is acted on within a few seconds (issue 14: ≤ 5 s).
    this.timer = setInterval(() => this.tick(Date.now()), this.o.intervalMs ?? 500);
    this.timer.unref?.();
  }

  /** One decision round (public for tests that drive the clock). */
  tick(now: number): void {
    if (this.closed) return;
    const tracks: TrackDemand[] = [];
    const byId = new Map<string, PrioritizedLink>();
    for (const l of this.o.links) {
      const d = l.uplinkDemand();
      if (!d) continue;
      if (l.sessions !== undefined) {
        const seen = this.sessionsSeen.get(d.id);
        if (seen !== undefined && seen !== l.sessions) {
          this.scheduler.forget(d.id);
          this.resets++;
        }
        this.sessionsSeen.set(d.id, l.sessions);
      }
      tracks.push(d);
      byId.set(d.id, l);
    }
    this.budget = linkBudget(this.o.links.map((l) => l.uplink.estimate(now)));
    const probe = now - this.lastProbeAt >= (this.o.probeIntervalMs ?? 5000);
    const { modes, changed, caps } = this.scheduler.decide({ budgetBytesPerSec: this.budget.bytesPerSec, confident: this.budget.confident, tracks, probe });
    if (probe && !this.budget.confident && (changed.length > 0 || caps.size > 0)) this.lastProbeAt = now;
    for (const [id, cap] of caps) {
      const l = byId.get(id);
      if (!l?.setEncodingCap) continue;
      const ok = l.setEncodingCap(cap);
      if (cap !== null && !ok) {
        // Refused: no encoder to ask. The next round sees it not cappable and steps down.
        this.capRefused++;
        this.o.log.info({ link: id, capBytesPerSec: Math.round(cap) }, 'uplink encoder cap refused by the source');
      } else if (cap === null) this.o.log.info({ link: id }, 'uplink encoder cap lifted');
    }
    for (const [id, mode] of modes) byId.get(id)?.setMode(mode);
    if (this.o.backfill) {
      // Only a measured (saturated) budget caps the backfill; a lower bound would starve it.
      let leftover: number | null = null;
      if (this.budget.bytesPerSec !== null && this.budget.confident) {
        leftover = this.budget.bytesPerSec * (this.o.scheduler?.headroom ?? 0.85);
        for (const t of tracks) {
          const m = modes.get(t.id) ?? 'full';
          leftover -= m === 'full' ? t.demandBytesPerSec : m === 'keyframes-only' ? t.keyframeBytesPerSec : 0;
        }
        leftover = Math.max(0, leftover);
      }
      this.leftover = leftover;
      this.o.backfill.setLeftover(leftover);
    }
    for (const c of changed) this.o.log.info({ link: c.id, from: c.from, to: c.to, budgetBytesPerSec: this.budget.bytesPerSec, confident: this.budget.confident }, 'uplink priority mode changed');
  }

  stats(): UplinkControllerStats {
    return { ...this.scheduler.stats(), budgetBytesPerSec: this.budget.bytesPerSec, confident: this.budget.confident, backfillLeftoverBytesPerSec: this.leftover, encodingCapsRefused: this.capRefused, reconnectResets: this.resets };
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}
