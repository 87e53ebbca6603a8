// Remote control over pang. The local pang server hands us every text on /pang/ws/ctl that is not a
// pang ctl request, and every meb text starting with REXTXCMD; the upstream meb client does the same
// for the Moth server's meb. Command JSON and replies are defined in command.ts.
//
// Over /pang/ws/ctl the command is a ctl-shaped object with type "control": either flat
//   {"type":"control","req_id":"a1","seq":3,"target":"ptz/front","action":"move","pan":0.2}
// or with the command double-encoded in data, as Moth ctl requests are:
//   {"type":"control","req_id":"a1","data":"{\"seq\":3,\"target\":\"ptz/front\",\"action\":\"stop\"}"}
// Each pang session is its own control session: when its link drops, the router stops whatever it was
// moving at once (onSessionClosed). Motion commands carry their send time `ts`: one older than its
// ttl (per sender clock, see CommandClock) is dropped and counted, never executed.

import { EdgeError } from '../engine/api.js';
import { ACK_PREFIX, CMD_PREFIX, ERR_PREFIX, MAX_COMMAND_BYTES, FreshnessFilter, SeqFilter, formatAck, formatErr, isMotion, parseCommand, readIds } from './command.js';
import type { CommandSource } from './router.js';
import type { ControlCommand } from './command.js';

/** What the adapter needs from the control service. */
export interface CommandExecutor {
  execute(c: ControlCommand, src: CommandSource): Promise<unknown>;
  readonly router: { releaseSession(session: string): void; controlsMotion(session: string): boolean };
}

export interface PangControlOptions {
  maxCommandBytes?: number;
  /** Default time-to-live of a motion command (ms); `ttl_ms` in a command overrides it. */
  commandTtlMs?: number;
  /** Refuse motion commands without `ts` (CONTROL_NO_TIMESTAMP). Default true. */
  requireCommandTime?: boolean;
}

/** Sessions with sequence state at most; beyond it the oldest is forgotten (its next command passes). */
const MAX_SESSIONS = 1024;

export class PangControlAdapter {
  private readonly seq = new Map<string, SeqFilter>();
  private readonly fresh = new Map<string, FreshnessFilter>();
  private readonly maxBytes: number;
  private readonly ttlMs: number;
  private readonly requireTime: boolean;
  private closed = false;
  private readonly c = {
    texts: 0,
    commands: 0,
    acks: 0,
    errors: 0,
    badCommands: 0,
    stale: 0,
    duplicates: 0,
    /** Motion commands older than their ttl: dropped, never executed. */
    staleDropped: 0,
    /** Motion commands without `ts` refused (requireCommandTime). */
    untimedRefused: 0,
    /** Devices stopped because their controlling link went silent (no pong, no message). */
    silenceStops: 0,
    sessionsClosed: 0,
    ignored: 0,
  };

  constructor(
    private readonly exec: CommandExecutor,
    opts: PangControlOptions = {},
  ) {
    this.maxBytes = Math.min(opts.maxCommandBytes ?? MAX_COMMAND_BYTES, MAX_COMMAND_BYTES);
    this.ttlMs = opts.commandTtlMs ?? 1000;
    this.requireTime = opts.requireCommandTime ?? true;
  }

