// Shared reconnect shell of every outbound link (pang publish, pang pull, WHIP): state,
// jittered capped backoff, throttled failure logs, last error without secrets.
import { Backoff, type BackoffOptions } from '../engine/api.js';
import { RepeatGate, type EgressLog } from './pang-link.js';

export type LinkState = 'idle' | 'connecting' | 'connected' | 'backoff' | 'closed';

export interface LinkError {
  code: string;
  message: string;
  at: number;
}

export interface LinkStats {
  name: string;
  kind: string;
  target: string;
  state: LinkState;
  connectedSince: number | null;
  reconnects: number;
  failures: Record<string, number>;
  lastError: LinkError | null;
  nextRetryInMs: number | null;
}

export abstract class ReconnectingLink {
  protected state: LinkState = 'idle';
  protected readonly backoff: Backoff;
  protected lastError: LinkError | null = null;
  protected connectedSince: number | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private retryAt: number | null = null;
  private reconnects = 0;
  private attempts = 0;
  private readonly failures: Record<string, number> = {};
  private readonly gates = new Map<string, RepeatGate>();

  constructor(
    readonly name: string,
    protected readonly kind: string,
    /** Redacted target for logs and stats. */
    protected readonly target: string,
    protected readonly log: EgressLog,
    backoff: BackoffOptions,
  ) {
    this.backoff = new Backoff(backoff);
  }

  start(): void {
    if (this.state !== 'idle') return;
    this.begin();
  }

  get closed(): boolean {
    return this.state === 'closed';
  }

  /** One connection attempt; the subclass calls up() when data flows and failed() when it ends. */
  protected abstract attempt(): void;
  /** Release the current connection's resources (idempotent, never throws). */
  protected abstract teardown(): void;

  private begin(): void {
    if (this.state === 'closed') return;
    this.retryTimer = null;
    this.retryAt = null;
    this.state = 'connecting';
    if (this.attempts++ > 0) this.reconnects++;
    try {
      this.attempt();
    } catch (err) {
      this.failed('LINK_ATTEMPT_FAILED', err instanceof Error ? err.message : String(err));
    }
  }

  /** The link carries data: connected, and the backoff's healthy clock starts. */
  protected up(): void {
    if (this.state === 'closed') return;
    if (this.state !== 'connected') {
      this.state = 'connected';
      this.connectedSince = Date.now();
      this.log.info({ link: this.name, kind: this.kind, target: this.target }, 'egress link connected');
    }
    this.backoff.healthy(Date.now());
  }

  /** The attempt or the session ended: tear down, log (throttled), schedule the next attempt. */
  protected failed(code: string, message: string): void {
    if (this.state === 'closed' || this.state === 'backoff') return;
    this.teardown();
    const now = Date.now();
    this.lastError = { code, message: message.slice(0, 300), at: now };
    this.failures[code] = (this.failures[code] ?? 0) + 1;
    this.connectedSince = null;
    const delay = this.backoff.next(now);
    let gate = this.gates.get(code);
    if (!gate) this.gates.set(code, (gate = new RepeatGate(60_000)));
    const n = gate.hit(now);
    if (n !== null) {
      this.log.warn(
        { link: this.name, kind: this.kind, target: this.target, code, err: this.lastError.message, count: n, retryInMs: delay },
        `egress link failed ×${n} (${code}); backing off`,
      );
    }
    this.state = 'backoff';
    this.retryAt = now + delay;
    this.retryTimer = setTimeout(() => this.begin(), delay);
    this.retryTimer.unref?.();
  }

  baseStats(): LinkStats {
    return {
      name: this.name,
      kind: this.kind,
      target: this.target,
      state: this.state,
      connectedSince: this.connectedSince,
      reconnects: this.reconnects,
      failures: { ...this.failures },
      lastError: this.lastError ? { ...this.lastError } : null,
      nextRetryInMs: this.retryAt === null ? null : Math.max(0, this.retryAt - Date.now()),
    };
  }

  close(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.retryAt = null;
    try {
      this.teardown();
    } catch {
      // close never throws; teardown implementations already swallow their own errors
    }
  }
}
