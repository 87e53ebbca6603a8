// The logger recordings/ needs: a pino-compatible subset, so the runtime passes its pino child
// and tests pass a silent or collecting one. Repeated failures go through ThrottledLog.

export interface RecLog {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export const silentLog: RecLog = {
  debug() {},
  info() {},
  warn() {},
  error() {},
};

/**
 * Log a repeated failure at most once per interval, with the count since the last line.
 * Same contract as runtime/log.ts ThrottledLog (which recordings/ may not import): once the
 * lead puts that class on the engine's public surface, this one is deleted and the import changes.
 */
export class ThrottledLog {
  private readonly seen = new Map<string, { last: number; suppressed: number }>();
  constructor(
    private readonly log: RecLog,
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
    this.log[level](ctx, suppressed > 0 ? `${msg} (×${suppressed + 1} in ${Math.round(this.intervalMs / 1000)}s)` : msg);
    return true;
  }
}
