// RTMP chunk stream: reassembles chunks (basic header fmt 0–3, extended timestamps) into messages,
// and splits messages into chunks. Pure: bytes in, messages out. Spec: Adobe RTMP 1.0 §5.3.
//
// Payload bytes are never buffered per chunk: once a chunk header is parsed, its payload is taken
// straight from the input as it arrives, so a huge chunk size costs nothing. A message's declared
// length allocates nothing up front (hostile 16 MB headers are cheap); bytes are held only as they
// arrive, and the total held across unfinished messages is capped.

export const MSG = {
  setChunkSize: 1,
  abort: 2,
  ack: 3,
  userControl: 4,
  windowAckSize: 5,
  setPeerBandwidth: 6,
  audio: 8,
  video: 9,
  dataAmf3: 15,
  sharedObjectAmf3: 16,
  commandAmf3: 17,
  dataAmf0: 18,
  sharedObjectAmf0: 19,
  commandAmf0: 20,
  aggregate: 22,
} as const;

export interface RtmpMessage {
  /** Chunk stream id it arrived on (2 = protocol control). */
  csid: number;
  typeId: number;
  /** Message stream id (0 = the connection, 1.. = streams from createStream). */
  streamId: number;
  /** Absolute timestamp in ms, uint32 (wraps). */
  timestamp: number;
  payload: Buffer;
}

export class ChunkError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(`${code}: ${message}`);
    this.name = 'ChunkError';
    this.code = code;
  }
}

export interface ChunkReaderOptions {
  /** Largest message accepted. A 1080p IDR at 8 Mbit/s is ~0.5–1 MB; 8 MB leaves headroom. */
  maxMessageBytes?: number;
  /** Cap on bytes held across all unfinished messages (a peer interleaving many streams). */
  maxPendingBytes?: number;
  /** Distinct chunk stream ids a peer may use. Publishers use ~5 (2, 3, 4, 5, 6…). */
  maxChunkStreams?: number;
}

interface CsState {
  // Last header values (fmt 1–3 inherit from these)
  timestamp: number;
  /** The last header's timestamp field: absolute for fmt 0, a delta for fmt 1/2 (ffmpeg/librtmp reuse it for fmt 3). */
  tsField: number;
  extended: boolean;
  length: number;
  typeId: number;
  streamId: number;
  seenFmt0: boolean;
  // Message being assembled
  parts: Buffer[] | null;
  received: number;
}

export interface ChunkReaderStats {
  chunks: number;
  messages: number;
  bytes: number;
  chunkSize: number;
}


export class ChunkReader {
  private chunkSize = 128; // RTMP default until a Set Chunk Size arrives
  private maxMessageBytes: number;
  private maxPendingBytes: number;
  private readonly maxChunkStreams: number;
  private readonly streams = new Map<number, CsState>();
  private pendingBytes = 0;
  private leftover: Buffer | null = null; // < MAX_HEADER bytes of an incomplete header
  /** Current chunk: its stream and how many payload bytes remain in it. */
  private cur: CsState | null = null;
  private curCsid = 0;
  private curRemaining = 0;
  private failed: ChunkError | null = null;
  readonly counters: ChunkReaderStats = { chunks: 0, messages: 0, bytes: 0, chunkSize: 128 };

  constructor(opts: ChunkReaderOptions = {}) {
    this.maxMessageBytes = opts.maxMessageBytes ?? 8 * 1024 * 1024;
    this.maxPendingBytes = opts.maxPendingBytes ?? 2 * this.maxMessageBytes;
    this.maxChunkStreams = opts.maxChunkStreams ?? 64;
  }

  get inChunkSize(): number {
    return this.chunkSize;
  }

  /** Change the limits (a server allows video-sized messages only once a publish is accepted). */
  setLimits(maxMessageBytes: number, maxPendingBytes = maxMessageBytes * 2): void {
    this.maxMessageBytes = maxMessageBytes;
    this.maxPendingBytes = maxPendingBytes;
  }

  /**
   * Feed bytes; returns every message completed by them. Set Chunk Size and Abort are applied
   * here (they change parsing) and also returned. Throws ChunkError; after that the reader is dead.
   */
  push(input: Buffer): RtmpMessage[] {
    if (this.failed) throw this.failed;
    try {
      return this.pushInner(input);
    } catch (err) {
      if (err instanceof ChunkError) this.failed = err;
      throw err;
    }
  }

