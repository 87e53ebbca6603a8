// The control router: every control surface (joystick, remote pang operator, HTTP API) goes through
// here to reach a PTZ head or a motor controller. Per device it does:
//
// - Arbitration. A source kind has a priority (default joystick 30 > remote 20 > api 10). The session
//   that last commanded a device owns it while its lease runs. A session of higher priority takes
//   over; an equal or lower one is refused with CONTROL_BUSY (naming the holder and the time left).
//   Stop is always accepted, from anyone: stopping is never the unsafe choice.
// - Rate limit with coalescing. At most maxRatePerSec motion commands reach a device per second; in
//   between only the latest velocity is kept (older ones resolve as "coalesced"). One driver call at
//   a time per device; Stop jumps the queue and cancels queued preset moves.
// - Dead-man. Every velocity command carries a lease (default 500 ms, capped). With no refresh before
//   it runs out, the router sends Stop. When a session's link drops (releaseSession), its devices are
//   stopped at once. When a call to a device fails, a Stop is owed: it is retried with backoff and is
//   the first thing sent once the device answers again; serial drivers send Stop themselves on reopen.
// - Link state. The router follows each device's link (serial port open, HTTP device answering):
//   while it is down every command — a refresh of the same velocity too — is refused with LINK_DOWN
//   (HTTP 503) at once, pending ones fail with it, and each loss is one 'link-lost' event.
//
// Pure of transport: drivers are reached through the small Actuator interface; all timing uses real
// timers, all counters are in stats().

import { Backoff, EdgeError } from '../engine/api.js';

export type Velocity = Readonly<Record<string, number>>;

/** What the router needs from a device: PTZ heads and motor controllers are adapted to this. */
export interface Actuator {
  /** "ptz/front", "motor/base". */
  readonly id: string;
  sendMotion(v: Velocity): Promise<void>;
  sendStop(): Promise<void>;
  /** The device link now. */
  linkStatus(): { up: boolean; reason: string | null };
  /** Link changes; on up, `stopped` = the driver already sent Stop itself (serial reopen). */
  onLinkChange(cb: (e: { up: boolean; reason: string | null; stopped: boolean }) => void): void;
}

export interface CommandSource {
  /** Source kind, looked up in the priorities: "joystick", "remote", "api", … */
  kind: string;
  /** The client session (one pang session, one HTTP client, one joystick). */
  session: string;
}

export interface ControlRouterOptions {
  priorities?: Record<string, number>;
  /** Default velocity lease. */
  leaseMs?: number;
  /** Longest lease a command may ask for. */
  maxLeaseMs?: number;
  /** Motion commands per second per device, at most. */
  maxRatePerSec?: number;
  /** Queued non-velocity operations (presets) per device. */
  maxQueuedOps?: number;
}

export type MotionResult = 'sent' | 'coalesced' | 'unchanged';

export interface RouterEvent {
  /** link-drop: a controlling session's link dropped; link-lost/link-back: the device's own link. */
  type: 'sent' | 'stop' | 'deadman' | 'link-drop' | 'link-lost' | 'link-back' | 'refused' | 'takeover' | 'error';
  device: string;
  at: number;
  detail?: string;
}

interface Waiter {
  resolve: (r: MotionResult) => void;
  reject: (e: unknown) => void;
}

interface Op {
  motion: boolean;
  run: () => Promise<unknown>;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

interface Owner {
  kind: string;
  session: string;
  priority: number;
  until: number;
}

export interface LaneStats {
  commandsIn: number;
  sent: number;
  coalesced: number;
  unchanged: number;
  refused: number;
  takeovers: number;
  stopsSent: number;
  deadmanStops: number;
  linkDropStops: number;
  stopsOwed: number;
  stopRetries: number;
  opsRun: number;
  opsCancelled: number;
  /** Commands refused because the device link was down. */
  linkDownRefused: number;
  linkLosses: number;
  errors: number;
  lastError: string | null;
  owner: string | null;
  moving: boolean;
  linkUp: boolean;
  linkReason: string | null;
}

class Lane {
  owner: Owner | null = null;
  /** Latest velocity not yet sent (only the newest is kept). */
  desired: Velocity | null = null;
  waiters: Waiter[] = [];
  /** A Stop waits to be sent; it always goes before any move or operation. */
  stopPending = false;
  stopWaiters: Waiter[] = [];
  ops: Op[] = [];
  busy = false;
  /** Velocity the device last acknowledged; null = unknown (after an error) → treat as moving. */
  lastSent: Velocity | null = {};
  lastMotionAt = -Infinity;
  leaseUntil = 0;
  stopOwed = false;
  /** The link as the router last heard it (events are taken as transitions). */
  linkUp = true;
  flushTimer: NodeJS.Timeout | null = null;
  leaseTimer: NodeJS.Timeout | null = null;
  retryTimer: NodeJS.Timeout | null = null;
  readonly retry = new Backoff({ initialMs: 200, maxMs: 5000, resetAfterMs: 1000 });
  readonly s: Omit<LaneStats, 'owner' | 'moving' | 'linkUp' | 'linkReason'> = {
    commandsIn: 0,
    sent: 0,
    coalesced: 0,
    unchanged: 0,
    refused: 0,
    takeovers: 0,
    stopsSent: 0,
    deadmanStops: 0,
    linkDropStops: 0,
    stopsOwed: 0,
    stopRetries: 0,
    opsRun: 0,
    opsCancelled: 0,
    linkDownRefused: 0,
    linkLosses: 0,
    errors: 0,
    lastError: null,
  };
  constructor(readonly act: Actuator) {}

