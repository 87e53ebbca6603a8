// RTP (RFC 3550) and the H.264 RTP payload (RFC 6184), pure: packets in, whole Annex-B access
// units out. Single NAL units, STAP-A and FU-A (packetization modes 0 and 1). An access unit ends
// at the marker bit or when the RTP timestamp changes. A sequence gap loses the access unit it hit
// and everything up to the next keyframe (a decoder cannot use P-frames after a loss); the drops are
// counted. SPS/PPS (in-band or from the SDP's sprop-parameter-sets) go in front of every IDR that
// came without them, so any keyframe is a start point. The RTP clock (90 kHz, 32-bit wrap) maps to
// the capture clock in RtpClock.

import { RtspError } from './message.js';

export interface RtpPacket {
  marker: boolean;
  payloadType: number;
  seq: number;
  timestamp: number;
  ssrc: number;
  /** A view into the packet (no copy). */
  payload: Buffer;
}

/** Parse one RTP packet; throws RtspError RTP_MALFORMED. No allocation beyond the view. */
export function parseRtp(b: Buffer): RtpPacket {
  if (b.length < 12) throw new RtspError('RTP_MALFORMED', 'RTP packet shorter than its header');
  const v = b[0]! >> 6;
  if (v !== 2) throw new RtspError('RTP_MALFORMED', `RTP version ${v}`);
  const padding = (b[0]! & 0x20) !== 0;
  const ext = (b[0]! & 0x10) !== 0;
  const cc = b[0]! & 0x0f;
  let off = 12 + cc * 4;
  if (ext) {
    if (b.length < off + 4) throw new RtspError('RTP_MALFORMED', 'RTP extension header past the end');
    off += 4 + b.readUInt16BE(off + 2) * 4;
  }
  let end = b.length;
  if (padding) {
    const p = b[b.length - 1]!;
    if (p === 0) throw new RtspError('RTP_MALFORMED', 'RTP padding of zero bytes');
    end -= p;
  }
  if (off > end) throw new RtspError('RTP_MALFORMED', 'RTP header longer than the packet');
  return {
    marker: (b[1]! & 0x80) !== 0,
    payloadType: b[1]! & 0x7f,
    seq: b.readUInt16BE(2),
    timestamp: b.readUInt32BE(4),
    ssrc: b.readUInt32BE(8),
    payload: b.subarray(off, end),
  };
}

/** RTP header fields and where the payload is in the packet; filled in place (no allocation). */
export interface RtpHeader {
  marker: boolean;
  payloadType: number;
  seq: number;
  timestamp: number;
  ssrc: number;
  payloadStart: number;
  payloadEnd: number;
}

/** parseRtp's checks on b[start, end), into `h`. Throws RtspError RTP_MALFORMED. */
export function readRtpHeader(b: Buffer, start: number, end: number, h: RtpHeader): void {
  const len = end - start;
  if (len < 12) throw new RtspError('RTP_MALFORMED', 'RTP packet shorter than its header');
  const b0 = b[start]!;
  if (b0 >> 6 !== 2) throw new RtspError('RTP_MALFORMED', `RTP version ${b0 >> 6}`);
  let off = start + 12 + (b0 & 0x0f) * 4;
  if ((b0 & 0x10) !== 0) {
    if (end < off + 4) throw new RtspError('RTP_MALFORMED', 'RTP extension header past the end');
    off += 4 + ((b[off + 2]! << 8) | b[off + 3]!) * 4;
  }
  let pend = end;
  if ((b0 & 0x20) !== 0) {
    const p = b[end - 1]!;
    if (p === 0) throw new RtspError('RTP_MALFORMED', 'RTP padding of zero bytes');
    pend -= p;
  }
  if (off > pend) throw new RtspError('RTP_MALFORMED', 'RTP header longer than the packet');
  const b1 = b[start + 1]!;
  h.marker = (b1 & 0x80) !== 0;
  h.payloadType = b1 & 0x7f;
  h.seq = (b[start + 2]! << 8) | b[start + 3]!;
  h.timestamp = b.readUInt32BE(start + 4);
  h.ssrc = b.readUInt32BE(start + 8);
  h.payloadStart = off;
  h.payloadEnd = pend;
}

export interface DepacketizedUnit {
  /** Annex-B: 4-byte start code before each NAL. */
  data: Buffer;
  key: boolean;
  timestamp: number;
  nalTypes: number[];
}