  private pushInner(input: Buffer): RtmpMessage[] {
    this.counters.bytes += input.length;
    let buf = input;
    if (this.leftover) {
      buf = Buffer.concat([this.leftover, input]);
      this.leftover = null;
    }
    const out: RtmpMessage[] = [];
    let pos = 0;
    while (pos < buf.length) {
      if (this.cur === null) {
        const consumed = this.parseHeader(buf, pos);
        if (consumed === 0) {
          this.leftover = Buffer.from(buf.subarray(pos)); // copy: do not pin the socket buffer
          break;
        }
        pos += consumed;
        if (this.cur !== null && this.curRemaining === 0) this.finishChunk(out); // zero-length message
        continue;
      }
      const take = Math.min(this.curRemaining, buf.length - pos);
      const st = this.cur;
      this.pendingBytes += take;
      if (this.pendingBytes > this.maxPendingBytes) {
        throw new ChunkError('RTMP_CHUNK_OVERFLOW', `more than ${this.maxPendingBytes} bytes held in unfinished messages`);
      }
      st.parts!.push(buf.subarray(pos, pos + take));
      st.received += take;
      this.curRemaining -= take;
      pos += take;
      if (this.curRemaining === 0) this.finishChunk(out);
    }
    return out;
  }

  private finishChunk(out: RtmpMessage[]): void {
    const st = this.cur!;
    this.cur = null;
    this.counters.chunks++;
    if (st.received < st.length) return; // more chunks to come
    const payload = st.parts!.length === 1 ? Buffer.from(st.parts![0]!) : Buffer.concat(st.parts!, st.received);
    this.pendingBytes -= st.received;
    st.parts = null;
    st.received = 0;
    const msg: RtmpMessage = { csid: this.curCsid, typeId: st.typeId, streamId: st.streamId, timestamp: st.timestamp, payload };
    this.counters.messages++;
    this.applyControl(msg);
    out.push(msg);
  }

  private applyControl(msg: RtmpMessage): void {
    if (msg.streamId !== 0 && msg.typeId <= MSG.abort) return;
    if (msg.typeId === MSG.setChunkSize) {
      if (msg.payload.length < 4) throw new ChunkError('RTMP_BAD_CONTROL', 'Set Chunk Size shorter than 4 bytes');
      const size = msg.payload.readUInt32BE(0) & 0x7fffffff; // the top bit is reserved (0)
      if (size < 1) throw new ChunkError('RTMP_BAD_CONTROL', 'Set Chunk Size of 0');
      this.chunkSize = size;
      this.counters.chunkSize = size;
    } else if (msg.typeId === MSG.abort) {
      if (msg.payload.length < 4) throw new ChunkError('RTMP_BAD_CONTROL', 'Abort shorter than 4 bytes');
      const st = this.streams.get(msg.payload.readUInt32BE(0));
      if (st && st.parts) {
        this.pendingBytes -= st.received;
        st.parts = null;
        st.received = 0;
      }
    }
  }

  /** Parses one chunk header at `pos`. Returns bytes consumed, or 0 when more input is needed. */
  private parseHeader(buf: Buffer, pos: number): number {
    const avail = buf.length - pos;
    if (avail < 1) return 0;
    const b0 = buf[pos]!;
    const fmt = b0 >> 6;
    let csid = b0 & 0x3f;
    let p = pos + 1;
    if (csid === 0) {
      if (avail < 2) return 0;
      csid = 64 + buf[p]!;
      p += 1;
    } else if (csid === 1) {
      if (avail < 3) return 0;
      csid = 64 + buf[p]! + buf[p + 1]! * 256;
      p += 2;
    }
    const mhLen = fmt === 0 ? 11 : fmt === 1 ? 7 : fmt === 2 ? 3 : 0;
    if (buf.length - p < mhLen) return 0;

    let st = this.streams.get(csid);
    if (!st) {
      if (fmt !== 0) throw new ChunkError('RTMP_CHUNK_NO_CONTEXT', `fmt ${fmt} chunk on new chunk stream ${csid}`);
      if (this.streams.size >= this.maxChunkStreams) {
        throw new ChunkError('RTMP_CHUNK_OVERFLOW', `more than ${this.maxChunkStreams} chunk streams`);
      }
    }

    let tsField = 0;
    let length = st?.length ?? 0;
    let typeId = st?.typeId ?? 0;
    let streamId = st?.streamId ?? 0;
    if (fmt <= 2) tsField = buf.readUIntBE(p, 3);
    if (fmt <= 1) {
      length = buf.readUIntBE(p + 3, 3);
      typeId = buf[p + 6]!;
    }
    if (fmt === 0) streamId = buf.readUInt32LE(p + 7); // little-endian, the one LE field in RTMP
    p += mhLen;

    const extended = fmt <= 2 ? tsField === 0xffffff : st!.extended;
    let extValue = 0;
    if (extended) {
      if (buf.length - p < 4) return 0;
      extValue = buf.readUInt32BE(p);
      p += 4;
    }

    // Nothing is mutated above this line, so an incomplete header can simply be re-parsed later.
    if (!st) {
      st = { timestamp: 0, tsField: 0, extended: false, length: 0, typeId: 0, streamId: 0, seenFmt0: false, parts: null, received: 0 };
      this.streams.set(csid, st);
    }
    const continuing = st.parts !== null;
    if (continuing && fmt !== 3) {
      // A new header in the middle of a message: the peer abandoned the old one (lenient, as ffmpeg).
      this.pendingBytes -= st.received;
      st.parts = null;
      st.received = 0;
    }
    if (fmt <= 2) {
      const field = extended ? extValue : tsField;
      st.tsField = field;
      st.extended = extended;
      st.timestamp = fmt === 0 ? field : (st.timestamp + field) >>> 0;
      if (fmt === 0) {
        st.seenFmt0 = true;
        st.streamId = streamId;
      }
      if (fmt <= 1) {
        st.length = length;
        st.typeId = typeId;
      }
    } else if (!continuing) {
      // fmt 3 starting a new message: same header, timestamp advances by the last field again.
      st.timestamp = (st.timestamp + st.tsField) >>> 0;
    }
    if (!st.seenFmt0) throw new ChunkError('RTMP_CHUNK_NO_CONTEXT', `chunk stream ${csid} never had a type 0 header`);
    if (st.parts === null) {
      if (st.length > this.maxMessageBytes) {
        throw new ChunkError('RTMP_MESSAGE_TOO_LARGE', `message of ${st.length} bytes exceeds ${this.maxMessageBytes}`);
      }
      st.parts = [];
      st.received = 0;
    }
    this.cur = st;
    this.curCsid = csid;
    this.curRemaining = Math.min(this.chunkSize, st.length - st.received);
    return p - pos;
  }
}