  get moving(): boolean {
    return this.lastSent === null || !isZero(this.lastSent);
  }
}

export function isZero(v: Velocity): boolean {
  for (const k in v) if (v[k] !== 0) return false;
  return true;
}

function same(a: Velocity | null, b: Velocity): boolean {
  if (!a) return false;
  const ka = Object.keys(a).filter((k) => a[k] !== 0);
  const kb = Object.keys(b).filter((k) => b[k] !== 0);
  return ka.length === kb.length && kb.every((k) => a[k] === b[k]);
}

const DEFAULT_PRIORITIES: Record<string, number> = { joystick: 30, remote: 20, api: 10 };
const MAX_WAITERS = 256;

export class ControlRouter {
  private readonly lanes = new Map<string, Lane>();
  private readonly o: Required<ControlRouterOptions>;
  private readonly listeners: Array<(e: RouterEvent) => void> = [];
  private closed = false;

  constructor(opts: ControlRouterOptions = {}) {
    this.o = {
      priorities: { ...DEFAULT_PRIORITIES, ...opts.priorities },
      leaseMs: opts.leaseMs ?? 500,
      maxLeaseMs: opts.maxLeaseMs ?? 5000,
      maxRatePerSec: opts.maxRatePerSec ?? 20,
      maxQueuedOps: opts.maxQueuedOps ?? 8,
    };
  }

  add(act: Actuator): void {
    if (this.lanes.has(act.id)) throw new EdgeError('CONTROL_DUPLICATE_DEVICE', `device ${act.id} registered twice`);
    const lane = new Lane(act);
    this.lanes.set(act.id, lane);
    lane.linkUp = act.linkStatus().up;
    act.onLinkChange((e) => {
      if (this.closed || e.up === lane.linkUp) return; // transitions only: a repeated down is the same loss
      lane.linkUp = e.up;
      if (e.up) {
        if (e.stopped) {
          // The driver sent Stop itself as its first bytes after reopening.
          lane.lastSent = {};
          lane.stopOwed = false;
        } else if (lane.lastSent === null || lane.moving || lane.stopOwed) {
          // An HTTP device is back: whatever it was doing, Stop goes first, now.
          if (!lane.stopOwed) lane.s.stopsOwed++;
          lane.stopOwed = true;
          lane.stopPending = true;
        }
        this.emit({ type: 'link-back', device: act.id, at: Date.now() });
        this.pump(lane);
        return;
      }
      lane.s.linkLosses++;
      this.emit({ type: 'link-lost', device: act.id, at: Date.now(), detail: e.reason ?? 'link down' });
      // What was waiting cannot reach the device: it fails now, nothing is replayed on return.
      const err = this.linkDownError(lane);
      for (const w of lane.waiters.splice(0)) w.reject(err);
      lane.desired = null;
      for (const op of lane.ops.splice(0)) op.reject(err);
      if (lane.moving || lane.lastSent === null) {
        lane.lastSent = null;
        if (!lane.stopOwed) lane.s.stopsOwed++;
        lane.stopOwed = true;
      }
      lane.leaseUntil = 0;
    });
  }

  private linkDownError(lane: Lane): EdgeError {
    const l = lane.act.linkStatus();
    return new EdgeError('LINK_DOWN', `${lane.act.id}: link down${l.reason ? ` (${l.reason.slice(0, 160)})` : ''}`, { device: lane.act.id });
  }

