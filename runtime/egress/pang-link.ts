// Pure pieces of the pang upstream client (pang-protocol.md): URL building with redaction,
// close classification (a refusal is a close without close frame right after the upgrade),
// and the GOP-aware send gate used for bufferedAmount backpressure. No I/O.

export type PangRole = 'pub' | 'sub';

export interface PangEndpoint {
  url: string;
  channel?: string | undefined;
  instant?: string | undefined;
  key?: string | undefined;
  source: string;
  track: string;
  timeoutSec?: number | undefined;
}

/** Full session URL: `<base>/pang/ws/<role>?channel=…&source=…&track=…[&key=…]`. */
export function pangSessionUrl(ep: PangEndpoint, role: PangRole, extra: Record<string, string> = {}): string {
  const u = new URL(ep.url);
  u.pathname = `${u.pathname.replace(/\/+$/, '')}/pang/ws/${role}`;
  const q = u.searchParams;
  if (ep.channel) q.set('channel', ep.channel);
  else {
    q.set('channel', 'instant');
    q.set('name', ep.instant ?? '');
  }
  q.set('source', ep.source);
  q.set('track', ep.track);
  if (ep.timeoutSec !== undefined) q.set('timeout', String(ep.timeoutSec));
  for (const [k, v] of Object.entries(extra)) q.set(k, v);
  if (ep.key) q.set('key', ep.key);
  return u.toString();
}

/** A URL safe for logs and stats: key/token/password query values and userinfo replaced. */
export function redactPangUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.username || u.password) {
      u.username = u.username ? '***' : '';
      u.password = u.password ? '***' : '';
    }
    for (const k of [...u.searchParams.keys()]) {
      if (/^(key|token|password|pass|secret|auth)$/i.test(k)) u.searchParams.set(k, '***');
    }
    return u.toString();
  } catch {
    return '<invalid url>';
  }
}

export type CloseKind =
  /** Closed by the server right after the upgrade, or with no close frame before any healthy run. */
  | 'refused'
  /** The link ran, then went away (server restart, network cut). */
  | 'dropped'
  /** Server sent a proper close frame. */
  | 'closed';

/**
 * Moth refuses (bad channel, wrong key, busy, licence) by closing the TCP connection without a
 * close frame, usually right after the upgrade; the client sees 1006. A 1006 after a long,
 * healthy run is a dropped link instead.
 */
export function classifyClose(code: number, msSinceOpen: number, refusalWindowMs = 3000): CloseKind {
  if (code === 1006 || code === 1005) return msSinceOpen <= refusalWindowMs ? 'refused' : 'dropped';
  if (code >= 4400 && code < 4500) return 'refused'; // moth-edge local server's refusal codes
  return 'closed';
}

/** Map a connect-time error to a stable code for stats and logs. */
export function connectErrorCode(err: unknown): string {
  const e = err as { code?: unknown; message?: unknown };
  const code = typeof e?.code === 'string' ? e.code : '';
  const msg = typeof e?.message === 'string' ? e.message : '';
  if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|DEPTH_ZERO|ERR_TLS/i.test(code) || /certificate/i.test(msg)) return 'UPSTREAM_TLS';
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return 'UPSTREAM_DNS';
  if (code === 'ECONNREFUSED') return 'UPSTREAM_CONN_REFUSED';
  if (code === 'ETIMEDOUT' || /timed? ?out/i.test(msg)) return 'UPSTREAM_TIMEOUT';
  // A 5xx (a proxy in front of a restarting server) is the service being down, not a no.
  if (/Unexpected server response: 5\d\d/i.test(msg)) return 'UPSTREAM_HTTP_UNAVAILABLE';
  if (/Unexpected server response/i.test(msg)) return 'UPSTREAM_HTTP_REFUSED';
  return 'UPSTREAM_CONNECT_FAILED';
}

export type GateDecision = 'send' | 'drop-gop-tail' | 'drop-buffer-full';

/**
 * Backpressure for one link. Video: when the socket holds more than the ceiling, the rest of the
 * GOP is dropped and sending resumes at the next keyframe once the socket has drained below half
 * the ceiling (hysteresis, so we do not flap at the limit). Data/audio: each record that does
 * not fit is dropped on its own.
 */
export class GopGate {
  private skipping = false;
  readonly dropped = { gopTail: 0, bufferFull: 0 };
  droppedBytes = 0;

  constructor(private readonly ceilingBytes: number) {}

  get waitingForKeyframe(): boolean {
    return this.skipping;
  }

  decide(kind: 'video' | 'audio' | 'data', key: boolean, size: number, bufferedAmount: number): GateDecision {
    if (kind !== 'video') {
      if (bufferedAmount + size > this.ceilingBytes && bufferedAmount > 0) {
        this.dropped.bufferFull++;
        this.droppedBytes += size;
        return 'drop-buffer-full';
      }
      return 'send';
    }
    if (this.skipping) {
      if (key && bufferedAmount <= this.ceilingBytes / 2) {
        this.skipping = false;
        return 'send';
      }
      this.dropped.gopTail++;
      this.droppedBytes += size;
      return 'drop-gop-tail';
    }
    // One oversize keyframe on an empty socket still goes: the ceiling bounds the backlog, not a frame.
    if (bufferedAmount > 0 && bufferedAmount + size > this.ceilingBytes) {
      this.skipping = true;
      this.dropped.gopTail++;
      this.droppedBytes += size;
      return 'drop-gop-tail';
    }
    return 'send';
  }

  /** A new connection starts clean (the consumer restarts at a keyframe). */
  reset(): void {
    this.skipping = false;
  }
}

/**
 * Once-per-interval gate for repeated failures: `hit(now)` returns the count to log
 * ("refused ×37 in 60s") when the interval has passed, else null. Pure: the caller passes the clock.
 */
export class RepeatGate {
  private count = 0;
  private last = -Infinity;
  constructor(private readonly intervalMs = 60_000) {}
  hit(now: number): number | null {
    this.count++;
    if (now - this.last < this.intervalMs) return null;
    this.last = now;
    const n = this.count;
    this.count = 0;
    return n;
  }
}

/** The slice of a pino logger egress uses (pino's Logger satisfies it). */
export interface EgressLog {
  debug(obj: Record<string, unknown>, msg: string): void;
  info(obj: Record<string, unknown>, msg: string): void;
  warn(obj: Record<string, unknown>, msg: string): void;
  error(obj: Record<string, unknown>, msg: string): void;
}

export const silentLog: EgressLog = { debug() {}, info() {}, warn() {}, error() {} };
