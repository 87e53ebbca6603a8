// The link state of an actuator (PTZ head, motor controller): up or down with a reason, and an
// event on each change. Serial drivers follow their port (open / lost); HTTP drivers (ISAPI,
// ONVIF) go down on a network failure and probe the device (a bare TCP connect) until it answers again. The control
// router refuses every command to a device whose link is down (503 LINK_DOWN) and logs each loss.

import net from 'node:net';
import { Backoff, DEFAULT_NETWORK_BACKOFF } from '../../runtime/engine/api.js';

export interface LinkEvent {
  up: boolean;
  /** Why it is down (no secrets); null when up. */
  reason: string | null;
  /** On up: the driver itself sent Stop as its first bytes (serial drivers do on every reopen). */
  stopped: boolean;
  at: number;
}

export interface LinkSnapshot {
  up: boolean;
  reason: string | null;
  /** Since when (ms epoch) the link is in this state. */
  since: number;
  losses: number;
}

/** Link state with transitions only (a repeated down() is not a new loss). */
export class LinkMonitor {
  private isUp: boolean;
  private why: string | null;
  private since = Date.now();
  private losses = 0;
  private readonly listeners: Array<(e: LinkEvent) => void> = [];

  constructor(initial: { up: boolean; reason?: string }) {
    this.isUp = initial.up;
    this.why = initial.up ? null : (initial.reason ?? 'not connected yet');
  }

  get up(): boolean {
    return this.isUp;
  }

  get reason(): string | null {
    return this.why;
  }

  on(cb: (e: LinkEvent) => void): void {
    this.listeners.push(cb);
  }

  markUp(stopped: boolean): void {
    if (this.isUp) return;
    this.isUp = true;
    this.why = null;
    this.since = Date.now();
    this.emit({ up: true, reason: null, stopped, at: this.since });
  }

  markDown(reason: string): void {
    if (!this.isUp) {
      this.why = reason; // keep the latest reason, no new event
      return;
    }
    this.isUp = false;
    this.why = reason;
    this.since = Date.now();
    this.losses++;
    this.emit({ up: false, reason, stopped: false, at: this.since });
  }

  snapshot(): LinkSnapshot {
    return { up: this.isUp, reason: this.why, since: this.since, losses: this.losses };
  }

  private emit(e: LinkEvent): void {
    for (const l of this.listeners) {
      try {
        l(e);
      } catch {
        // a listener's throw must not break the link
      }
    }
  }
}

export interface HttpProbeOptions {
  hostname: string;
  port: number;
  timeoutMs: number;
}

/**
 * A TCP connect to the device's HTTP port and nothing else: no request, so no device can count it
 * as a failed login or a request. True when the connection was accepted.
 */
export function tcpReachable(o: HttpProbeOptions): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: o.hostname, port: o.port });
    const done = (ok: boolean) => {
      clearTimeout(t);
      sock.destroy();
      resolve(ok);
    };
    const t = setTimeout(() => done(false), o.timeoutMs);
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

/**
 * Probes an HTTP device while its link is down (network ladder: 250 ms → 2 s, jittered; at most a
 * few tries a second, then one every 1–2 s) and marks it up when it answers. Owned by the driver;
 * close() stops it.
 */
export class HttpLinkProbe {
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  private closed = false;
  private readonly backoff = new Backoff(DEFAULT_NETWORK_BACKOFF);
  probes = 0;

  constructor(
    private readonly link: LinkMonitor,
    private readonly o: HttpProbeOptions,
    /** Called when the device answers again, before the link is marked up (e.g. nothing; or a re-login). */
    private readonly onBack: () => void = () => {},
  ) {
    link.on((e) => {
      if (!e.up) this.schedule(0);
    });
  }

  /** Learn the state now (at start: is the device there at all?). */
  start(): void {
    this.schedule(0);
  }

  private schedule(delay: number): void {
    if (this.closed || this.timer || this.running) return;
    this.timer = setTimeout(() => void this.tick(), delay);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    this.timer = null;
    if (this.closed) return;
    this.running = true;
    this.probes++;
    const ok = await tcpReachable(this.o);
    this.running = false;
    if (this.closed) return;
    if (ok) {
      this.backoff.reset();
      this.onBack();
      this.link.markUp(false);
      return;
    }
    this.link.markDown(`no answer from ${this.o.hostname}:${this.o.port}`);
    this.schedule(this.backoff.next(Date.now()));
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}
