// Remote-control command JSON, pure (no I/O). The same commands arrive over the upstream Moth meb
// (REXTXCMD texts), the local /pang/ws/meb and /pang/ws/ctl.
//
// Request: one text message, optionally prefixed with "REXTXCMD", holding one JSON object (≤ 4 kB):
//   {"req_id":"a1","seq":17,"client":"op-7","target":"ptz/front","action":"move","pan":0.5,"tilt":0,"zoom":0,"lease_ms":500}
//   req_id    string 1..64, echoed in the reply
//   seq       integer ≥ 0, increasing per (session, client); a seq ≤ the last one seen is stale/duplicate:
//             not executed, answered with REXTXERR CONTROL_STALE_SEQ. A client that restarts uses a new
//             `client` id (state per client is forgotten after 60 s idle; at most 256 clients per session).
//   client    optional string 1..64 naming the operator (default "")
//   target    "ptz/<camera>" or "motor/<motor>" (ids: [A-Za-z0-9_-]{1,64}); absent for "list"
//   action    move      ptz: pan, tilt, zoom in [-1,1] (missing = 0);  motor: left, right in [-1,1]
//             stop
//             goto_preset  preset: "<id>"
//             set_preset   preset: "<id>", name?: string ≤ 64
//             status | presets | list
//   lease_ms  optional dead-man lease for a move, 50..maxLeaseMs (default from config)
//   ts        the sender's clock when it sent the command (ms since the epoch). Required for move and
//             goto_preset over pang unless control.requireCommandTime is false. Clocks need not agree:
//             per (session, client) the receiver learns the offset from the freshest commands, and a
//             command older than its ttl is dropped (REXTXERR CONTROL_STALE_COMMAND), never executed.
//   ttl_ms    optional time-to-live, 50..10000 (default control.commandTtlMs, 1000)
// Replies (text), always carrying req_id and seq when they could be read:
//   REXTXACK{"req_id":"a1","seq":17,"ok":true,"result":{…}}
//   REXTXERR{"req_id":"a1","seq":17,"ok":false,"error":{"code":"CONTROL_BUSY","message":"…"}}

import { z } from 'zod';
import { EdgeError } from '../engine/api.js';

export const CMD_PREFIX = 'REXTXCMD';
export const ACK_PREFIX = 'REXTXACK';
export const ERR_PREFIX = 'REXTXERR';
export const MAX_COMMAND_BYTES = 4096;

const id = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/);
const unit = z.number().finite().min(-1).max(1);

const commandSchema = z
  .object({
    req_id: z.string().min(1).max(64),
    seq: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
    client: z.string().min(1).max(64).optional(),
    target: z.string().regex(/^(ptz|motor)\/[A-Za-z0-9_-]{1,64}$/).optional(),
    action: z.enum(['move', 'stop', 'goto_preset', 'set_preset', 'status', 'presets', 'list']),
    pan: unit.optional(),
    tilt: unit.optional(),
    zoom: unit.optional(),
    left: unit.optional(),
    right: unit.optional(),
    preset: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/).optional(),
    name: z.string().regex(/^[^<>&"'\u0000-\u001f]{1,64}$/).optional(),
    lease_ms: z.number().int().min(50).max(60_000).optional(),
    ts: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
    ttl_ms: z.number().int().min(50).max(10_000).optional(),
  })
  .strip();

export type ControlCommand = z.infer<typeof commandSchema> & {
  kind: 'ptz' | 'motor' | null;
  device: string | null;
};

/** Parse one command text. Throws EdgeError CONTROL_BAD_COMMAND (with req_id/seq in context when readable). */
export function parseCommand(text: string): ControlCommand {
  if (typeof text !== 'string') throw new EdgeError('CONTROL_BAD_COMMAND', 'command must be text');
  if (text.length > MAX_COMMAND_BYTES) throw new EdgeError('CONTROL_BAD_COMMAND', `command longer than ${MAX_COMMAND_BYTES} bytes`);
  const body = text.startsWith(CMD_PREFIX) ? text.slice(CMD_PREFIX.length) : text;
  let raw: unknown;
  try {
    raw = JSON.parse(body);
  } catch {
    throw new EdgeError('CONTROL_BAD_COMMAND', 'command is not JSON');
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new EdgeError('CONTROL_BAD_COMMAND', 'command must be a JSON object');
  const ctx = readIds(raw);
  const r = commandSchema.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0];
    const where = issue?.path.join('.') || 'command';
    throw new EdgeError('CONTROL_BAD_COMMAND', `${where}: ${(issue?.message ?? 'invalid').slice(0, 120)}`, ctx);
  }
  const c = r.data;
  const [kind, device] = c.target ? (c.target.split('/', 2) as ['ptz' | 'motor', string]) : [null, null];
  if (c.action !== 'list' && !kind) throw new EdgeError('CONTROL_BAD_COMMAND', `target is required for ${c.action}`, ctx);
  if ((c.action === 'goto_preset' || c.action === 'set_preset') && !c.preset) {
    throw new EdgeError('CONTROL_BAD_COMMAND', `preset is required for ${c.action}`, ctx);
  }
  if (c.action === 'move' && kind === 'motor' && (c.pan !== undefined || c.tilt !== undefined || c.zoom !== undefined)) {
    throw new EdgeError('CONTROL_BAD_COMMAND', 'a motor move takes left/right, not pan/tilt/zoom', ctx);
  }
  if (c.action === 'move' && kind === 'ptz' && (c.left !== undefined || c.right !== undefined)) {
    throw new EdgeError('CONTROL_BAD_COMMAND', 'a ptz move takes pan/tilt/zoom, not left/right', ctx);
  }
  if ((c.action === 'goto_preset' || c.action === 'set_preset' || c.action === 'presets') && kind === 'motor') {
    throw new EdgeError('CONTROL_BAD_COMMAND', `${c.action} is for ptz targets`, ctx);
  }
  return { ...c, kind, device };
}

