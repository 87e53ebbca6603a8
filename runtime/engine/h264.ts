// Part of the engine's public surface (with api.ts): pure H.264 parsing shared by drivers,
// recordings and egress, so there is one NAL iterator and one SPS parser in the tree.
// H.264 Annex-B parsing: NAL iteration, a streaming access-unit splitter, SPS parsing.
// Pure: no I/O. Every malformed input ends in an H264Error (code H264_MALFORMED), never in
// another exception, and no length read from the stream allocates memory by itself.

import { EdgeError } from './api.js';

export class H264Error extends EdgeError {
  constructor(message: string, context: Record<string, unknown> = {}) {
    super('H264_MALFORMED', message, context);
    this.name = 'H264Error';
  }
}

export const NAL = {
  SLICE: 1,
  IDR: 5,
  SEI: 6,
  SPS: 7,
  PPS: 8,
  AUD: 9,
} as const;

const START4 = Buffer.from([0, 0, 0, 1]);
const START3 = Buffer.from([0, 0, 1]);

export function nalType(nal: Buffer): number {
  return nal[0]! & 0x1f;
}

/** The NAL units of an Annex-B buffer (start codes and trailing zero bytes removed). */
export function nalUnits(buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let i = buf.indexOf(START3);
  while (i >= 0) {
    const start = i + 3;
    const next = buf.indexOf(START3, start);
    let end = next < 0 ? buf.length : next;
    while (end > start && buf[end - 1] === 0) end--;
    if (end > start) out.push(buf.subarray(start, end));
    i = next;
  }
  return out;
}

/** True when the access unit holds an IDR slice (a decoder can start here). */
export function isKeyframe(au: Buffer): boolean {
  for (const n of nalUnits(au)) if (nalType(n) === NAL.IDR) return true;
  return false;
}

/** Bytes of a NAL unit without emulation-prevention bytes (00 00 03 → 00 00). */
export function unescapeRbsp(nal: Buffer): Buffer {
  let zeros = 0;
  let needs = false;
  for (let i = 0; i < nal.length; i++) {
    const b = nal[i]!;
    if (zeros >= 2 && b === 3) {
      needs = true;
      break;
    }
    zeros = b === 0 ? zeros + 1 : 0;
  }
  if (!needs) return nal;
  const out = Buffer.allocUnsafe(nal.length);
  let o = 0;
  zeros = 0;
  for (let i = 0; i < nal.length; i++) {
    const b = nal[i]!;
    if (zeros >= 2 && b === 3) {
      zeros = 0;
      continue;
    }
    out[o++] = b;
    zeros = b === 0 ? zeros + 1 : 0;
  }
  return out.subarray(0, o);
}

/** Exp-Golomb bit reader over an RBSP. */
export class BitReader {
  private pos = 0;
  constructor(private readonly buf: Buffer) {}
  get bitsLeft(): number {
    return this.buf.length * 8 - this.pos;
  }
  bit(): number {
    if (this.pos >= this.buf.length * 8) throw new H264Error('bitstream truncated');
    const b = (this.buf[this.pos >> 3]! >> (7 - (this.pos & 7))) & 1;
    this.pos++;
    return b;
  }
  bits(n: number): number {
    let v = 0;
    for (let i = 0; i < n; i++) v = v * 2 + this.bit();
    return v;
  }
  ue(): number {
    let zeros = 0;
    while (this.bit() === 0) {
      if (++zeros > 31) throw new H264Error('exp-Golomb code longer than 32 bits');
    }
    return 2 ** zeros - 1 + this.bits(zeros);
  }
  se(): number {
    const k = this.ue();
    return k % 2 === 1 ? (k + 1) / 2 : -(k / 2);
  }
}

export interface SpsInfo {
  profileIdc: number;
  constraintFlags: number;
  levelIdc: number;
  chromaFormatIdc: number;
  width: number;
  height: number;
  frameMbsOnly: boolean;
  /** RFC 6184 profile-level-id, e.g. "42e01f". */
  profileLevelId: string;
}

const HIGH_PROFILES = new Set([100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135]);

