// RTMP server handshake (the "simple" handshake of RTMP 1.0 §5.2). Pure: bytes in, bytes out.
// C0+C1 → S0+S1+S2; then C2 completes it. S1 carries version 0 so clients (ffmpeg, librtmp, OBS)
// do not expect the Flash digest scheme; ffmpeg validates a server digest only when playing.

export const HANDSHAKE_SIZE = 1536;
export const RTMP_VERSION = 3;

export class HandshakeError extends Error {
  readonly code = 'RTMP_HANDSHAKE_FAILED';
  constructor(message: string) {
    super(`RTMP_HANDSHAKE_FAILED: ${message}`);
    this.name = 'HandshakeError';
  }
}

export type HandshakeStep =
  | { state: 'need-more' }
  | { state: 'reply'; send: Buffer; rest: Buffer }
  | { state: 'done'; rest: Buffer };

/** Server side of the handshake. Holds at most 1 + 2·1536 bytes. */
export class ServerHandshake {
  private buf: Buffer = Buffer.alloc(0);
  private phase: 'c0c1' | 'c2' | 'done' = 'c0c1';

  constructor(private readonly random: (n: number) => Buffer, private readonly nowMs: () => number) {}

  get done(): boolean {
    return this.phase === 'done';
  }

  /** Feed bytes. 'reply' asks the caller to send S0+S1+S2; 'done' hands over the bytes after C2. */
  push(input: Buffer): HandshakeStep {
    if (this.phase === 'done') return { state: 'done', rest: input };
    this.buf = this.buf.length ? Buffer.concat([this.buf, input]) : input;
    if (this.phase === 'c0c1') {
      if (this.buf.length < 1) return { state: 'need-more' };
      const version = this.buf[0]!;
      // 6 = RTMPE (encrypted), others are not RTMP at all (an HTTP request, a port scan…).
      if (version !== RTMP_VERSION) throw new HandshakeError(`client version ${version}, only ${RTMP_VERSION} is served`);
      if (this.buf.length < 1 + HANDSHAKE_SIZE) return { state: 'need-more' };
      const c1 = this.buf.subarray(1, 1 + HANDSHAKE_SIZE);
      const s1 = Buffer.alloc(HANDSHAKE_SIZE);
      s1.writeUInt32BE(this.nowMs() >>> 0, 0); // time; bytes 4..7 stay zero (version 0: simple scheme)
      this.random(HANDSHAKE_SIZE - 8).copy(s1, 8);
      const s2 = Buffer.from(c1); // S2 echoes C1
      s2.writeUInt32BE(this.nowMs() >>> 0, 4); // time2: when C1 was read
      const rest = this.buf.subarray(1 + HANDSHAKE_SIZE);
      this.buf = Buffer.alloc(0);
      this.phase = 'c2';
      const send = Buffer.concat([Buffer.from([RTMP_VERSION]), s1, s2]);
      // A client may already have sent C2 (some pipeline C2 with the first command).
      if (rest.length === 0) return { state: 'reply', send, rest };
      const next = this.push(rest);
      if (next.state === 'done') return { state: 'reply', send, rest: next.rest };
      return { state: 'reply', send, rest: Buffer.alloc(0) };
    }
    if (this.buf.length < HANDSHAKE_SIZE) return { state: 'need-more' };
    // C2 should echo S1; clients in the field do not always do it right, and it proves nothing
    // about the stream key, so it is not checked (as nginx-rtmp and MediaMTX).
    const rest = this.buf.subarray(HANDSHAKE_SIZE);
    this.buf = Buffer.alloc(0);
    this.phase = 'done';
    return { state: 'done', rest };
  }
}

/** Client side, for tests and the benchmark: C0+C1, then C2 from S1. */
export function clientC0C1(random: (n: number) => Buffer): Buffer {
  const c1 = Buffer.alloc(HANDSHAKE_SIZE);
  random(HANDSHAKE_SIZE - 8).copy(c1, 8);
  return Buffer.concat([Buffer.from([RTMP_VERSION]), c1]);
}
