// RTSP/1.0 framing (RFC 2326), pure: requests out, responses and $-interleaved binary frames in,
// both on one TCP stream. Every size read from the wire is bounded before anything is buffered:
// a header block over MAX_HEADER_BYTES or a Content-Length over MAX_BODY_BYTES ends the stream
// with an RtspError (RTSP_BAD_MESSAGE); an interleaved frame is at most 65535 bytes by its
// 16-bit length. No I/O here; the session shell feeds socket chunks to RtspReader.push.

import { EdgeError } from '../../../runtime/engine/api.js';

/** Status line + headers of one message: 16 KiB is several times any camera's (SDP is a body). */
export const MAX_HEADER_BYTES = 16 * 1024;
/** An SDP or a GET_PARAMETER reply; 64 KiB is far beyond any camera's, small enough to hold. */
export const MAX_BODY_BYTES = 64 * 1024;
/** Headers per message: a hostile peer cannot grow the header map past this. */
const MAX_HEADERS = 64;

const EMPTY = Buffer.alloc(0);

export class RtspError extends EdgeError {
  constructor(code: string, message: string, context: Record<string, unknown> = {}) {
    super(code, message, context);
    this.name = 'RtspError';
  }
}

export interface RtspResponse {
  type: 'response';
  status: number;
  reason: string;
  /** Lower-cased names; repeated headers (WWW-Authenticate) keep every value in order. */
  headers: Map<string, string[]>;
  body: Buffer;
}

/** A request the server sends us (some cameras send GET_PARAMETER/ANNOUNCE/REDIRECT). */
export interface RtspServerRequest {
  type: 'request';
  method: string;
  uri: string;
  headers: Map<string, string[]>;
  body: Buffer;
}

export interface InterleavedFrame {
  type: 'interleaved';
  channel: number;
  /** A view into the pushed chunk when it was whole in one chunk (no copy). */
  data: Buffer;
}

export type RtspMessage = RtspResponse | RtspServerRequest | InterleavedFrame;

export function header(h: Map<string, string[]>, name: string): string | undefined {
  return h.get(name.toLowerCase())?.[0];
}

/**
 * Streaming demultiplexer of one RTSP connection. push(chunk) returns every complete message in
 * order; a partial one waits for the next chunk. Throws RtspError on malformed input, after which
 * the connection must be dropped (there is no way to resynchronise an RTSP byte stream safely).
 */
export class RtspReader {
  private buf: Buffer = EMPTY;
  messages = 0;
  interleavedFrames = 0;
  interleavedBytes = 0;