  /** Throws LINK_DOWN (counted) when the device's link is down. */
  private assertLink(lane: Lane): void {
    if (lane.act.linkStatus().up) return;
    lane.s.linkDownRefused++;
    throw this.linkDownError(lane);
  }

  /** The device's link, for status answers and the dashboard. */
  link(device: string): { up: boolean; reason: string | null } | null {
    const l = this.lanes.get(device);
    return l ? l.act.linkStatus() : null;
  }

  /** True while `session` owns a device that moves (or is about to): its silence must stop it. */
  controlsMotion(session: string): boolean {
    const now = Date.now();
    for (const lane of this.lanes.values()) {
      if (lane.owner?.session === session && lane.owner.until > now && (lane.moving || lane.desired || lane.ops.some((o) => o.motion))) return true;
    }
    return false;
  }

  has(id: string): boolean {
    return this.lanes.has(id);
  }

  on(cb: (e: RouterEvent) => void): void {
    this.listeners.push(cb);
  }

  private emit(e: RouterEvent): void {
    for (const l of this.listeners) {
      try {
        l(e);
      } catch {
        // a listener's throw must not break the router
      }
    }
  }

  private lane(id: string): Lane {
    const l = this.lanes.get(id);
    if (!l) throw new EdgeError('CONTROL_UNKNOWN_DEVICE', `no device ${id.slice(0, 80)}`, { device: id.slice(0, 80) });
    if (this.closed) throw new EdgeError('CONTROL_CLOSED', 'control router closed', { device: id });
    return l;
  }

  private clampLease(leaseMs: number | undefined): number {
    const l = leaseMs ?? this.o.leaseMs;
    return Math.max(50, Math.min(this.o.maxLeaseMs, Number.isFinite(l) ? l : this.o.leaseMs));
  }

  /** Take or keep ownership for `src`; throws CONTROL_BUSY when a higher/equal other session holds it. */
  private acquire(lane: Lane, src: CommandSource, leaseMs: number, now: number): void {
    const priority = this.o.priorities[src.kind] ?? 0;
    const o = lane.owner;
    if (o && o.until > now && o.session !== src.session) {
      if (priority > o.priority) {
        lane.s.takeovers++;
        this.emit({ type: 'takeover', device: lane.act.id, at: now, detail: `${src.kind} over ${o.kind}` });
      } else {
        lane.s.refused++;
        this.emit({ type: 'refused', device: lane.act.id, at: now, detail: src.kind });
        throw new EdgeError(
          'CONTROL_BUSY',
          `${lane.act.id} is controlled by ${o.kind} (priority ${o.priority}) for another ${o.until - now} ms; ${src.kind} has priority ${priority}`,
          { device: lane.act.id, holder: o.kind, source: src.kind },
        );
      }
    }
    lane.owner = { kind: src.kind, session: src.session, priority, until: now + leaseMs };
  }

  /** A velocity command. Resolves once this (or a newer) velocity reached the device. */
  move(device: string, src: CommandSource, v: Velocity, leaseMs?: number): Promise<MotionResult> {
    let lane: Lane;
    const now = Date.now();
    const lease = this.clampLease(leaseMs);
    try {
      lane = this.lane(device);
      lane.s.commandsIn++;
      this.assertLink(lane);
      this.acquire(lane, src, lease, now);
    } catch (e) {
      return Promise.reject(e);
    }
    if (isZero(v)) return this.queueStop(lane).then(() => 'sent' as const);
    lane.leaseUntil = now + lease;
    this.armLease(lane);
    // A pending Stop (dead-man, another operator) is sent first; this move follows it.
    if (!lane.stopPending && !lane.desired && !lane.stopOwed && !lane.busy && same(lane.lastSent, v)) {
      lane.s.unchanged++;
      return Promise.resolve('unchanged');
    }
    return new Promise<MotionResult>((resolve, reject) => {
      this.coalesceWaiters(lane);
      lane.desired = { ...v };
      lane.waiters.push({ resolve, reject });
      this.pump(lane);
    });
  }

  /** Stop, accepted from any source. Resolves when the device took the Stop. */
  stop(device: string, src: CommandSource): Promise<void> {
    let lane: Lane;
    try {
      lane = this.lane(device);
      lane.s.commandsIn++;
      // Stop is accepted from anyone; a device that cannot be reached cannot take it (the driver
      // sends Stop first on reopen, and an HTTP device gets it first when it answers again).
      this.assertLink(lane);
    } catch (e) {
      return Promise.reject(e);
    }
    void src;
    return this.queueStop(lane);
  }

