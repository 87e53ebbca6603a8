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
  /** A view into the pushed chunk when it was whole in one chunk (no copy), else its own copy. */
  data: Buffer;
}

export type RtspMessage = RtspResponse | RtspServerRequest | InterleavedFrame;

export function header(h: Map<string, string[]>, name: string): string | undefined {
  return h.get(name.toLowerCase())?.[0];
}

/** An interleaved frame as a range of `buf`, valid only during the call. */
export type FrameSink = (channel: number, buf: Buffer, start: number, end: number) => void;
export type MessageSink = (m: RtspResponse | RtspServerRequest) => void;

/** The longest interleaved frame: '$', channel, a 16-bit length and that many bytes. */
const MAX_FRAME_BYTES = 4 + 0xffff;

/**
 * Streaming demultiplexer of one RTSP connection. push(chunk) returns every complete message in
 * order; a partial one waits for the next chunk. Throws RtspError on malformed input, after which
 * the connection must be dropped (there is no way to resynchronise an RTSP byte stream safely).
 *
 * feed() is the socket's path: frames go to a callback as ranges of the chunk (no view, no object,
 * no copy), and what a chunk leaves unfinished is carried, not the chunk: the head of an
 * interleaved frame waits in one preallocated buffer, and the next chunk gives it only the bytes
 * it lacks before the scan goes on in that chunk itself. Only a partial text message (rare: the
 * replies to our requests) joins the next chunk whole.
 */
export class RtspReader {
  /** A partial interleaved frame: carry[0, carried). Allocated at the first partial frame. */
  private carry: Buffer = EMPTY;
  private carried = 0;
  /** A partial text message (and what followed it in its chunk). */
  private text: Buffer = EMPTY;
  messages = 0;
  interleavedFrames = 0;
  interleavedBytes = 0;

  /**
   * `transient`: the chunk is a view into a buffer the caller reuses (a socket's onread buffer).
   * Interleaved frames returned are then views valid only until the caller's next read. (What is
   * carried over to the next chunk is always a copy.)
   */
  push(chunk: Buffer, transient = false, onFrame?: FrameSink): RtspMessage[] {
    const out: RtspMessage[] = [];
    // a frame completed in the carry buffer is copied unless the caller reads it at once (transient)
    const frames: FrameSink = onFrame ?? ((channel, buf, start, end) => out.push({ type: 'interleaved', channel, data: buf === this.carry && !transient ? Buffer.from(buf.subarray(start, end)) : buf.subarray(start, end) }));
    this.feed(chunk, chunk.length, frames, (m) => out.push(m));
    return out;
  }

  /**
   * buf[0, len) is the next chunk of the stream; `buf` may be reused by the caller once this
   * returns. Frames and messages go to the callbacks in stream order.
   */
  feed(buf: Buffer, len: number, onFrame: FrameSink, onMessage: MessageSink): void {
    let off = 0;
    if (this.text.length > 0) {
      // a partial text message: join the chunk to it (a reply: rare and small)
      const b = Buffer.concat([this.text, buf.subarray(0, len)]);
      this.text = EMPTY;
      this.keep(b, this.scan(b, 0, b.length, onFrame, onMessage), b.length);
      return;
    }
    if (this.carried > 0) {
      off = this.complete(buf, len, onFrame);
      if (off < 0) return; // the whole chunk went into the carried frame
    }
    this.keep(buf, this.scan(buf, off, len, onFrame, onMessage), len);
  }

  /**
   * The carried frame takes the bytes it lacks from buf[0, len): handed over when whole. Returns
   * where the scan goes on in buf, or -1 when the chunk ended first (all of it carried).
   */
  private complete(buf: Buffer, len: number, onFrame: FrameSink): number {
    const c = this.carry;
    let off = 0;
    if (this.carried < 4) {
      const n = Math.min(4 - this.carried, len);
      buf.copy(c, this.carried, 0, n);
      this.carried += n;
      off = n;
      if (this.carried < 4) return -1;
    }
    const total = 4 + ((c[2]! << 8) | c[3]!);
    const n = Math.min(total - this.carried, len - off);
    buf.copy(c, this.carried, off, off + n);
    this.carried += n;
    off += n;
    if (this.carried < total) return -1;
    this.carried = 0;
    this.interleavedFrames++;
    this.interleavedBytes += total - 4;
    onFrame(c[1]!, c, 4, total);
    return off;
  }

