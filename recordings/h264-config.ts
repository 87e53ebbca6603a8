// Just enough H.264 to build an MP4 track: find the SPS in an Annex-B access unit and read the
// codec string and picture size. Pure; hostile input gives null, never a throw.
// (recordings/ may import only the engine's public types, so this does not use drivers/camera/h264.ts.)

export interface AvcInfo {
  /** RFC 6381 codec string, e.g. avc1.64001f */
  codec: string;
  width: number;
  height: number;
}

/** NAL unit payloads (without start codes) of an Annex-B buffer. */
export function* annexBNals(buf: Uint8Array): Generator<Uint8Array> {
  const n = buf.length;
  let i = 0;
  let start = -1;
  while (i + 2 < n) {
    if (buf[i] === 0 && buf[i + 1] === 0 && buf[i + 2] === 1) {
      if (start >= 0) {
        let end = i;
        while (end > start && buf[end - 1] === 0) end--;
        if (end > start) yield buf.subarray(start, end);
      }
      i += 3;
      start = i;
    } else {
      i++;
    }
  }
  if (start >= 0 && start < n) yield buf.subarray(start, n);
}

/** True when the access unit holds an IDR slice (type 5). */
export function hasIdr(au: Uint8Array): boolean {
  for (const nal of annexBNals(au)) if ((nal[0]! & 0x1f) === 5) return true;
  return false;
}

/** True when the buffer holds at least one NAL unit that is a slice (1..5). */
export function hasSlice(au: Uint8Array): boolean {
  for (const nal of annexBNals(au)) {
    const t = nal[0]! & 0x1f;
    if (t >= 1 && t <= 5) return true;
  }
  return false;
}

function unescapeRbsp(nal: Uint8Array): Uint8Array {
  const out = new Uint8Array(nal.length);
  let o = 0;
  let zeros = 0;
  for (let i = 0; i < nal.length; i++) {
    const b = nal[i]!;
    if (zeros >= 2 && b === 3) {
      zeros = 0;
      continue;
    }
    zeros = b === 0 ? zeros + 1 : 0;
    out[o++] = b;
  }
  return out.subarray(0, o);
}

class Bits {
  private pos = 0;
  constructor(private readonly b: Uint8Array) {}
  bit(): number {
    if (this.pos >= this.b.length * 8) throw new RangeError('sps: out of bits');
    const v = (this.b[this.pos >> 3]! >> (7 - (this.pos & 7))) & 1;
    this.pos++;
    return v;
  }
  bits(n: number): number {
    let v = 0;
    for (let i = 0; i < n; i++) v = v * 2 + this.bit();
    return v;
  }
  ue(): number {
    let zeros = 0;
    while (this.bit() === 0) {
      if (++zeros > 31) throw new RangeError('sps: bad exp-golomb');
    }
    return 2 ** zeros - 1 + this.bits(zeros);
  }
  se(): number {
    const k = this.ue();
    return k % 2 === 1 ? (k + 1) / 2 : -k / 2;
  }
}

const HIGH_PROFILES = new Set([100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135]);

export function parseSps(nal: Uint8Array): AvcInfo | null {
  try {
    if ((nal[0]! & 0x1f) !== 7 || nal.length < 4) return null;
    const rb = unescapeRbsp(nal);
    const hex = (x: number) => x.toString(16).padStart(2, '0');
    const codec = `avc1.${hex(rb[1]!)}${hex(rb[2]!)}${hex(rb[3]!)}`;
    const r = new Bits(rb.subarray(4));
    const profile = rb[1]!;
    r.ue(); // seq_parameter_set_id
    let chroma = 1;
    if (HIGH_PROFILES.has(profile)) {
      chroma = r.ue();
      if (chroma === 3) r.bit();
      r.ue();
      r.ue();
      r.bit();
      if (r.bit()) {
        for (let i = 0; i < (chroma !== 3 ? 8 : 12); i++) {
          if (r.bit()) {
            const size = i < 6 ? 16 : 64;
            let last = 8;
            let next = 8;
            for (let j = 0; j < size; j++) {
              if (next !== 0) next = (last + r.se() + 256) % 256;
              last = next === 0 ? last : next;
            }
          }
        }
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
      if (n > 255) return null;
      for (let i = 0; i < n; i++) r.se();
    }
    r.ue(); // max_num_ref_frames
    r.bit();
    const wMbs = r.ue() + 1;
    const hMap = r.ue() + 1;
    const frameMbsOnly = r.bit();
    if (!frameMbsOnly) r.bit();
    r.bit();
    let cl = 0, cr = 0, ct = 0, cb = 0;
    if (r.bit()) {
      cl = r.ue();
      cr = r.ue();
      ct = r.ue();
      cb = r.ue();
    }
    const subW = chroma === 1 || chroma === 2 ? 2 : 1;
    const subH = chroma === 1 ? 2 : 1;
    const cropX = chroma === 0 ? 1 : subW;
    const cropY = (chroma === 0 ? 1 : subH) * (2 - frameMbsOnly);
    const width = wMbs * 16 - cropX * (cl + cr);
    const height = (2 - frameMbsOnly) * hMap * 16 - cropY * (ct + cb);
    if (!(width > 0 && height > 0 && width <= 16384 && height <= 16384)) return null;
    return { codec, width, height };
  } catch {
    return null; // truncated or hostile SPS: the caller counts a malformed frame
  }
}

/** The SPS info of an access unit, or null when it carries none (or a broken one). */
export function avcInfoOf(au: Uint8Array): AvcInfo | null {
  for (const nal of annexBNals(au)) if ((nal[0]! & 0x1f) === 7) return parseSps(nal);
  return null;
}
