// pang ctl JSON (pang-protocol.md): {"type","data","name","path","req_id","at_created"}, where
// data is a string holding JSON. Pure parsing and reply building; the server does the work.

export const CTL_TYPES = [
  'ping',
  'info_channel',
  'info_source',
  'info_track',
  'set_channel',
  'close_channel',
  'show_session',
  'info_session',
  'close_session',
] as const;
export type CtlType = (typeof CTL_TYPES)[number];

export interface CtlRequest {
  type: string;
  data: Record<string, unknown>;
  name?: string;
  path?: string;
  req_id?: string;
}

export type CtlParse =
  | { ok: true; req: CtlRequest; known: boolean }
  | { ok: false; reason: string };

const MAX_CTL_BYTES = 64 * 1024;

export function parseCtl(text: string): CtlParse {
  if (text.length > MAX_CTL_BYTES) return { ok: false, reason: `request over ${MAX_CTL_BYTES} bytes` };
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch {
    return { ok: false, reason: 'request is not JSON' };
  }
  if (j === null || typeof j !== 'object' || Array.isArray(j)) return { ok: false, reason: 'request must be a JSON object' };
  const o = j as Record<string, unknown>;
  if (typeof o.type !== 'string' || !o.type) return { ok: false, reason: 'request needs a string "type"' };
  let data: Record<string, unknown> = {};
  if (typeof o.data === 'string' && o.data.trim() !== '') {
    // Moth double-encodes: data is a string holding JSON.
    try {
      const d = JSON.parse(o.data);
      if (d === null || typeof d !== 'object' || Array.isArray(d)) return { ok: false, reason: '"data" must hold a JSON object' };
      data = d as Record<string, unknown>;
    } catch {
      return { ok: false, reason: '"data" is not a JSON string' };
    }
  } else if (o.data && typeof o.data === 'object' && !Array.isArray(o.data)) {
    data = o.data as Record<string, unknown>;
  } else if (o.data !== undefined && o.data !== null && o.data !== '') {
    return { ok: false, reason: '"data" must be a string holding JSON' };
  }
  const str = (v: unknown) => (typeof v === 'string' ? v.slice(0, 256) : undefined);
  const req: CtlRequest = { type: o.type.slice(0, 64), data, name: str(o.name), path: str(o.path), req_id: str(o.req_id) };
  return { ok: true, req, known: (CTL_TYPES as readonly string[]).includes(req.type) };
}

export function ctlReply(req: Pick<CtlRequest, 'name' | 'path' | 'req_id'>, type: string, data: unknown): string {
  return JSON.stringify({
    type,
    data: JSON.stringify(data),
    name: req.name ?? '',
    path: req.path ?? '',
    req_id: req.req_id ?? '',
    at_created: new Date().toISOString(),
  });
}

export function ctlError(reason: string, req?: Pick<CtlRequest, 'req_id'>): string {
  return JSON.stringify(req?.req_id ? { type: 'error', data: reason, req_id: req.req_id } : { type: 'error', data: reason });
}

/**
 * Extension request type (issue 8, not a Moth type): ask for a recorded time range to be sent
 * upstream as backfill. data: {"track":"channel/source/track","from":<ms|ISO>,"to":<ms|ISO>};
 * reply type `backfill_range` with {queued, track, from, to}, or `error` with the reason; req_id
 * echoed. It is not in CTL_TYPES: the server hands it to its command hook like any unknown type,
 * where runtime/uplink/ctl-commands.ts answers it.
 */
export const CTL_BACKFILL_RANGE = 'backfill_range';