/** req_id/seq of a command that failed validation, when they are readable, for the error reply. */
export function readIds(raw: unknown): { req_id?: string; seq?: number } {
  const out: { req_id?: string; seq?: number } = {};
  if (typeof raw === 'object' && raw !== null) {
    const r = raw as Record<string, unknown>;
    if (typeof r['req_id'] === 'string' && r['req_id'].length <= 64) out.req_id = r['req_id'];
    if (typeof r['seq'] === 'number' && Number.isSafeInteger(r['seq'])) out.seq = r['seq'];
  }
  return out;
}

export function formatAck(req_id: string | undefined, seq: number | undefined, result: unknown): string {
  return ACK_PREFIX + JSON.stringify({ req_id: req_id ?? null, seq: seq ?? null, ok: true, result: result ?? null });
}

export function formatErr(req_id: string | undefined, seq: number | undefined, code: string, message: string): string {
  return ERR_PREFIX + JSON.stringify({ req_id: req_id ?? null, seq: seq ?? null, ok: false, error: { code, message: message.slice(0, 300) } });
}

/** Reply parsing, for clients and tests. Returns undefined for texts that are not replies. */
export function parseReply(text: string): { ok: boolean; req_id: string | null; seq: number | null; result?: unknown; error?: { code: string; message: string } } | undefined {
  const ok = text.startsWith(ACK_PREFIX);
  if (!ok && !text.startsWith(ERR_PREFIX)) return undefined;
  try {
    const v = JSON.parse(text.slice(ACK_PREFIX.length)) as Record<string, unknown>;
    return {
      ok,
      req_id: typeof v['req_id'] === 'string' ? v['req_id'] : null,
      seq: typeof v['seq'] === 'number' ? v['seq'] : null,
      result: v['result'],
      error: v['error'] as { code: string; message: string } | undefined,
    };
  } catch {
    return undefined;
  }
}

/**
 * Per-client sequence filter. Bounded: at most maxClients entries (least recently used dropped) and
 * entries idle for longer than idleMs are forgotten (a restarted operator console starts over).
 */
export class SeqFilter {
  private readonly last = new Map<string, { seq: number; at: number }>();
  constructor(
    private readonly maxClients = 256,
    private readonly idleMs = 60_000,
  ) {}

  /** 'ok' and remember, or 'stale' (seq < last) / 'duplicate' (seq == last). */
  check(client: string, seq: number, now = Date.now()): 'ok' | 'stale' | 'duplicate' {
    const e = this.last.get(client);
    if (e && now - e.at <= this.idleMs) {
      if (seq === e.seq) return 'duplicate';
      if (seq < e.seq) return 'stale';
    }
    this.last.delete(client);
    this.last.set(client, { seq, at: now });
    if (this.last.size > this.maxClients) this.last.delete(this.last.keys().next().value!);
    return 'ok';
  }

