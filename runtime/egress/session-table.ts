// The session bookkeeping WHEP (runtime/whep/server.ts) and WHIP ingest (whip-ingest.ts) share:
// a bounded id → session map, admission (closed / too many), typed refusals counted by code, and
// sessions ended counted by reason. No I/O: each server closes its own peer and consumer.
import { EdgeError } from '../engine/api.js';

export interface SessionCounters {
  created: number;
  ended: number;
  /** Ended sessions by reason ('deleted', 'peer failed' — ICE consent lost —, 'ICE connect timeout', …). */
  endedBy: Record<string, number>;
  /** Refused offers by error code. */
  rejected: Record<string, number>;
}

/** An EdgeError with the HTTP status the route answers. */
export type StatusError = EdgeError & { status: number };

export class SessionTable<S> {
  private readonly m = new Map<string, S>();
  private c: SessionCounters = { created: 0, ended: 0, endedBy: {}, rejected: {} };
  private closed = false;

  /** @param max sessions at once (each holds a peer, sockets and an engine consumer) */
  constructor(
    private readonly prefix: string,
    private readonly max: number,
  ) {}

  /** Count and throw a typed refusal (`status` for the HTTP answer). */
  reject(code: string, status: number, message: string): never {
    this.c.rejected[code] = (this.c.rejected[code] ?? 0) + 1;
    throw Object.assign(new EdgeError(code, message), { status }) as StatusError;
  }

  /** Throws 503 when closed or full. */
  admit(what: string): void {
    if (this.closed) this.reject(`${this.prefix}_CLOSED`, 503, 'shutting down');
    if (this.m.size >= this.max) this.reject(`${this.prefix}_TOO_MANY_SESSIONS`, 503, `at most ${this.max} ${what}`);
  }

  add(id: string, s: S): void {
    this.m.set(id, s);
    this.c.created++;
  }

  get(id: string): S | undefined {
    return this.m.get(id);
  }

  has(id: string): boolean {
    return this.m.has(id);
  }

  /** Remove a session and count why it ended; undefined when it was already gone (idempotent end). */
  take(id: string, reason: string): S | undefined {
    const s = this.m.get(id);
    if (s === undefined) return undefined;
    this.m.delete(id);
    this.c.ended++;
    this.c.endedBy[reason] = (this.c.endedBy[reason] ?? 0) + 1;
    return s;
  }

  values(): S[] {
    return [...this.m.values()];
  }

  ids(): string[] {
    return [...this.m.keys()];
  }

  get size(): number {
    return this.m.size;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Refuse new sessions from now on; returns the ids still open (the owner ends each). */
  close(): string[] {
    this.closed = true;
    return this.ids();
  }

  counters(): SessionCounters {
    return { created: this.c.created, ended: this.c.ended, endedBy: { ...this.c.endedBy }, rejected: { ...this.c.rejected } };
  }
}