/** Parse an SPS NAL unit (with its 1-byte header). */
export function parseSps(nal: Buffer): SpsInfo {
  if (nal.length < 4) throw new H264Error(`SPS too short (${nal.length} bytes)`);
  if (nalType(nal) !== NAL.SPS) throw new H264Error(`not an SPS (NAL type ${nalType(nal)})`);
  const r = new BitReader(unescapeRbsp(nal.subarray(1)));
  const profileIdc = r.bits(8);
  const constraintFlags = r.bits(8);
  const levelIdc = r.bits(8);
  const spsId = r.ue();
  if (spsId > 31) throw new H264Error(`seq_parameter_set_id ${spsId} > 31`);
  let chromaFormatIdc = 1;
  if (HIGH_PROFILES.has(profileIdc)) {
    chromaFormatIdc = r.ue();
    if (chromaFormatIdc > 3) throw new H264Error(`chroma_format_idc ${chromaFormatIdc} > 3`);
    if (chromaFormatIdc === 3) r.bit();
    r.ue(); // bit_depth_luma_minus8
    r.ue(); // bit_depth_chroma_minus8
    r.bit(); // qpprime_y_zero_transform_bypass_flag
    if (r.bit()) {
      const lists = chromaFormatIdc !== 3 ? 8 : 12;
      for (let i = 0; i < lists; i++) if (r.bit()) skipScalingList(r, i < 6 ? 16 : 64);
    }
  }
  r.ue(); // log2_max_frame_num_minus4
  const pocType = r.ue();
  if (pocType === 0) r.ue();
  else if (pocType === 1) {
    r.bit();
    r.se();
    r.se();
    const n = r.ue();
    if (n > 255) throw new H264Error(`num_ref_frames_in_pic_order_cnt_cycle ${n} > 255`);
    for (let i = 0; i < n; i++) r.se();
  } else if (pocType !== 2) throw new H264Error(`pic_order_cnt_type ${pocType} > 2`);
  r.ue(); // max_num_ref_frames
  r.bit(); // gaps_in_frame_num_value_allowed_flag
  const wMbs = r.ue() + 1;
  const hMapUnits = r.ue() + 1;
  const frameMbsOnly = r.bit() === 1;
  if (!frameMbsOnly) r.bit();
  r.bit(); // direct_8x8_inference_flag
  let cl = 0;
  let cr = 0;
  let ct = 0;
  let cb = 0;
  if (r.bit()) {
    cl = r.ue();
    cr = r.ue();
    ct = r.ue();
    cb = r.ue();
  }
  const subW = chromaFormatIdc === 1 || chromaFormatIdc === 2 ? 2 : 1;
  const subH = chromaFormatIdc === 1 ? 2 : 1;
  const cropX = chromaFormatIdc === 0 ? 1 : subW;
  const cropY = (chromaFormatIdc === 0 ? 1 : subH) * (frameMbsOnly ? 1 : 2);
  const width = wMbs * 16 - (cl + cr) * cropX;
  const height = (frameMbsOnly ? 1 : 2) * hMapUnits * 16 - (ct + cb) * cropY;
  if (width <= 0 || height <= 0 || width > 16384 || height > 16384) {
    throw new H264Error(`implausible picture size ${width}x${height}`);
  }
  const hex = (n: number) => n.toString(16).padStart(2, '0');
  return {
    profileIdc,
    constraintFlags,
    levelIdc,
    chromaFormatIdc,
    width,
    height,
    frameMbsOnly,
    profileLevelId: hex(profileIdc) + hex(constraintFlags) + hex(levelIdc),
  };
}

function skipScalingList(r: BitReader, size: number): void {
  let last = 8;
  let next = 8;
  for (let j = 0; j < size; j++) {
    if (next !== 0) next = (last + r.se() + 256) % 256;
    last = next === 0 ? last : next;
  }
}

/** `video/h264;width=1280;height=720;framerate=30;codecs=avc1.42E01F` — the pang MIME. */
export function h264Mime(sps: SpsInfo | undefined, fps?: number): string {
  let m = 'video/h264';
  if (sps) m += `;width=${sps.width};height=${sps.height}`;
  if (fps && fps > 0) m += `;framerate=${fps}`;
  if (sps) m += `;codecs=avc1.${sps.profileLevelId.toUpperCase()}`;
  return m;
}

export interface AccessUnit {
  data: Buffer;
  key: boolean;
  /** The NAL types in order, for stats and tests. */
  types: number[];
}

export interface SplitterOptions {
  /** An access unit larger than this is dropped whole (counted); 8 MiB is > any 4K intra frame. */
  maxAuBytes?: number;
  /** Put the last SPS/PPS in front of an IDR that came without them (pang: SPS/PPS before every IDR). */
  repeatParamSets?: boolean;
}

/**
 * Streaming Annex-B → access units. Frame boundaries come from the NAL types and the slice
 * header (first_mb_in_slice == 0), not one NAL per frame: x264's zerolatency writes several
 * slices per picture (field-notes).
 */
export class AnnexBSplitter {
  private buf: Buffer = Buffer.alloc(0);
  private nalStart = -1;
  private scanFrom = 0;
  private cur: Buffer[] = [];
  private curTypes: number[] = [];
  private curBytes = 0;
  private curVcl = false;
  private discarding = false;
  private readonly maxAu: number;
  private readonly repeat: boolean;
  lastSps: Buffer | undefined;
  lastPps: Buffer | undefined;
  sps: SpsInfo | undefined;
  // stats
  aus = 0;
  keyframes = 0;
  nals = 0;
  junkBytes = 0;
  oversizedDrops = 0;
  malformedNals = 0;
  spsErrors = 0;
  paramSetsInserted = 0;

  constructor(opts: SplitterOptions = {}) {
    this.maxAu = opts.maxAuBytes ?? 8 * 1024 * 1024;
    this.repeat = opts.repeatParamSets ?? true;
  }