  /**
   * `transient`: the chunk is a view into a buffer the caller reuses (a socket's onread buffer).
   * Interleaved frames returned are then views valid only until the caller's next read, and the
   * unconsumed tail is always copied.
   */
  push(chunk: Buffer, transient = false, onFrame?: (channel: number, buf: Buffer, start: number, end: number) => void): RtspMessage[] {
    const out: RtspMessage[] = [];
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    let off = 0;
    const b = this.buf;
    while (off < b.length) {
      if (b[off] === 0x24) {
        // '$' channel(1) length(2) payload
        if (b.length - off < 4) break;
        const len = b.readUInt16BE(off + 2);
        if (b.length - off < 4 + len) break;
        // with onFrame, a frame is handed over as a range (no view, no message object)
        if (onFrame) onFrame(b[off + 1]!, b, off + 4, off + 4 + len);
        else out.push({ type: 'interleaved', channel: b[off + 1]!, data: b.subarray(off + 4, off + 4 + len) });
        this.interleavedFrames++;
        this.interleavedBytes += len;
        off += 4 + len;
        continue;
      }
      // Some servers put CRLFs between messages (keepalive habits): skip them.
      if (b[off] === 0x0d || b[off] === 0x0a) {
        off++;
        continue;
      }
      const end = b.indexOf('\r\n\r\n', off, 'latin1');
      if (end < 0) {
        if (b.length - off > MAX_HEADER_BYTES) throw new RtspError('RTSP_BAD_MESSAGE', `header block longer than ${MAX_HEADER_BYTES} bytes`);
        // A message must start with a token: fail early on binary junk rather than buffering 16 KiB of it.
        if (!/^[A-Z_/0-9.-]*$/i.test(b.subarray(off, Math.min(b.length, off + 8)).toString('latin1'))) {
          throw new RtspError('RTSP_BAD_MESSAGE', 'neither an RTSP message nor an interleaved frame');
        }
        break;
      }
      if (end - off > MAX_HEADER_BYTES) throw new RtspError('RTSP_BAD_MESSAGE', `header block longer than ${MAX_HEADER_BYTES} bytes`);
      const head = parseHead(b.toString('latin1', off, end));
      const cl = header(head.headers, 'content-length');
      let bodyLen = 0;
      if (cl !== undefined) {
        if (!/^\d{1,9}$/.test(cl.trim())) throw new RtspError('RTSP_BAD_MESSAGE', 'bad Content-Length');
        bodyLen = Number(cl.trim());
        if (bodyLen > MAX_BODY_BYTES) throw new RtspError('RTSP_BAD_MESSAGE', `body of ${bodyLen} bytes exceeds ${MAX_BODY_BYTES}`);
      }
      const bodyStart = end + 4;
      if (b.length - bodyStart < bodyLen) break;
      const body = Buffer.from(b.subarray(bodyStart, bodyStart + bodyLen));
      out.push(head.kind === 'response'
        ? { type: 'response', status: head.status, reason: head.reason, headers: head.headers, body }
        : { type: 'request', method: head.method, uri: head.uri, headers: head.headers, body });
      this.messages++;
      off = bodyStart + bodyLen;
    }
    // Keep the unconsumed tail; copy it so the big chunk it came from can be freed.
    if (off >= b.length) this.buf = EMPTY;
    else if (off > 0 || (transient && b === chunk)) this.buf = Buffer.from(b.subarray(off));
    return out;
  }

  /** Bytes waiting for the rest of a message (bounded by MAX_HEADER_BYTES + MAX_BODY_BYTES or 65539). */
  get buffered(): number {
    return this.buf.length;
  }
}

type Head =
  | { kind: 'response'; status: number; reason: string; headers: Map<string, string[]> }
  | { kind: 'request'; method: string; uri: string; headers: Map<string, string[]> };

function parseHead(text: string): Head {
  const lines = text.split('\r\n');
  const first = lines[0] ?? '';
  const headers = new Map<string, string[]>();
  let count = 0;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.length === 0) continue;
    if ((line[0] === ' ' || line[0] === '\t') && count > 0) continue; // obsolete folding: ignored
    const c = line.indexOf(':');
    if (c <= 0) throw new RtspError('RTSP_BAD_MESSAGE', 'header line without a name');
    if (++count > MAX_HEADERS) throw new RtspError('RTSP_BAD_MESSAGE', `more than ${MAX_HEADERS} headers`);
    const name = line.slice(0, c).trim().toLowerCase();
    const value = line.slice(c + 1).trim();
    const list = headers.get(name);
    if (list) list.push(value);
    else headers.set(name, [value]);
  }
  const st = /^RTSP\/1\.[01] (\d{3})(?: (.*))?$/.exec(first);
  if (st) return { kind: 'response', status: Number(st[1]), reason: (st[2] ?? '').slice(0, 200), headers };
  const rq = /^([A-Z_]{1,32}) (\S{1,4096}) RTSP\/1\.[01]$/.exec(first);
  if (rq) return { kind: 'request', method: rq[1]!, uri: rq[2]!, headers };
  throw new RtspError('RTSP_BAD_MESSAGE', `bad start line: ${JSON.stringify(first.slice(0, 64))}`);
}

