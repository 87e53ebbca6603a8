// A streaming splitter for concatenated JPEG images (ffmpeg image2pipe, MJPEG cameras).
// It walks the marker segments by their lengths up to SOS, then scans the entropy-coded data
// for EOI (FF D9; FF 00 is a stuffed byte, FF D0–D7 are restart markers). Pure, bounded.

import { EdgeError } from '../../runtime/engine/api.js';

export class JpegSplitter {
  private buf: Buffer = Buffer.alloc(0);
  images = 0;
  junkBytes = 0;
  oversizedDrops = 0;

  /** maxImageBytes: a "JPEG" larger than this is garbage or hostile; it is dropped and counted. */
  constructor(private readonly maxImageBytes = 16 * 1024 * 1024) {}

  push(chunk: Buffer): Buffer[] {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const out: Buffer[] = [];
    for (;;) {
      const soi = this.findSoi();
      if (soi < 0) break;
      const end = this.findEnd(soi);
      if (end === -1) {
        if (this.buf.length - soi > this.maxImageBytes) {
          this.oversizedDrops++;
          this.buf = Buffer.alloc(0);
        } else if (soi > 0) {
          this.buf = Buffer.from(this.buf.subarray(soi));
        }
        break;
      }
      if (end === -2) {
        // Broken segment structure: skip this SOI and look for the next one.
        this.junkBytes += 2;
        this.buf = this.buf.subarray(soi + 2);
        continue;
      }
      out.push(Buffer.from(this.buf.subarray(soi, end)));
      this.images++;
      this.buf = this.buf.subarray(end);
    }
    if (this.buf.length && out.length) this.buf = Buffer.from(this.buf);
    return out;
  }

  private findSoi(): number {
    for (let i = 0; i + 2 < this.buf.length; i++) {
      if (this.buf[i] === 0xff && this.buf[i + 1] === 0xd8 && this.buf[i + 2] === 0xff) {
        this.junkBytes += i;
        return i;
      }
    }
    if (this.buf.length > 2) {
      this.junkBytes += this.buf.length - 2;
      this.buf = Buffer.from(this.buf.subarray(this.buf.length - 2));
    }
    return -1;
  }

  /** End offset (after EOI), -1 when incomplete, -2 when malformed. */
  private findEnd(soi: number): number {
    const b = this.buf;
    let i = soi + 2;
    for (;;) {
      if (i + 4 > b.length) return -1;
      if (b[i] !== 0xff) return -2;
      const m = b[i + 1]!;
      if (m === 0xff) {
        i++; // fill byte
        continue;
      }
      if (m === 0xd9) return i + 2;
      if (m >= 0xd0 && m <= 0xd7) {
        i += 2;
        continue;
      }
      const len = b.readUInt16BE(i + 2);
      if (len < 2) return -2;
      if (m === 0xda) {
        // Entropy-coded data until a marker that is not a stuffed byte or a restart marker.
        let j = i + 2 + len;
        for (;;) {
          if (j + 1 >= b.length) return -1;
          if (b[j] === 0xff) {
            const n = b[j + 1]!;
            if (n === 0x00 || (n >= 0xd0 && n <= 0xd7) || n === 0xff) {
              j += n === 0xff ? 1 : 2;
              continue;
            }
            if (n === 0xd9) return j + 2;
            // Another segment (a progressive JPEG's next scan): continue the walk there.
            i = j;
            break;
          }
          j++;
        }
        continue;
      }
      i += 2 + len;
    }
  }

  stats() {
    return { images: this.images, junkBytes: this.junkBytes, oversizedDrops: this.oversizedDrops };
  }
}

export class JpegError extends EdgeError {}