  get size(): number {
    return this.last.size;
  }
}

/** Actions that can move a device: only these are dropped when stale (a Stop is never stale). */
export function isMotion(action: string): boolean {
  return action === 'move' || action === 'goto_preset';
}

export interface FreshnessVerdict {
  fresh: boolean;
  /** Estimated age at arrival in ms (0 for the freshest command seen). */
  ageMs: number;
}

/**
 * How old a command is, from the sender's send time, without trusting either clock. Per sender the
 * filter keeps the smallest (arrival - sent) of recent fresh commands: that is the clock offset plus
 * the fastest path delay, so `sample - baseline` is how much longer this command took than the
 * fastest one — the time it sat in a frozen link, a Moth relay or a kernel buffer. Stale samples do
 * not teach the baseline (a burst released by a stalled link must not look fresh to itself). A
 * sender whose clock stepped back makes every command look old the same amount: after `rebaseAfter`
 * consecutive such commands spread over `rebaseSpanMs` of arrivals with ages within one ttl of each
 * other, the baseline is rebuilt (counted). A burst after a stall never qualifies: it arrives at once
 * with ages spread over the stall.
 */
export class CommandClock {
  private readonly fresh: number[] = [];
  private staleRun: Array<{ at: number; sample: number }> = [];
  rebases = 0;

  constructor(
    private readonly o: { window?: number; rebaseAfter?: number; rebaseSpanMs?: number } = {},
  ) {}

  private baseline(): number | undefined {
    let m: number | undefined;
    for (const x of this.fresh) if (m === undefined || x < m) m = x;
    return m;
  }

  check(sentAt: number, ttlMs: number, now = Date.now()): FreshnessVerdict {
    const sample = now - sentAt;
    const base = this.baseline();
    const age = base === undefined ? 0 : Math.max(0, sample - base);
    if (age <= ttlMs) {
      this.learn(sample);
      this.staleRun = [];
      return { fresh: true, ageMs: age };
    }
    this.staleRun.push({ at: now, sample });
    // Bounded by time (a little more than the span asked for) and by count (50 Hz × 4 s fits).
    const span = this.o.rebaseSpanMs ?? 3000;
    while (this.staleRun.length > 512 || (this.staleRun.length > 1 && now - this.staleRun[1]!.at >= span)) this.staleRun.shift();
    const run = this.staleRun;
    if (run.length >= (this.o.rebaseAfter ?? 8) && now - run[0]!.at >= (this.o.rebaseSpanMs ?? 3000)) {
      let lo = Infinity;
      let hi = -Infinity;
      for (const r of run) {
        lo = Math.min(lo, r.sample);
        hi = Math.max(hi, r.sample);
      }
      if (hi - lo <= ttlMs) {
        // The sender's clock stepped (or its path got slower for good): start over from here.
        this.fresh.length = 0;
        this.learn(sample);
        this.staleRun = [];
        this.rebases++;
      }
    }
    return { fresh: false, ageMs: age };
  }

  private learn(sample: number): void {
    this.fresh.push(sample);
    if (this.fresh.length > (this.o.window ?? 64)) this.fresh.shift();
  }
}

/** CommandClocks per sender, bounded like SeqFilter (LRU, idle ones forgotten). */
export class FreshnessFilter {
  private readonly clocks = new Map<string, { clock: CommandClock; at: number }>();
  constructor(
    private readonly maxSenders = 256,
    private readonly idleMs = 60_000,
  ) {}

  check(sender: string, sentAt: number, ttlMs: number, now = Date.now()): FreshnessVerdict {
    let e = this.clocks.get(sender);
    if (!e || now - e.at > this.idleMs) e = { clock: new CommandClock(), at: now };
    this.clocks.delete(sender);
    e.at = now;
    this.clocks.set(sender, e);
    if (this.clocks.size > this.maxSenders) this.clocks.delete(this.clocks.keys().next().value!);
    return e.clock.check(sentAt, ttlMs, now);
  }

  get rebases(): number {
    let n = 0;
    for (const e of this.clocks.values()) n += e.clock.rebases;
    return n;
  }

  get size(): number {
    return this.clocks.size;
  }
}
