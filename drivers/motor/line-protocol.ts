// Line protocol for custom robot firmware, pure (no I/O).
//
// Host → firmware, one ASCII line each, '\n'-terminated:
//   drive:  the configured template, default "M {left} {right}", speeds scaled to integers
//           -scale..scale (default 1000), e.g. "M 250 -250"
//   stop:   the drive template with 0 0 (firmware must treat it like any drive command)
//   status: the configured status line, default "?"
// Firmware → host:
//   "OK" [anything]          ack of the last command
//   "ERR <message>"          refusal of the last command
//   "STATUS k=v k=v …"       e.g. "STATUS V=12.4 I=1.2 F=none" (V volts, I amps, F comma-separated faults)
// The firmware is expected to stop its motors by itself when no command arrived for its watchdog
// period; the driver re-sends the current drive line well within that period while moving.

import { EdgeError } from '../../runtime/engine/api.js';

export const MAX_LINE_BYTES = 256;

export type LineReply =
  | { type: 'ack' }
  | { type: 'err'; message: string }
  | { type: 'status'; voltage?: number; current?: number; faults: string[]; fields: Record<string, string> }
  | { type: 'unknown'; line: string };

const TEMPLATE_RE = /^[A-Za-z0-9 ,;:_#$!=+*-]*\{left\}[A-Za-z0-9 ,;:_#$!=+*-]*\{right\}[A-Za-z0-9 ,;:_#$!=+*-]*$/;

/** Validate a template at config time: printable, with exactly {left} then {right}. */
export function checkTemplate(t: string): void {
  if (t.length > 64 || !TEMPLATE_RE.test(t)) {
    throw new EdgeError('MOTOR_BAD_TEMPLATE', `drive template must contain {left} then {right}, printable, <= 64 chars`, { template: t });
  }
}

export function formatDrive(template: string, left: number, right: number, scale: number): string {
  const q = (v: number) => String(Math.round((Number.isFinite(v) ? Math.max(-1, Math.min(1, v)) : 0) * scale));
  return template.replace('{left}', q(left)).replace('{right}', q(right)) + '\n';
}

/** Parse one reply line (without the newline). Never throws for any string. */
export function parseReply(raw: string): LineReply {
  const line = raw.length > MAX_LINE_BYTES ? raw.slice(0, MAX_LINE_BYTES) : raw;
  const t = line.trim();
  if (/^OK\b/i.test(t)) return { type: 'ack' };
  const err = /^ERR\b\s*(.*)$/i.exec(t);
  if (err) return { type: 'err', message: err[1]!.slice(0, 120) };
  if (/^STATUS\b/i.test(t)) {
    const fields: Record<string, string> = {};
    for (const part of t.slice(6).trim().split(/\s+/)) {
      const i = part.indexOf('=');
      if (i > 0) fields[part.slice(0, i).toUpperCase()] = part.slice(i + 1);
      if (Object.keys(fields).length >= 16) break;
    }
    const num = (s: string | undefined) => (s !== undefined && /^-?\d+(\.\d+)?$/.test(s) ? Number(s) : undefined);
    const f = fields['F'];
    const faults = f && f !== 'none' && f !== '0' ? f.split(',').filter(Boolean).slice(0, 16) : [];
    return { type: 'status', voltage: num(fields['V']), current: num(fields['I']), faults, fields };
  }
  return { type: 'unknown', line: t.slice(0, 120) };
}