export interface H264DepacketizerOptions {
  /** From sprop-parameter-sets; replaced by in-band ones when the camera sends them. */
  sps?: Buffer[];
  pps?: Buffer[];
  /** An access unit larger than this is dropped whole (counted); 8 MiB is > any 4K intra frame. */
  maxAuBytes?: number;
  /** NAL units per access unit; a slice-per-macroblock-row 4K frame has ~140. */
  maxNals?: number;
}

const START = Buffer.from([0, 0, 0, 1]);
/** What pushPayload returns for the packets that finish nothing (most): shared, so frozen. */
const NO_UNITS: DepacketizedUnit[] = Object.freeze([]) as unknown as DepacketizedUnit[];

/** A start code and src[off, off+len) into dst at p; returns the end. */
function putNal(dst: Buffer, p: number, src: Buffer, off: number, len: number): number {
  dst[p] = 0;
  dst[p + 1] = 0;
  dst[p + 2] = 0;
  dst[p + 3] = 1;
  src.copy(dst, p + 4, off, off + len);
  return p + 4 + len;
}

/**
 * a equals b[off, off+len). The parameter set kept keeps its identity while the camera repeats
 * the same one (the driver re-parses the SPS for the MIME only when the identity changes).
 */
function sameBytes(a: Buffer | undefined, b: Buffer, off: number, len: number): boolean {
  if (a === undefined || a.length !== len) return false;
  for (let i = 0; i < len; i++) if (a[i] !== b[off + i]) return false;
  return true;
}
/** A parameter set is tens of bytes; anything this large is not one we keep. */
const MAX_PARAM_SET = 4096;

/** Consecutive packets older than expected after which the sequence is taken to have restarted. */
export const SEQ_RESYNC_AFTER = 32;

export class H264Depacketizer {
  private sps: Buffer | undefined;
  private pps: Buffer | undefined;
  /**
   * The access unit being assembled: NAL bytes are copied into one reused scratch buffer (so the
   * caller may reuse its packet buffers, and a packet costs no allocation), NALs are offsets into it.
   * Grows by doubling up to maxAuBytes; one copy more at flush makes the unit's own buffer.
   */
  private scratch = Buffer.allocUnsafe(64 * 1024);
  private used = 0;
  private nalOff: number[] = [];
  private nalLen: number[] = [];
  private bytes = 0;
  private ts: number | undefined;
  /** Offset of the FU-A NAL being reassembled in scratch, or undefined. */
  private fu: number | undefined;
  private expectedSeq: number | undefined;
  /** The current access unit lost a packet: it is dropped when it ends. */
  private broken = false;
  /** After a loss (and at the start) only a keyframe may pass. */
  private waitKey = true;
  private readonly maxAu: number;
  private readonly maxNals: number;
  // counters
  packets = 0;
  units = 0;
  keyframes = 0;
  seqGaps = 0;
  packetsLost = 0;
  reordered = 0;
  /** Sequence jumps back followed (a run of SEQ_RESYNC_AFTER "old" packets). */
  seqResyncs = 0;
  private oldRun = 0;
  droppedUntilKeyframe = 0;
  droppedBroken = 0;
  droppedOversized = 0;
  droppedUnsupported = 0;
  paramSetsInserted = 0;
  nalsMoved = 0;

  constructor(opts: H264DepacketizerOptions = {}) {
    this.sps = opts.sps?.[0];
    this.pps = opts.pps?.[0];
    this.maxAu = opts.maxAuBytes ?? 8 * 1024 * 1024;
    this.maxNals = opts.maxNals ?? 1024;
  }

  /** The SPS in use (sprop or in-band), for the MIME. */
  get currentSps(): Buffer | undefined {
    return this.sps;
  }

  push(p: RtpPacket): DepacketizedUnit[] {
    return this.pushPayload(p.seq, p.timestamp, p.marker, p.payload, 0, p.payload.length);
  }

