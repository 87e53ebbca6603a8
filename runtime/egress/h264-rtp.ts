// Pure H.264 ⇄ RTP (RFC 6184) pieces for WHIP/WHEP: Annex-B NAL iteration, packetization
// (single NAL / FU-A), depacketization into Annex-B access units, SPS → profile-level-id,
// and parameter-set caching so every IDR goes out with SPS/PPS in front. No I/O.
import { EdgeError } from '../engine/api.js';
import { nalUnits } from '../engine/h264.js';

export const NAL = { SLICE: 1, IDR: 5, SEI: 6, SPS: 7, PPS: 8, AUD: 9, STAP_A: 24, FU_A: 28 } as const;

const START4 = Buffer.from([0, 0, 0, 1]);
const START3 = Buffer.from([0, 0, 1]);

/** NAL units of an Annex-B buffer (start codes stripped); a buffer without start code is one raw NAL. */
export function splitAnnexB(buf: Buffer): Buffer[] {
  const nals = nalUnits(buf);
  return nals.length === 0 && buf.length > 0 && buf.indexOf(START3) < 0 ? [buf] : nals;
}

export function nalType(nal: Buffer): number {
  return nal.length > 0 ? nal[0]! & 0x1f : -1;
}

export function joinAnnexB(nals: readonly Buffer[]): Buffer {
  const parts: Buffer[] = [];
  for (const nal of nals) parts.push(START4, nal);
  return Buffer.concat(parts);
}

/** True when the access unit holds an IDR slice. */
export function isIdr(au: Buffer): boolean {
  return splitAnnexB(au).some((n) => nalType(n) === NAL.IDR);
}

/** `avc1.PPCCLL` style hex of an SPS: profile_idc, constraint flags, level_idc. */
export function profileLevelIdFromSps(sps: Buffer): string | undefined {
  if (sps.length < 4 || nalType(sps) !== NAL.SPS) return undefined;
  return sps.subarray(1, 4).toString('hex');
}

/**
 * Remembers the latest SPS/PPS of a stream and puts them in front of any IDR that lacks them
 * (pang-protocol.md: SPS/PPS in front of every IDR; a browser cannot start without them).
 */
export class ParamSetCache {
  sps: Buffer | undefined;
  pps: Buffer | undefined;
  /** IDRs that had to get parameter sets prepended (for stats). */
  prepended = 0;

  /** Learn from `au` and return it, with SPS/PPS prepended to an IDR that had none. */
  apply(au: Buffer): Buffer {
    const nals = splitAnnexB(au);
    let hasSps = false;
    let hasPps = false;
    let idr = false;
    for (const n of nals) {
      const t = nalType(n);
      if (t === NAL.SPS) {
        hasSps = true;
        this.sps = Buffer.from(n);
      } else if (t === NAL.PPS) {
        hasPps = true;
        this.pps = Buffer.from(n);
      } else if (t === NAL.IDR) idr = true;
    }
    if (!idr || (hasSps && hasPps) || !this.sps || !this.pps) return au;
    this.prepended++;
    const front: Buffer[] = [];
    if (!hasSps) front.push(this.sps);
    if (!hasPps) front.push(this.pps);
    return Buffer.concat([joinAnnexB(front), au]);
  }

  profileLevelId(): string | undefined {
    return this.sps ? profileLevelIdFromSps(this.sps) : undefined;
  }
}

/**
 * Split one access unit into RTP payloads of at most `mtu` bytes: a NAL that fits goes alone,
 * a larger one as FU-A fragments. AUD and filler are dropped (RFC 6184 §5.3 allows it and
 * browsers ignore them). The last payload of the AU carries the RTP marker bit.
 */
export function packetizeH264(au: Buffer, mtu = 1200): Buffer[] {
  if (mtu < 16) throw new RangeError('mtu too small');
  const out: Buffer[] = [];
  const nals = splitAnnexB(au);
  // One allocation per access unit for every FU-A fragment (2 header bytes each + the NAL bytes):
  // per-packet buffers were most of the egress garbage (issue 4 CPU target). Payloads are
  // read-only views; a NAL that fits goes out as a view of the AU itself.
  const chunk = mtu - 2;
  let fuBytes = 0;
  for (const nal of nals) if (nal.length > mtu) fuBytes += nal.length - 1 + 2 * Math.ceil((nal.length - 1) / chunk);
  const fu = fuBytes > 0 ? Buffer.allocUnsafe(fuBytes) : null;
  let w = 0;
  for (const nal of nals) {
    const t = nalType(nal);
    if (t === NAL.AUD || t === 12 || nal.length < 1) continue;
    if (nal.length <= mtu) {
      out.push(nal);
      continue;
    }
    const hdr = nal[0]!;
    const fuIndicator = (hdr & 0xe0) | NAL.FU_A;
    let off = 1;
    while (off < nal.length) {
      const end = Math.min(nal.length, off + chunk);
      const s = off === 1 ? 0x80 : 0;
      const e = end === nal.length ? 0x40 : 0;
      const start = w;
      fu![w++] = fuIndicator;
      fu![w++] = s | e | t;
      w += nal.copy(fu!, w, off, end);
      out.push(fu!.subarray(start, w));
      off = end;
    }
  }
  return out;
}