  /** A preset move or any other non-velocity device operation, under arbitration. */
  operate<T>(device: string, src: CommandSource, motion: boolean, run: () => Promise<T>): Promise<T> {
    let lane: Lane;
    try {
      lane = this.lane(device);
      lane.s.commandsIn++;
      this.assertLink(lane);
      this.acquire(lane, src, this.o.leaseMs, Date.now());
    } catch (e) {
      return Promise.reject(e);
    }
    if (lane.ops.length >= this.o.maxQueuedOps) {
      lane.s.refused++;
      return Promise.reject(new EdgeError('CONTROL_BUSY', `${device}: ${lane.ops.length} operations already queued`, { device }));
    }
    return new Promise<T>((resolve, reject) => {
      lane.ops.push({ motion, run, resolve: resolve as (v: unknown) => void, reject });
      this.pump(lane);
    });
  }

  /** The link of a session dropped (pang client gone): stop every device it was moving, now. */
  releaseSession(session: string): void {
    if (this.closed) return; // close() already stopped everything
    const now = Date.now();
    for (const lane of this.lanes.values()) {
      if (lane.owner?.session !== session) continue;
      const wasOwnerActive = lane.owner.until > now;
      lane.owner = null;
      if (lane.moving || lane.desired || lane.ops.some((o) => o.motion)) {
        lane.s.linkDropStops++;
        this.emit({ type: 'link-drop', device: lane.act.id, at: now, detail: session });
        void this.queueStop(lane).catch(() => {});
      } else if (wasOwnerActive) {
        // Nothing moving: just free the device for others.
      }
    }
  }

  /** The pending velocity is superseded: its waiters resolve as coalesced. */
  private coalesceWaiters(lane: Lane): void {
    if (lane.desired && lane.waiters.length) {
      for (const w of lane.waiters) w.resolve('coalesced');
      lane.s.coalesced += lane.waiters.length;
      lane.waiters = [];
    }
    lane.desired = null;
  }

  private queueStop(lane: Lane): Promise<void> {
    lane.leaseUntil = 0;
    if (lane.leaseTimer) clearTimeout(lane.leaseTimer);
    lane.leaseTimer = null;
    // Queued preset moves are cancelled: a Stop means stop.
    for (const op of lane.ops.filter((o) => o.motion)) {
      op.reject(new EdgeError('CONTROL_CANCELLED', `${lane.act.id}: cancelled by stop`, { device: lane.act.id }));
      lane.s.opsCancelled++;
    }
    lane.ops = lane.ops.filter((o) => !o.motion);
    return new Promise<void>((resolve, reject) => {
      // A pending velocity is dropped: Stop means stop.
      this.coalesceWaiters(lane);
      lane.stopPending = true;
      if (lane.stopWaiters.length < MAX_WAITERS) lane.stopWaiters.push({ resolve: () => resolve(), reject });
      else resolve();
      this.pump(lane);
    });
  }

  private armLease(lane: Lane): void {
    if (lane.leaseTimer) clearTimeout(lane.leaseTimer);
    const delay = Math.max(0, lane.leaseUntil - Date.now());
    lane.leaseTimer = setTimeout(() => {
      lane.leaseTimer = null;
      if (this.closed) return;
      const now = Date.now();
      if (lane.leaseUntil > now) {
        this.armLease(lane);
        return;
      }
      if (lane.moving || lane.desired) {
        lane.s.deadmanStops++;
        this.emit({ type: 'deadman', device: lane.act.id, at: now });
        void this.queueStop(lane).catch(() => {});
      }
    }, delay);
  }

  private pump(lane: Lane): void {
    if (lane.busy || this.closed) return;
    // Nothing reaches a device whose link is down; the link's return pumps again.
    if (!lane.act.linkStatus().up) return;
    if (lane.flushTimer) {
      clearTimeout(lane.flushTimer);
      lane.flushTimer = null;
    }
    const d = lane.desired;
    if (lane.stopPending || (lane.stopOwed && (d || lane.ops.length))) {
      lane.stopPending = false;
      this.run(lane, 'stop', () => lane.act.sendStop(), lane.stopWaiters.splice(0));
      return;
    }
    const op = lane.ops.shift();
    if (op) {
      lane.busy = true;
      lane.s.opsRun++;
      op.run().then(
        (v) => {
          if (op.motion) lane.lastSent = {};
          op.resolve(v);
        },
        (e) => {
          this.noteError(lane, e);
          op.reject(e);
        },
      ).finally(() => {
        lane.busy = false;
        this.pump(lane);
      });
      return;
    }
    if (d) {
      const wait = lane.lastMotionAt + 1000 / this.o.maxRatePerSec - Date.now();
      if (wait > 0) {
        lane.flushTimer = setTimeout(() => {
          lane.flushTimer = null;
          this.pump(lane);
        }, wait);
        return;
      }
      lane.desired = null;
      const waiters = lane.waiters.splice(0);
      this.run(lane, 'move', () => lane.act.sendMotion(d), waiters, d);
    }
  }