  /**
   * The hot path (TCP): one packet's fields and its payload as a range of `buf` (the socket's read
   * buffer, valid only during this call: every byte kept is copied into scratch). No allocation
   * per packet.
   */
  pushPayload(seq: number, timestamp: number, marker: boolean, buf: Buffer, start: number, end: number): DepacketizedUnit[] {
    let out: DepacketizedUnit[] | undefined; // made only when a unit ends (most packets end none)
    this.packets++;
    if (this.expectedSeq !== undefined && seq !== this.expectedSeq) {
      const d = (seq - this.expectedSeq) & 0xffff;
      if (d >= 0x8000 && ++this.oldRun < SEQ_RESYNC_AFTER) {
        // an old or duplicate packet (UDP reordering): its access unit was already given up
        this.reordered++;
        return NO_UNITS;
      }
      if (d >= 0x8000) {
        // A run of "old" packets is a camera that restarted its packetizer (sequence jumped
        // back): follow it from here instead of dropping up to 32 768 packets.
        this.seqResyncs++;
      } else this.packetsLost += d;
      this.oldRun = 0;
      this.seqGaps++;
      // The unit in progress lost its tail, and the lost packets may have been the head of the
      // unit this packet belongs to: both are dropped, then only a keyframe may pass.
      this.broken = true;
      this.flush((out ??= []));
      this.broken = true;
      this.ts = undefined;
      this.waitKey = true;
    }
    this.oldRun = 0;
    this.expectedSeq = (seq + 1) & 0xffff;
    if (this.ts !== undefined && timestamp !== this.ts) this.flush((out ??= []));
    this.ts = timestamp;
    this.payload(buf, start, end);
    if (marker) this.flush((out ??= []));
    return out ?? NO_UNITS;
  }

  /** End the current access unit (the stream ended): it is emitted only if it is whole. */
  end(): DepacketizedUnit[] {
    const out: DepacketizedUnit[] = [];
    this.broken = this.broken || this.fu !== undefined;
    this.flush(out);
    return out;
  }

  private payload(pl: Buffer, start: number, end: number): void {
    if (end <= start) return;
    const type = pl[start]! & 0x1f;
    if (type >= 1 && type <= 23) {
      this.dropFu();
      this.addNal(pl, start, end);
    } else if (type === 24) {
      // STAP-A: [size:16][NAL]…
      this.dropFu();
      let off = start + 1;
      while (off + 2 <= end) {
        const size = (pl[off]! << 8) | pl[off + 1]!;
        off += 2;
        if (size === 0 || off + size > end) {
          this.broken = true;
          this.droppedUnsupported++;
          return;
        }
        this.addNal(pl, off, off + size);
        off += size;
      }
    } else if (type === 28) {
      if (end - start < 3) {
        this.broken = true;
        return;
      }
      const fh = pl[start + 1]!;
      const startBit = (fh & 0x80) !== 0;
      const endBit = (fh & 0x40) !== 0;
      if (startBit) {
        if (this.fu !== undefined) this.used = this.fu; // an unfinished NAL before: dropped
        if (!this.reserve(1)) return;
        this.fu = this.used;
        this.scratch[this.used++] = (pl[start]! & 0xe0) | (fh & 0x1f);
      } else if (this.fu === undefined) {
        // a middle or end fragment without its start: the NAL is lost
        this.broken = true;
        return;
      }
      const partLen = end - start - 2;
      if (!this.reserve(partLen)) {
        this.used = this.fu;
        this.fu = undefined;
        return;
      }
      pl.copy(this.scratch, this.used, start + 2, end);
      this.used += partLen;
      if (endBit) {
        const off = this.fu;
        this.fu = undefined;
        this.commitNal(off, this.used - off);
      }
    } else {
      // STAP-B, MTAP, FU-B (interleaved mode) and reserved types
      this.droppedUnsupported++;
      this.broken = true;
    }
  }

  /** An FU-A left unfinished by a following single NAL/STAP: its bytes are given back. */
  private dropFu(): void {
    if (this.fu === undefined) return;
    this.used = this.fu;
    this.fu = undefined;
    this.broken = true;
  }

  /** Room for n more bytes in scratch within maxAuBytes; false (broken, counted) when over. */
  private reserve(n: number): boolean {
    const need = this.used + n;
    if (need + 4 * (this.nalOff.length + 1) > this.maxAu) {
      this.broken = true;
      this.droppedOversized++;
      return false;
    }
    if (need > this.scratch.length) {
      const bigger = Buffer.allocUnsafe(Math.min(Math.max(need, this.scratch.length * 2), this.maxAu));
      this.scratch.copy(bigger, 0, 0, this.used);
      this.scratch = bigger;
    }
    return true;
  }

  private addNal(buf: Buffer, start: number, end: number): void {
    const len = end - start;
    if (len <= 0) return;
    if (!this.reserve(len)) return;
    const off = this.used;
    buf.copy(this.scratch, off, start, end);
    this.used += len;
    this.commitNal(off, len);
  }

