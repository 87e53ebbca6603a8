// Shared reconnect shell of every outbound link (pang publish, pang pull, WHIP): state,
// two retry ladders (issue 14: a peer's refusal backs off long, a down network retries fast),
// throttled failure logs, last error without secrets.
import { RetryPolicy, type BackoffOptions, type FailureClass } from '../engine/api.js';
import { RepeatGate, type EgressLog } from './pang-link.js';

export type LinkState = 'idle' | 'connecting' | 'connected' | 'backoff' | 'closed';

export interface LinkError {
  code: string;
  message: string;
  at: number;
}

/**
 * A link's retry settings: the refusal ladder (initialMs/maxMs/resetAfterMs, as before issue 14)
 * and the network ladder (`network`, default 250 ms → 2 s).
 */
export type LinkBackoff = BackoffOptions & { network?: Partial<BackoffOptions> | undefined };

/** Codes whose failure is the peer saying no; everything else is the path (or the peer) being down. */
const REFUSAL_CODES = new Set([
  'UPSTREAM_REFUSED',
  'UPSTREAM_HTTP_REFUSED',
  'UPSTREAM_TLS',
  'UPSTREAM_CA_FILE',
  'UPSTREAM_MESSAGE_TOO_BIG',
  'UNKNOWN_CHANNEL',
  'UNKNOWN_TRACK',
  'TRACK_BUSY',
  'LOCAL_TRACK_UNAVAILABLE',
  'WHIP_REFUSED',
  'WHIP_AUTH',
  'WHIP_NOT_FOUND',
  'WHIP_BAD_ANSWER',
  'WHIP_NO_TRACKS',
]);

/** The retry class of a failure code (callers that know better pass the class to failed()). */
export function failureClassOf(code: string): FailureClass {
  return REFUSAL_CODES.has(code) ? 'refused' : 'network';
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
  /** Failures by retry class (issue 14): refusals back off long, network failures retry fast. */
  retries: { refused: number; network: number; lastClass: FailureClass | null; lastDelayMs: number };
  /** Times the link left its session for lack of anything to carry (it reopens on demand). */
  parked: number;
}

export abstract class ReconnectingLink {
  protected state: LinkState = 'idle';
  protected readonly retry: RetryPolicy;
  protected lastError: LinkError | null = null;
  protected connectedSince: number | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private retryAt: number | null = null;
  private reconnects = 0;
  private attempts = 0;
  private parks = 0;
  private readonly failures: Record<string, number> = {};
  private readonly gates = new Map<string, RepeatGate>();
  /** Class of the last failure: a network failure shortens the next attempt's connect timeout. */
  protected lastFailureClass: FailureClass | null = null;

  constructor(
    readonly name: string,
    protected readonly kind: string,
    /** Redacted target for logs and stats. */
    protected readonly target: string,
    protected readonly log: EgressLog,
    backoff: LinkBackoff,
  ) {
    const { network, ...refused } = backoff;
    this.retry = new RetryPolicy({ refused, ...(network ? { network } : {}), ...(backoff.random ? { random: backoff.random } : {}) });
  }

  start(): void {
    if (this.state !== 'idle') return;
    this.begin();
  }

  get closed(): boolean {
    return this.state === 'closed';
  }

  /** idle (never started, or parked), connecting, connected, backoff or closed. */
  get linkState(): LinkState {
    return this.state;
  }

  /**
   * Leave the session (or the pending retry) and wait, without a failure, until start() again: a
   * link with nothing to carry holds no session at the server (issue 14: the idle backfill).
   */
  protected park(): void {
    if (this.state === 'closed' || this.state === 'idle') return;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.retryAt = null;
    this.teardown();
    this.connectedSince = null;
    this.state = 'idle';
    this.parks++;
  }

  /** One connection attempt; the subclass calls up() when data flows and failed() when it ends. */
  protected abstract attempt(): void;
  /** Release the current connection's resources (idempotent, never throws). */
  protected abstract teardown(): void;
  /** How long the current attempt waited before it failed without ever opening (0: it opened). */
  protected attemptSpentMs(_now: number): number {
    return 0;
  }

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
    this.retry.healthy(Date.now());
  }

  /**
   * The attempt or the session ended: tear down, log (throttled), schedule the next attempt on the
   * ladder of `cls` (by default from the code: a refusal by the peer, or the network).
   */
  protected failed(code: string, message: string, cls: FailureClass = failureClassOf(code)): void {
    if (this.state === 'closed' || this.state === 'backoff') return;
    const now = Date.now();
    const spent = this.attemptSpentMs(now);
    this.teardown();
    this.lastError = { code, message: message.slice(0, 300), at: now };
    this.failures[code] = (this.failures[code] ?? 0) + 1;
    this.connectedSince = null;
    let delay = this.retry.next(now, cls);
    // While the network is down, attempts are spaced by the ladder from their start: a connect that
    // already waited its timeout does not wait the whole step again (a returning link is found
    // within a step, yet never more than a few attempts a second).
    if (cls === 'network' && spent > 0) delay = Math.max(100, delay - spent);
    this.lastFailureClass = cls;
    let gate = this.gates.get(code);
    if (!gate) this.gates.set(code, (gate = new RepeatGate(60_000)));
    const n = gate.hit(now);
    if (n !== null) {
      this.log.warn(
        { link: this.name, kind: this.kind, target: this.target, code, class: cls, err: this.lastError.message, count: n, retryInMs: delay },
        cls === 'refused' ? `egress link refused ×${n} (${code}); backing off` : `egress link down ×${n} (${code}); retrying`,
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
      retries: this.retry.stats(),
      parked: this.parks,
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