// ---------------------------------------------------------------------------------------------
// Writing

export interface OutMessage {
  csid: number;
  typeId: number;
  streamId: number;
  timestamp: number;
  payload: Buffer;
}

function basicHeader(fmt: number, csid: number): Buffer {
  if (csid < 2 || csid > 65599) throw new RangeError(`chunk stream id ${csid} outside 2..65599`);
  if (csid < 64) return Buffer.from([(fmt << 6) | csid]);
  if (csid < 320) return Buffer.from([fmt << 6, csid - 64]);
  const v = csid - 64;
  return Buffer.from([(fmt << 6) | 1, v & 0xff, v >> 8]);
}

/**
 * Splits messages into chunks. With `compress`, picks fmt 1/2/3 headers where the previous
 * message on the same chunk stream allows (as ffmpeg does); otherwise every message starts fmt 0.
 */
export class ChunkWriter {
  chunkSize = 128;
  private readonly prev = new Map<number, { timestamp: number; tsField: number; length: number; typeId: number; streamId: number }>();
  constructor(private readonly compress = false) {}

  encode(msg: OutMessage): Buffer {
    const parts: Buffer[] = [];
    const prev = this.prev.get(msg.csid);
    const ts = msg.timestamp >>> 0;
    let fmt = 0;
    let field = ts;
    if (this.compress && prev && prev.streamId === msg.streamId && ts >= prev.timestamp) {
      field = ts - prev.timestamp;
      fmt = 1;
      if (prev.typeId === msg.typeId && prev.length === msg.payload.length) {
        fmt = 2;
        if (field === prev.tsField) fmt = 3;
      }
    }
    const ext = field >= 0xffffff;
    const h = basicHeader(fmt, msg.csid);
    const mh = Buffer.alloc(fmt === 0 ? 11 : fmt === 1 ? 7 : fmt === 2 ? 3 : 0);
    if (fmt <= 2) mh.writeUIntBE(ext ? 0xffffff : field, 0, 3);
    if (fmt <= 1) {
      mh.writeUIntBE(msg.payload.length, 3, 3);
      mh[6] = msg.typeId;
    }
    if (fmt === 0) mh.writeUInt32LE(msg.streamId, 7);
    const extBuf = Buffer.alloc(4);
    extBuf.writeUInt32BE(field >>> 0, 0);
    parts.push(h, mh);
    // fmt 3 after an extended header repeats the extended field (spec; ffmpeg does the same).
    const extendedNow = fmt === 3 ? prev!.tsField >= 0xffffff : ext;
    if (extendedNow) parts.push(extBuf);
    let off = 0;
    const len = msg.payload.length;
    for (;;) {
      const n = Math.min(this.chunkSize, len - off);
      parts.push(msg.payload.subarray(off, off + n));
      off += n;
      if (off >= len) break;
      parts.push(basicHeader(3, msg.csid));
      if (extendedNow) parts.push(extBuf);
    }
    this.prev.set(msg.csid, { timestamp: ts, tsField: field, length: len, typeId: msg.typeId, streamId: msg.streamId });
    if (msg.typeId === MSG.setChunkSize && msg.streamId === 0 && len >= 4) {
      this.chunkSize = msg.payload.readUInt32BE(0) & 0x7fffffff; // takes effect after this message
    }
    return Buffer.concat(parts);
  }
}

// Protocol control message payloads (§5.4)
export function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0, 0);
  return b;
}

export function userControl(event: number, value: number): Buffer {
  const b = Buffer.alloc(6);
  b.writeUInt16BE(event, 0);
  b.writeUInt32BE(value >>> 0, 2);
  return b;
}

export const USER_CONTROL = { streamBegin: 0, streamEof: 1, streamDry: 2, setBufferLength: 3, streamIsRecorded: 4, pingRequest: 6, pingResponse: 7 } as const;