  private commitNal(off: number, len: number): void {
    if ((this.scratch[off]! & 0x80) !== 0) {
      // forbidden_zero_bit: the network says this NAL is damaged
      this.broken = true;
      return;
    }
    if (this.nalOff.length >= this.maxNals) {
      this.broken = true;
      this.droppedOversized++;
      return;
    }
    this.nalOff.push(off);
    this.nalLen.push(len);
    this.bytes += len + 4;
  }

  /**
   * The access unit in scratch is done. The common case (nothing after the first slice to move)
   * is written straight from scratch into the unit's buffer: no view or array per NAL, one
   * allocation per unit. The rest goes through emitNals (views, normalize).
   */
  private flush(out: DepacketizedUnit[]): void {
    const ts = this.ts;
    const broken = this.broken || this.fu !== undefined;
    const offs = this.nalOff;
    const lens = this.nalLen;
    const n = offs.length;
    const s = this.scratch;
    this.used = 0;
    this.bytes = 0;
    this.fu = undefined;
    this.broken = false;
    // offs/lens are emptied below, after their NALs are read: scratch is not written before the
    // next packet, so the NALs stay valid through this call
    if (n === 0 || ts === undefined || broken) {
      offs.length = 0;
      lens.length = 0;
      if (n > 0 && ts !== undefined) {
        this.droppedBroken++;
        this.waitKey = true;
      }
      return;
    }
    let firstVcl = -1;
    let move = false;
    for (let i = 0; i < n; i++) {
      const t = s[offs[i]!]! & 0x1f;
      if (t >= 1 && t <= 5) {
        if (firstVcl < 0) firstVcl = i;
      } else if (firstVcl >= 0 && (t === 6 || t === 7 || t === 8 || t === 9)) move = true;
    }
    if (move) {
      const nals: Buffer[] = [];
      for (let i = 0; i < n; i++) nals.push(s.subarray(offs[i]!, offs[i]! + lens[i]!));
      offs.length = 0;
      lens.length = 0;
      this.emitNals(nals, ts, out);
      return;
    }
    let idr = false;
    let hasSps = false;
    let hasPps = false;
    const types: number[] = [];
    for (let i = 0; i < n; i++) {
      const off = offs[i]!;
      const len = lens[i]!;
      const t = s[off]! & 0x1f;
      types.push(t);
      if (t === 5) idr = true;
      else if (t === 7 && len <= MAX_PARAM_SET) {
        hasSps = true;
        if (!sameBytes(this.sps, s, off, len)) this.sps = Buffer.from(s.subarray(off, off + len));
      } else if (t === 8 && len <= MAX_PARAM_SET) {
        hasPps = true;
        if (!sameBytes(this.pps, s, off, len)) this.pps = Buffer.from(s.subarray(off, off + len));
      }
    }
    if (firstVcl < 0) {
      // parameter sets / SEI alone: kept for the next IDR, not a picture
      offs.length = 0;
      lens.length = 0;
      return;
    }
    const key = idr && this.sps !== undefined && this.pps !== undefined;
    if (this.waitKey && !key) {
      offs.length = 0;
      lens.length = 0;
      this.droppedUntilKeyframe++;
      return;
    }
    this.waitKey = false;
    const insert = idr && (!hasSps || !hasPps);
    let total = 0;
    for (let i = 0; i < n; i++) total += 4 + lens[i]!;
    if (insert && !hasSps) total += 4 + this.sps!.length;
    if (insert && !hasPps) total += 4 + this.pps!.length;
    const data = Buffer.allocUnsafe(total);
    let p = 0;
    let i = 0;
    if (insert) {
      // in front of the slices, after an AUD if there is one
      this.paramSetsInserted++;
      if (types[0] === 9) {
        p = putNal(data, p, s, offs[0]!, lens[0]!);
        i = 1;
        types.shift();
      }
      if (!hasSps) p = putNal(data, p, this.sps!, 0, this.sps!.length);
      if (!hasPps) p = putNal(data, p, this.pps!, 0, this.pps!.length);
    }
    for (; i < n; i++) p = putNal(data, p, s, offs[i]!, lens[i]!);
    offs.length = 0;
    lens.length = 0;
    this.units++;
    if (key) this.keyframes++;
    out.push({ data, key, timestamp: ts, nalTypes: types });
  }