  push(chunk: Buffer): AccessUnit[] {
    const out: AccessUnit[] = [];
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    for (;;) {
      if (this.nalStart < 0) {
        const i = this.buf.indexOf(START3);
        if (i < 0) {
          // No start code yet: keep the last 2 bytes (a start code may straddle chunks).
          const keep = Math.min(2, this.buf.length);
          this.junkBytes += this.buf.length - keep;
          this.buf = Buffer.from(this.buf.subarray(this.buf.length - keep));
          return out;
        }
        this.junkBytes += nonZeroPrefix(this.buf, i);
        this.nalStart = i + 3;
        this.scanFrom = this.nalStart;
      }
      const next = this.buf.indexOf(START3, this.scanFrom);
      if (next < 0) {
        this.scanFrom = Math.max(this.nalStart, this.buf.length - 2);
        if (this.buf.length - this.nalStart > this.maxAu) {
          // One NAL larger than any access unit we accept: drop what we have, resync.
          this.oversizedDrops++;
          this.resetAu(true);
          this.buf = Buffer.alloc(0);
          this.nalStart = -1;
        }
        break;
      }
      let end = next;
      while (end > this.nalStart && this.buf[end - 1] === 0) end--;
      if (end > this.nalStart) this.onNal(this.buf.subarray(this.nalStart, end), out);
      this.nalStart = next + 3;
      this.scanFrom = this.nalStart;
    }
    if (this.nalStart > 0) {
      // Compact: keep only the incomplete NAL. Copy, so emitted AUs do not pin old chunks.
      this.buf = Buffer.from(this.buf.subarray(this.nalStart));
      this.scanFrom -= this.nalStart;
      this.nalStart = 0;
    }
    return out;
  }

  /** End of stream: the last NAL and access unit are complete. */
  flush(): AccessUnit[] {
    const out: AccessUnit[] = [];
    if (this.nalStart >= 0) {
      let end = this.buf.length;
      while (end > this.nalStart && this.buf[end - 1] === 0) end--;
      if (end > this.nalStart) this.onNal(this.buf.subarray(this.nalStart, end), out);
    }
    this.emit(out);
    this.buf = Buffer.alloc(0);
    this.nalStart = -1;
    this.scanFrom = 0;
    return out;
  }

  stats() {
    return {
      accessUnits: this.aus,
      keyframes: this.keyframes,
      nals: this.nals,
      junkBytes: this.junkBytes,
      oversizedDrops: this.oversizedDrops,
      malformedNals: this.malformedNals,
      spsErrors: this.spsErrors,
      paramSetsInserted: this.paramSetsInserted,
    };
  }

  private onNal(nal: Buffer, out: AccessUnit[]): void {
    this.nals++;
    if (nal[0]! & 0x80) {
      this.malformedNals++; // forbidden_zero_bit set: not H.264
      return;
    }
    const t = nal[0]! & 0x1f;
    const vcl = t >= 1 && t <= 5;
    if (this.curVcl) {
      const firstMbZero = vcl && nal.length > 1 && (nal[1]! & 0x80) !== 0;
      if (firstMbZero || t === NAL.SEI || t === NAL.SPS || t === NAL.PPS || t === NAL.AUD || (t >= 14 && t <= 18)) {
        this.emit(out);
      }
    }
    if (t === NAL.SPS) {
      this.lastSps = Buffer.from(nal);
      try {
        this.sps = parseSps(nal);
      } catch {
        this.spsErrors++;
      }
    } else if (t === NAL.PPS) {
      this.lastPps = Buffer.from(nal);
    }
    if (this.discarding) {
      // The rest of a dropped AU: keep tracking boundaries, store nothing.
      if (vcl) this.curVcl = true;
      return;
    }
    if (this.curBytes + nal.length + 4 > this.maxAu) {
      this.oversizedDrops++;
      this.resetAu(true);
      if (vcl) this.curVcl = true;
      return;
    }
    this.cur.push(nal);
    this.curTypes.push(t);
    this.curBytes += nal.length + 4;
    if (vcl) this.curVcl = true;
  }

  private emit(out: AccessUnit[]): void {
    const hadVcl = this.curVcl;
    if (!hadVcl || this.discarding) {
      // Parameter sets with no picture (end of stream) or the rest of a dropped AU.
      this.resetAu(false);
      return;
    }
    const key = this.curTypes.includes(NAL.IDR);
    const parts: Buffer[] = [];
    if (key && this.repeat) {
      const hasSps = this.curTypes.includes(NAL.SPS);
      const hasPps = this.curTypes.includes(NAL.PPS);
      if ((!hasSps || !hasPps) && this.lastSps && this.lastPps) {
        if (!hasSps) parts.push(START4, this.lastSps);
        if (!hasPps) parts.push(START4, this.lastPps);
        this.paramSetsInserted++;
      }
    }
    for (const n of this.cur) parts.push(START4, n);
    out.push({ data: Buffer.concat(parts), key, types: this.curTypes });
    this.aus++;
    if (key) this.keyframes++;
    this.resetAu(false);
  }

  private resetAu(discard: boolean): void {
    this.cur = [];
    this.curTypes = [];
    this.curBytes = 0;
    this.curVcl = false;
    this.discarding = discard;
  }
}

function nonZeroPrefix(buf: Buffer, end: number): number {
  let n = 0;
  for (let i = 0; i < end; i++) if (buf[i] !== 0) n++;
  return n;
}
