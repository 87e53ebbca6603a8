// The logger recordings/ needs: a pino-compatible subset, so the runtime passes its pino child
// and tests pass a silent or collecting one. Repeated failures go through Throttle.

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

/** Log a repeated failure at most once per interval, with the count since the last line. */
export class Throttle {
  private last = new Map<string, { at: number; count: number }>();
  constructor(private readonly log: RecLog, private readonly intervalMs = 60_000) {}

  warn(key: string, obj: object, msg: string, now = Date.now()): void {
    const e = this.last.get(key);
    if (e && now - e.at < this.intervalMs) {
      e.count++;
      return;
    }
    const suppressed = e ? e.count : 0;
    this.last.set(key, { at: now, count: 0 });
    if (this.last.size > 1000) this.last.delete(this.last.keys().next().value as string);
    this.log.warn({ ...obj, suppressed }, suppressed ? `${msg} (×${suppressed + 1} since last report)` : msg);
  }
}