  /** flush's general case: NAL views (into scratch), reordered by normalize, then copied out. */
  private emitNals(nals: Buffer[], ts: number, out: DepacketizedUnit[]): void {
    this.normalize(nals);
    let idr = false;
    let hasSps = false;
    let hasPps = false;
    let vcl = false;
    const types: number[] = [];
    for (const n of nals) {
      const t = n[0]! & 0x1f;
      types.push(t);
      if (t === 5) idr = true;
      if (t >= 1 && t <= 5) vcl = true;
      if (t === 7 && n.length <= MAX_PARAM_SET) {
        hasSps = true;
        if (!sameBytes(this.sps, n, 0, n.length)) this.sps = Buffer.from(n);
      } else if (t === 8 && n.length <= MAX_PARAM_SET) {
        hasPps = true;
        if (!sameBytes(this.pps, n, 0, n.length)) this.pps = Buffer.from(n);
      }
    }
    if (!vcl) return; // parameter sets / SEI alone: kept for the next IDR, not a picture
    const key = idr && this.sps !== undefined && this.pps !== undefined;
    if (this.waitKey && !key) {
      this.droppedUntilKeyframe++;
      return;
    }
    this.waitKey = false;
    const parts: Buffer[] = [];
    let len = 0;
    if (idr && (!hasSps || !hasPps)) {
      // in front of the slices, after an AUD if there is one
      this.paramSetsInserted++;
      if (types[0] === 9) {
        parts.push(START, nals[0]!);
        len += 4 + nals[0]!.length;
        nals.shift();
        types.shift();
      }
      if (!hasSps) parts.push(START, this.sps!), (len += 4 + this.sps!.length);
      if (!hasPps) parts.push(START, this.pps!), (len += 4 + this.pps!.length);
    }
    for (const n of nals) {
      parts.push(START, n);
      len += 4 + n.length;
    }
    this.units++;
    if (key) this.keyframes++;
    out.push({ data: Buffer.concat(parts, len), key, timestamp: ts, nalTypes: types });
  }

  /**
   * Parameter sets, SEI and AUDs after the first slice start a new access unit by the H.264 rules
   * (7.4.1.2.3), but some payloaders (GStreamer's rtph264pay config-interval=-1) put SPS/PPS in
   * front of every IDR slice of one picture: a decoder would split the picture in two. They move in
   * front of the first slice (a duplicate is dropped), so one RTP timestamp stays one picture.
   */
  private normalize(nals: Buffer[]): void {
    const firstVcl = nals.findIndex((n) => (n[0]! & 0x1f) >= 1 && (n[0]! & 0x1f) <= 5);
    if (firstVcl < 0) return;
    const head = nals.slice(0, firstVcl);
    const rest: Buffer[] = [];
    let moved = false;
    for (let i = firstVcl; i < nals.length; i++) {
      const n = nals[i]!;
      const t = n[0]! & 0x1f;
      if (t === 7 || t === 8 || t === 9 || t === 6) {
        moved = true;
        if ((t === 7 || t === 8) && !head.some((h) => h.equals(n))) head.push(n);
      } else rest.push(n);
    }
    if (!moved) return;
    this.nalsMoved++;
    nals.length = 0;
    nals.push(...head, ...rest);
  }

  stats(): Record<string, number> {
    return {
      nalsReordered: this.nalsMoved,
      rtpPackets: this.packets,
      accessUnits: this.units,
      keyframes: this.keyframes,
      seqGaps: this.seqGaps,
      packetsLost: this.packetsLost,
      reordered: this.reordered,
      seqResyncs: this.seqResyncs,
      droppedUntilKeyframe: this.droppedUntilKeyframe,
      droppedBroken: this.droppedBroken,
      droppedOversized: this.droppedOversized,
      droppedUnsupported: this.droppedUnsupported,
      paramSetsInserted: this.paramSetsInserted,
    };
  }
}

/**
 * RTP timestamp (32-bit, `rate` Hz, wraps every ~13 h at 90 kHz) → capture clock µs. Anchored at
 * the first unit's arrival; the camera's clock drifts against ours, so when the mapped time runs
 * ahead of arrival, or falls behind it by more than `maxLagUs`, it is re-anchored (counted).
 * Output never goes backwards.
 */
export class RtpClock {
  private ext: number | undefined;
  private last32 = 0;
  private anchorExt = 0;
  private anchorUs = 0;
  private lastOut = -Infinity;
  reanchors = 0;

  constructor(
    private readonly rate = 90000,
    private readonly maxLagUs = 1_000_000,
  ) {}