export interface DepacketizerStats {
  packets: number;
  accessUnits: number;
  /** Access units discarded because a packet was lost inside them. */
  lossDiscards: number;
  /** Payloads that were not valid RFC 6184 (typed error, counted, dropped). */
  malformed: number;
  /** Access units discarded for exceeding maxAuBytes. */
  oversize: number;
}

/**
 * RTP H.264 payloads → Annex-B access units, grouped by RTP timestamp and closed by the marker
 * bit (or by a new timestamp). A sequence gap drops the AU in progress and waits for the next
 * IDR, so downstream never sees a broken picture as a keyframe-less GOP continuation.
 */
export class H264Depacketizer {
  private nals: Buffer[] = [];
  private bytes = 0;
  private fu: Buffer[] | null = null;
  private ts: number | null = null;
  private lastSeq: number | null = null;
  private broken = false;
  private needIdr = true;
  readonly counters: DepacketizerStats = { packets: 0, accessUnits: 0, lossDiscards: 0, malformed: 0, oversize: 0 };

  /** @param maxAuBytes bound of one reassembled AU: a hostile stream cannot grow memory past it. */
  constructor(private readonly maxAuBytes = 4 * 1024 * 1024) {}

  /** Feed one packet; returns the completed access units (0, 1 or 2). */
  push(payload: Buffer, seq: number, timestamp: number, marker: boolean): Array<{ au: Buffer; key: boolean; timestamp: number }> {
    this.counters.packets++;
    const done: Array<{ au: Buffer; key: boolean; timestamp: number }> = [];
    const gap = this.lastSeq !== null && ((this.lastSeq + 1) & 0xffff) !== seq;
    // A gap at an AU boundary may have taken the previous AU's tail or this AU's head: drop both.
    if (gap) this.broken = true;
    if (this.ts !== null && timestamp !== this.ts) this.flush(done);
    if (gap) {
      this.broken = true;
      this.needIdr = true;
    }
    this.lastSeq = seq;
    this.ts = timestamp;
    try {
      this.take(payload);
    } catch (err) {
      if (!(err instanceof EdgeError)) throw err;
      this.counters.malformed++;
      this.broken = true;
    }
    if (marker) this.flush(done);
    return done;
  }

  private add(nal: Buffer): void {
    this.bytes += nal.length + 4;
    if (this.bytes > this.maxAuBytes) {
      this.counters.oversize++;
      this.broken = true;
      this.nals = [];
      return;
    }
    if (!this.broken) this.nals.push(nal);
  }

  private take(p: Buffer): void {
    if (p.length < 1) throw new EdgeError('RTP_H264_MALFORMED', 'empty payload');
    if ((p[0]! & 0x80) !== 0) throw new EdgeError('RTP_H264_MALFORMED', 'forbidden bit set');
    const t = p[0]! & 0x1f;
    if (t >= 1 && t <= 23) {
      this.add(p);
    } else if (t === NAL.STAP_A) {
      let off = 1;
      while (off < p.length) {
        if (off + 2 > p.length) throw new EdgeError('RTP_H264_MALFORMED', 'STAP-A truncated size');
        const size = p.readUInt16BE(off);
        off += 2;
        if (size === 0 || off + size > p.length) throw new EdgeError('RTP_H264_MALFORMED', 'STAP-A NAL overruns packet');
        this.add(p.subarray(off, off + size));
        off += size;
      }
    } else if (t === NAL.FU_A) {
      if (p.length < 3) throw new EdgeError('RTP_H264_MALFORMED', 'FU-A too short');
      const s = (p[1]! & 0x80) !== 0;
      const e = (p[1]! & 0x40) !== 0;
      if (s) {
        this.fu = [Buffer.from([(p[0]! & 0xe0) | (p[1]! & 0x1f)])];
      } else if (!this.fu) {
        this.broken = true; // its start packet was lost (or we joined mid-NAL): a loss, not malformed
        this.bytes += p.length;
        return;
      }
      this.fu.push(p.subarray(2));
      let fuBytes = 0;
      for (const b of this.fu) fuBytes += b.length;
      if (fuBytes > this.maxAuBytes) {
        this.fu = null;
        this.counters.oversize++;
        this.broken = true;
        return;
      }
      if (e) {
        this.add(Buffer.concat(this.fu));
        this.fu = null;
      }
    } else {
      throw new EdgeError('RTP_H264_MALFORMED', `unsupported NAL/packet type ${t}`);
    }
  }

  private flush(done: Array<{ au: Buffer; key: boolean; timestamp: number }>): void {
    const nals = this.nals;
    const ts = this.ts ?? 0;
    const broken = this.broken;
    const hadData = this.bytes > 0 || this.fu !== null;
    this.nals = [];
    this.bytes = 0;
    this.fu = null;
    this.ts = null;
    this.broken = false;
    if (!hadData) return;
    if (broken || nals.length === 0) {
      this.counters.lossDiscards++;
      return;
    }
    const key = nals.some((n) => nalType(n) === NAL.IDR);
    if (this.needIdr && !key) {
      this.counters.lossDiscards++;
      return;
    }
    this.needIdr = false;
    this.counters.accessUnits++;
    done.push({ au: joinAnnexB(nals), key, timestamp: ts });
  }
}