  /** One text from a pang session; returns the REXTXACK/REXTXERR reply, or undefined for non-commands. */
  async onText(sessionId: string, text: string): Promise<string | undefined> {
    this.c.texts++;
    if (this.closed) return formatErr(undefined, undefined, 'CONTROL_CLOSED', 'control is shutting down');
    // Replies and other extended texts flowing on a meb are not commands.
    if (text.startsWith(ACK_PREFIX) || text.startsWith(ERR_PREFIX) || (text.startsWith('REXT') && !text.startsWith(CMD_PREFIX))) {
      this.c.ignored++;
      return undefined;
    }
    let ids: { req_id?: string; seq?: number } = {};
    let cmd: ControlCommand;
    try {
      if (text.length > this.maxBytes) throw new EdgeError('CONTROL_BAD_COMMAND', `command longer than ${this.maxBytes} bytes`);
      const body = unwrapCtl(text);
      try {
        ids = readIds(JSON.parse(body.startsWith(CMD_PREFIX) ? body.slice(CMD_PREFIX.length) : body));
      } catch {
        // parseCommand reports it
      }
      cmd = parseCommand(body);
    } catch (e) {
      this.c.badCommands++;
      this.c.errors++;
      const err = e instanceof EdgeError ? e : new EdgeError('CONTROL_BAD_COMMAND', String(e));
      return formatErr(ids.req_id, ids.seq, err.code, err.detail);
    }
    this.c.commands++;
    const verdict = this.filter(sessionId).check(cmd.client ?? '', cmd.seq);
    if (verdict !== 'ok') {
      if (verdict === 'stale') this.c.stale++;
      else this.c.duplicates++;
      this.c.errors++;
      return formatErr(cmd.req_id, cmd.seq, verdict === 'stale' ? 'CONTROL_STALE_SEQ' : 'CONTROL_DUPLICATE_SEQ', `seq ${cmd.seq} already superseded; ignored`);
    }
    if (isMotion(cmd.action)) {
      if (cmd.ts === undefined) {
        if (this.requireTime) {
          this.c.untimedRefused++;
          this.c.errors++;
          return formatErr(cmd.req_id, cmd.seq, 'CONTROL_NO_TIMESTAMP', `${cmd.action} needs "ts" (the sender's clock in ms) so a late command is never executed`);
        }
      } else {
        const ttl = cmd.ttl_ms ?? this.ttlMs;
        const f = this.freshness(sessionId).check(cmd.client ?? '', cmd.ts, ttl);
        if (!f.fresh) {
          this.c.staleDropped++;
          this.c.errors++;
          return formatErr(cmd.req_id, cmd.seq, 'CONTROL_STALE_COMMAND', `arrived ${f.ageMs} ms late (ttl ${ttl} ms): dropped, not executed`);
        }
      }
    }
    try {
      const result = await this.exec.execute(cmd, { kind: 'remote', session: sessionId });
      this.c.acks++;
      return formatAck(cmd.req_id, cmd.seq, result);
    } catch (e) {
      this.c.errors++;
      if (e instanceof EdgeError) return formatErr(cmd.req_id, cmd.seq, e.code, e.detail);
      return formatErr(cmd.req_id, cmd.seq, 'CONTROL_FAILED', String((e as Error)?.message ?? e));
    }
  }

  /** The session's link went silent while it moved something: stop its devices; the session stays. */
  onSessionSilent(sessionId: string): void {
    this.c.silenceStops++;
    this.exec.router.releaseSession(sessionId);
  }

  /** The session's link dropped: whatever it was moving stops now. */
  onSessionClosed(sessionId: string): void {
    this.c.sessionsClosed++;
    this.seq.delete(sessionId);
    this.fresh.delete(sessionId);
    this.exec.router.releaseSession(sessionId);
  }

  private filter(session: string): SeqFilter {
    return perSession(this.seq, session, () => new SeqFilter());
  }

  private freshness(session: string): FreshnessFilter {
    return perSession(this.fresh, session, () => new FreshnessFilter());
  }

  /** True while the session moves a device (its silence must stop it: PangServer pings it). */
  controlsMotion(sessionId: string): boolean {
    return !this.closed && this.exec.router.controlsMotion(sessionId);
  }

  stats(): Record<string, number> {
    let clockRebases = 0;
    for (const f of this.fresh.values()) clockRebases += f.rebases;
    return { ...this.c, clockRebases, sessions: this.seq.size };
  }

  close(): void {
    this.closed = true;
    this.seq.clear();
    this.fresh.clear();
  }
}

/** A session's state in a map bounded by MAX_SESSIONS (the oldest session is forgotten first). */
function perSession<T>(m: Map<string, T>, session: string, make: () => T): T {
  let f = m.get(session);
  if (!f) {
    f = make();
    m.set(session, f);
    if (m.size > MAX_SESSIONS) m.delete(m.keys().next().value!);
  }
  return f;
}

/** A ctl envelope {"type":"control","data":"<json>"} → the command JSON with req_id merged; else as is. */
function unwrapCtl(text: string): string {
  if (!text.startsWith('{') || !text.includes('"data"')) return text;
  let o: unknown;
  try {
    o = JSON.parse(text);
  } catch {
    return text;
  }
  if (typeof o !== 'object' || o === null || Array.isArray(o)) return text;
  const env = o as Record<string, unknown>;
  if (env['type'] !== 'control' || env['data'] === undefined) return text;
  let inner: unknown = env['data'];
  if (typeof inner === 'string') {
    try {
      inner = JSON.parse(inner);
    } catch {
      throw new EdgeError('CONTROL_BAD_COMMAND', '"data" is not a JSON string');
    }
  }
  if (typeof inner !== 'object' || inner === null || Array.isArray(inner)) throw new EdgeError('CONTROL_BAD_COMMAND', '"data" must hold a JSON object');
  const merged: Record<string, unknown> = { ...(inner as Record<string, unknown>) };
  if (merged['req_id'] === undefined && env['req_id'] !== undefined) merged['req_id'] = env['req_id'];
  return JSON.stringify(merged);
}