  /** Extended (unwrapped) timestamp. */
  unwrap(ts32: number): number {
    if (this.ext === undefined) {
      this.ext = ts32;
    } else {
      const d = (ts32 - this.last32) | 0; // signed 32-bit difference handles the wrap both ways
      this.ext += d;
    }
    this.last32 = ts32 >>> 0;
    return this.ext;
  }

  toCapture(ts32: number, arrivalUs: number): number {
    const ext = this.unwrap(ts32);
    let t = this.anchorUs + ((ext - this.anchorExt) * 1e6) / this.rate;
    if (this.lastOut === -Infinity || t > arrivalUs || arrivalUs - t > this.maxLagUs) {
      // Ahead of arrival is jitter on the first anchor (it follows the least-delayed unit); only a
      // lag beyond maxLagUs (a camera clock far off, a pause) is counted.
      if (this.lastOut !== -Infinity && t <= arrivalUs) this.reanchors++;
      this.anchorExt = ext;
      this.anchorUs = arrivalUs;
      t = arrivalUs;
    }
    t = Math.max(Math.round(t), this.lastOut + 1);
    this.lastOut = t;
    return t;
  }
}

/**
 * UDP can reorder packets (Wi-Fi, bonded links). Packets are held until the sequence is
 * contiguous; a hole is given up (released as a gap the depacketizer counts) once `maxHold` later
 * packets have arrived. Bounded: at most maxHold packets held. Over TCP it is not needed.
 */
export class RtpReorderBuffer {
  private next: number | undefined;
  private held = new Map<number, RtpPacket>();
  reorderedFixed = 0;
  duplicates = 0;
  late = 0;
  private lateRun = 0;

  constructor(private readonly maxHold = 16) {}

  /**
   * The common case without an allocation: `seq` is the packet expected and nothing is held, so it
   * passes now (true, as push would return it alone). False: give the packet to push().
   */
  passesInOrder(seq: number): boolean {
    if (this.held.size !== 0 || (this.next !== undefined && seq !== this.next)) return false;
    this.lateRun = 0;
    this.next = (seq + 1) & 0xffff;
    return true;
  }

  push(p: RtpPacket): RtpPacket[] {
    if (this.next === undefined) this.next = p.seq;
    const d = (p.seq - this.next) & 0xffff;
    if (d >= 0x8000) {
      if (++this.lateRun >= SEQ_RESYNC_AFTER) {
        // a run of "late" packets is a sequence that restarted lower: follow it from here
        this.lateRun = 0;
        const out = this.drainAll();
        this.next = p.seq;
        return [...out, ...this.push(p)];
      }
      this.late++; // older than what was already released: the depacketizer gave that unit up
      return [];
    }
    this.lateRun = 0;
    if (this.held.has(p.seq)) {
      this.duplicates++;
      return [];
    }
    if (d > 0) {
      if (d > 0x1000) {
        // a jump far ahead (a camera restart, a new SSRC): start over from here
        const out = this.drainAll();
        this.next = p.seq;
        return [...out, ...this.push(p)];
      }
      this.held.set(p.seq, p);
      if (this.held.size <= this.maxHold) return [];
      // the hole at `next` is lost: skip to the oldest held packet
      this.next = this.oldestHeld();
      return this.release();
    }
    const out = [p];
    this.next = (p.seq + 1) & 0xffff;
    if (this.held.size > 0) this.reorderedFixed++;
    return out.concat(this.release());
  }

  private oldestHeld(): number {
    let best: number | undefined;
    let bestD = Infinity;
    for (const seq of this.held.keys()) {
      const d = (seq - this.next!) & 0xffff;
      if (d < bestD) {
        bestD = d;
        best = seq;
      }
    }
    return best!;
  }

  private release(): RtpPacket[] {
    const out: RtpPacket[] = [];
    for (let p = this.held.get(this.next!); p; p = this.held.get(this.next!)) {
      this.held.delete(this.next!);
      out.push(p);
      this.next = (this.next! + 1) & 0xffff;
    }
    return out;
  }

  private drainAll(): RtpPacket[] {
    const out: RtpPacket[] = [];
    while (this.held.size > 0) {
      this.next = this.oldestHeld();
      out.push(...this.release());
    }
    return out;
  }

  stats(): Record<string, number> {
    return { reorderFixed: this.reorderedFixed, reorderDuplicates: this.duplicates, reorderLate: this.late, reorderHeld: this.held.size };
  }
}