  /** Every complete frame and message in b[off, end); returns where the unfinished rest starts. */
  private scan(b: Buffer, off: number, end: number, onFrame: FrameSink, onMessage: MessageSink): number {
    while (off < end) {
      if (b[off] === 0x24) {
        // '$' channel(1) length(2) payload
        if (end - off < 4) break;
        const fin = off + 4 + ((b[off + 2]! << 8) | b[off + 3]!);
        if (fin > end) break;
        this.interleavedFrames++;
        this.interleavedBytes += fin - off - 4;
        onFrame(b[off + 1]!, b, off + 4, fin);
        off = fin;
        continue;
      }
      const next = this.message(b, off, end, onMessage);
      if (next < 0) break;
      off = next;
    }
    return off;
  }

  /** b[off, end) is kept for the next chunk: a frame's head in carry, a message's in text (copies). */
  private keep(b: Buffer, off: number, end: number): void {
    if (off >= end) return;
    if (b[off] === 0x24) {
      if (this.carry.length === 0) this.carry = Buffer.allocUnsafe(MAX_FRAME_BYTES);
      b.copy(this.carry, 0, off, end);
      this.carried = end - off;
    } else this.text = Buffer.from(b.subarray(off, end));
  }

  /**
   * One text message (or CRLF filler) at b[off]: returns the offset after it, or -1 when it is not
   * complete in b[off, end).
   */
  private message(b: Buffer, off: number, end: number, onMessage: MessageSink): number {
    // Some servers put CRLFs between messages (keepalive habits): skip them.
    if (b[off] === 0x0d || b[off] === 0x0a) return off + 1;
    const view = end === b.length ? b : b.subarray(0, end);
    const hdrEnd = view.indexOf('\r\n\r\n', off, 'latin1');
    if (hdrEnd < 0) {
      if (end - off > MAX_HEADER_BYTES) throw new RtspError('RTSP_BAD_MESSAGE', `header block longer than ${MAX_HEADER_BYTES} bytes`);
      // A message must start with a token: fail early on binary junk rather than buffering 16 KiB of it.
      if (!/^[A-Z_/0-9.-]*$/i.test(b.toString('latin1', off, Math.min(end, off + 8)))) {
        throw new RtspError('RTSP_BAD_MESSAGE', 'neither an RTSP message nor an interleaved frame');
      }
      return -1;
    }
    if (hdrEnd - off > MAX_HEADER_BYTES) throw new RtspError('RTSP_BAD_MESSAGE', `header block longer than ${MAX_HEADER_BYTES} bytes`);
    const head = parseHead(b.toString('latin1', off, hdrEnd));
    const cl = header(head.headers, 'content-length');
    let bodyLen = 0;
    if (cl !== undefined) {
      if (!/^\d{1,9}$/.test(cl.trim())) throw new RtspError('RTSP_BAD_MESSAGE', 'bad Content-Length');
      bodyLen = Number(cl.trim());
      if (bodyLen > MAX_BODY_BYTES) throw new RtspError('RTSP_BAD_MESSAGE', `body of ${bodyLen} bytes exceeds ${MAX_BODY_BYTES}`);
    }
    const bodyStart = hdrEnd + 4;
    if (end - bodyStart < bodyLen) return -1;
    const body = Buffer.from(b.subarray(bodyStart, bodyStart + bodyLen));
    this.messages++;
    onMessage(head.kind === 'response'
      ? { type: 'response', status: head.status, reason: head.reason, headers: head.headers, body }
      : { type: 'request', method: head.method, uri: head.uri, headers: head.headers, body });
    return bodyStart + bodyLen;
  }

  /** Bytes waiting for the rest of a message (bounded by MAX_HEADER_BYTES + MAX_BODY_BYTES or 65539). */
  get buffered(): number {
    return this.carried + this.text.length;
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