  private run(lane: Lane, kind: 'move' | 'stop', call: () => Promise<void>, waiters: Waiter[], v?: Velocity): void {
    lane.busy = true;
    if (kind === 'move') lane.lastMotionAt = Date.now();
    let p: Promise<void>;
    try {
      p = call();
    } catch (e) {
      p = Promise.reject(e);
    }
    p.then(
      () => {
        if (kind === 'stop') {
          lane.lastSent = {};
          lane.stopOwed = false;
          lane.s.stopsSent++;
          lane.retry.healthy(Date.now());
          this.emit({ type: 'stop', device: lane.act.id, at: Date.now() });
        } else {
          lane.lastSent = v!;
          lane.s.sent++;
          this.emit({ type: 'sent', device: lane.act.id, at: Date.now() });
        }
        for (const w of waiters) w.resolve('sent');
      },
      (e) => {
        this.noteError(lane, e);
        // The device's state is unknown now: a Stop is owed, and goes first once it answers.
        lane.lastSent = null;
        if (!lane.stopOwed) lane.s.stopsOwed++;
        lane.stopOwed = true;
        for (const w of waiters) w.reject(e);
        if (kind === 'stop' && lane.desired) {
          // The owed Stop did not get through: the move behind it fails too (never move unstopped).
          for (const w of lane.waiters.splice(0)) w.reject(e);
          lane.desired = null;
        }
        this.scheduleStopRetry(lane);
      },
    ).finally(() => {
      lane.busy = false;
      this.pump(lane);
    });
  }

  private scheduleStopRetry(lane: Lane): void {
    if (lane.retryTimer || this.closed) return;
    lane.retryTimer = setTimeout(() => {
      lane.retryTimer = null;
      // While the link is down the link's return pumps the owed Stop.
      if (!lane.stopOwed || this.closed || !lane.act.linkStatus().up) return;
      lane.s.stopRetries++;
      lane.stopPending = true;
      this.pump(lane);
    }, lane.retry.next(Date.now()));
  }

  private noteError(lane: Lane, e: unknown): void {
    lane.s.errors++;
    lane.s.lastError = e instanceof EdgeError ? `${e.code}: ${e.detail.slice(0, 200)}` : String(e).slice(0, 200);
    this.emit({ type: 'error', device: lane.act.id, at: Date.now(), detail: lane.s.lastError });
  }

  /** Who holds a device now (for status answers). */
  holder(device: string): { kind: string; session: string; remainingMs: number } | null {
    const o = this.lanes.get(device)?.owner;
    const now = Date.now();
    return o && o.until > now ? { kind: o.kind, session: o.session, remainingMs: o.until - now } : null;
  }

  stats(): Record<string, LaneStats> {
    const out: Record<string, LaneStats> = {};
    const now = Date.now();
    for (const [id, l] of this.lanes) {
      const link = l.act.linkStatus();
      out[id] = { ...l.s, owner: l.owner && l.owner.until > now ? l.owner.kind : null, moving: l.moving, linkUp: link.up, linkReason: link.reason };
    }
    return out;
  }

  /** Stop every moving device (bounded wait), then drop all timers. Idempotent, never throws. */
  async close(timeoutMs = 1000): Promise<void> {
    if (this.closed) return;
    const stops: Promise<unknown>[] = [];
    for (const lane of this.lanes.values()) {
      if (lane.moving || lane.desired) stops.push(this.queueStop(lane).catch(() => {}));
    }
    let t: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(stops), new Promise((r) => (t = setTimeout(r, timeoutMs)))]);
    clearTimeout(t);
    this.closed = true;
    for (const lane of this.lanes.values()) {
      for (const tm of [lane.flushTimer, lane.leaseTimer, lane.retryTimer]) if (tm) clearTimeout(tm);
      lane.flushTimer = lane.leaseTimer = lane.retryTimer = null;
      const closedErr = new EdgeError('CONTROL_CLOSED', 'control router closed', { device: lane.act.id });
      for (const w of [...lane.waiters.splice(0), ...lane.stopWaiters.splice(0)]) w.reject(closedErr);
      for (const op of lane.ops.splice(0)) op.reject(closedErr);
      lane.desired = null;
    }
  }
}
