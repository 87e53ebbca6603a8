// Streaming IVF demuxer (ffmpeg `-f ivf`: the VP8 transcoder's output). 32-byte file header,
// then per frame a 12-byte header (u32le size, u64le pts) and the frame. Pure and bounded.
import { EdgeError } from '../engine/api.js';

export class IvfError extends EdgeError {
  constructor(message: string) {
    super('IVF_MALFORMED', message);
    this.name = 'IvfError';
  }
}

export interface IvfFrame {
  data: Buffer;
  pts: number;
  /** VP8: bit 0 of the frame tag is 0 on a keyframe (RFC 6386 §9.1). */
  key: boolean;
}

export class IvfDemuxer {
  private buf: Buffer = Buffer.alloc(0);
  private headerDone = false;
  fourcc = '';
  frames = 0;

  /** maxFrameBytes: a size field beyond this is corrupt or hostile; it is refused, never allocated. */
  constructor(private readonly maxFrameBytes = 8 * 1024 * 1024) {}

  push(chunk: Buffer): IvfFrame[] {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const out: IvfFrame[] = [];
    if (!this.headerDone) {
      if (this.buf.length < 32) return out;
      if (this.buf.toString('latin1', 0, 4) !== 'DKIF') throw new IvfError('missing DKIF signature');
      const hdrLen = this.buf.readUInt16LE(6);
      if (hdrLen < 32 || hdrLen > 1024) throw new IvfError(`bad header length ${hdrLen}`);
      if (this.buf.length < hdrLen) return out;
      this.fourcc = this.buf.toString('latin1', 8, 12);
      this.buf = this.buf.subarray(hdrLen);
      this.headerDone = true;
    }
    while (this.buf.length >= 12) {
      const size = this.buf.readUInt32LE(0);
      if (size > this.maxFrameBytes) throw new IvfError(`frame size ${size} over ${this.maxFrameBytes}`);
      if (this.buf.length < 12 + size) break;
      const pts = Number(this.buf.readBigUInt64LE(4) & 0xffffffffffffn);
      const data = Buffer.from(this.buf.subarray(12, 12 + size));
      this.buf = this.buf.subarray(12 + size);
      this.frames++;
      out.push({ data, pts, key: size > 0 && (data[0]! & 1) === 0 });
    }
    return out;
  }
}
