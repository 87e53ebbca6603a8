// Throttled logging and URL redaction: part of the engine's public surface (re-exported by
// api.ts) because drivers/ and recordings/ log repeated failures too and may import only api.ts.
// Pure: no logger implementation here; pino's Logger satisfies LevelLog.

/** The logger subset a component needs (pino's Logger fits; tests pass a silent or collecting one). */
export interface LevelLog {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

const SECRET_PARAMS = /([?&](?:key|token|password|pass|secret|auth|access_token)=)[^&#\s]*/gi;

/** Remove userinfo and secret query values from a URL (or a text holding URLs). */
export function redactUrl(s: string): string {
  return s.replace(/(\b[a-z][a-z0-9+.-]*:\/\/)[^/@\s]*@/gi, '$1***@').replace(SECRET_PARAMS, '$1***');
}

/**
 * Log the first occurrence of each key at once, then at most once per interval with the count
 * of what was suppressed in between.
 */
export class ThrottledLog {
  private readonly seen = new Map<string, { last: number; suppressed: number }>();
  constructor(
    private readonly log: LevelLog,
    private readonly intervalMs = 60_000,
    /** Bound on distinct keys remembered; the oldest is forgotten first. */
    private readonly maxKeys = 256,
  ) {}

  warn(key: string, msg: string, ctx: Record<string, unknown> = {}, now = Date.now()): boolean {
    return this.emit('warn', key, msg, ctx, now);
  }

  error(key: string, msg: string, ctx: Record<string, unknown> = {}, now = Date.now()): boolean {
    return this.emit('error', key, msg, ctx, now);
  }

  private emit(level: 'warn' | 'error', key: string, msg: string, ctx: Record<string, unknown>, now: number): boolean {
    const s = this.seen.get(key);
    if (s && now - s.last < this.intervalMs) {
      s.suppressed++;
      return false;
    }
    const suppressed = s?.suppressed ?? 0;
    if (!s && this.seen.size >= this.maxKeys) {
      const oldest = this.seen.keys().next().value;
      if (oldest !== undefined) this.seen.delete(oldest);
    }
    this.seen.delete(key);
    this.seen.set(key, { last: now, suppressed: 0 });
    const text = suppressed > 0 ? `${msg} (×${suppressed + 1} in ${Math.round(this.intervalMs / 1000)}s)` : msg;
    this.log[level](ctx, redactUrl(text));
    return true;
  }
}