/** One request on the wire. Header values must not carry CR/LF (checked: they come from URLs and SDP). */
export function serializeRequest(method: string, uri: string, headers: Array<[string, string]>, body?: Buffer): Buffer {
  const lines = [`${method} ${uri} RTSP/1.0`];
  for (const [k, v] of headers) {
    if (/[\r\n]/.test(k) || /[\r\n]/.test(v)) throw new RtspError('RTSP_BAD_REQUEST', `header ${k.slice(0, 32)} carries a line break`);
    lines.push(`${k}: ${v}`);
  }
  if (/[\s]/.test(uri)) throw new RtspError('RTSP_BAD_REQUEST', 'request URI with whitespace');
  if (body && body.length > 0) lines.push(`Content-Length: ${body.length}`);
  const head = Buffer.from(lines.join('\r\n') + '\r\n\r\n', 'latin1');
  return body && body.length > 0 ? Buffer.concat([head, body]) : head;
}

/** A server response to a request the server sent us (we answer ANNOUNCE & co. politely). */
export function serializeResponse(status: number, reason: string, cseq: string | undefined): Buffer {
  const lines = [`RTSP/1.0 ${status} ${reason}`];
  if (cseq !== undefined && /^\d{1,10}$/.test(cseq)) lines.push(`CSeq: ${cseq}`);
  return Buffer.from(lines.join('\r\n') + '\r\n\r\n', 'latin1');
}

/** `$` + channel + length + payload: RTCP receiver reports over TCP. */
export function interleave(channel: number, payload: Buffer): Buffer {
  if (payload.length > 0xffff) throw new RtspError('RTSP_BAD_REQUEST', 'interleaved payload over 65535 bytes');
  const h = Buffer.alloc(4);
  h[0] = 0x24;
  h[1] = channel & 0xff;
  h.writeUInt16BE(payload.length, 2);
  return Buffer.concat([h, payload]);
}

export interface SessionHeader {
  id: string;
  /** Seconds; 60 when the server does not say (RFC 2326 §12.37). */
  timeoutS: number;
}

/** `Session: 12345678;timeout=60` */
export function parseSessionHeader(v: string): SessionHeader {
  const parts = v.split(';');
  const id = parts[0]!.trim();
  if (!/^[A-Za-z0-9$\-_.+]{1,256}$/.test(id)) throw new RtspError('RTSP_BAD_MESSAGE', 'bad Session id');
  let timeoutS = 60;
  for (const p of parts.slice(1)) {
    const m = /^\s*timeout\s*=\s*(\d{1,6})\s*$/i.exec(p);
    if (m) timeoutS = Math.max(1, Number(m[1]));
  }
  return { id, timeoutS };
}

export interface TransportHeader {
  protocol: 'tcp' | 'udp';
  interleaved?: [number, number];
  clientPort?: [number, number];
  serverPort?: [number, number];
  source?: string;
  ssrc?: number;
}

function pair(s: string, max: number): [number, number] | undefined {
  const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(s.trim());
  if (!m) return undefined;
  const a = Number(m[1]);
  const b = m[2] !== undefined ? Number(m[2]) : a + 1;
  if (a > max || b > max) return undefined;
  return [a, b];
}

/** The server's Transport reply: the first transport spec it chose. */
export function parseTransportHeader(v: string): TransportHeader {
  const spec = v.split(',')[0]!.trim();
  const parts = spec.split(';').map((p) => p.trim());
  const proto = parts[0]!.toUpperCase();
  if (!proto.startsWith('RTP/AVP')) throw new RtspError('RTSP_BAD_MESSAGE', `unsupported transport ${parts[0]!.slice(0, 32)}`);
  const out: TransportHeader = { protocol: proto.endsWith('/TCP') ? 'tcp' : 'udp' };
  for (const p of parts.slice(1)) {
    const i = p.indexOf('=');
    const k = (i < 0 ? p : p.slice(0, i)).toLowerCase();
    const val = i < 0 ? '' : p.slice(i + 1);
    if (k === 'interleaved') out.interleaved = pair(val, 255);
    else if (k === 'client_port') out.clientPort = pair(val, 65535);
    else if (k === 'server_port') out.serverPort = pair(val, 65535);
    else if (k === 'source') out.source = val.slice(0, 64);
    else if (k === 'ssrc' && /^[0-9a-f]{1,8}$/i.test(val)) out.ssrc = parseInt(val, 16);
  }
  if (out.protocol === 'tcp' && !out.interleaved) out.interleaved = [0, 1];
  return out;
}
