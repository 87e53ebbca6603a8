// Which of the bytes a WebSocket client sent has the peer's TCP stack acknowledged (issue 14)?
// Pure: the caller feeds samples of its own counters and of the kernel's (runtime/egress/tcp-probe.ts)
// and gets back the acknowledged offset in its own byte stream ("wire offset": the WebSocket bytes
// it handed to ws, framing included). A record is delivered once its last byte is at or below it.
//
// Plain TCP (ws://): the WebSocket bytes are the TCP stream. With the kernel's cumulative
// bytesAcked (TCP_INFO), acked = bytesAcked − (kernel bytes written when the session opened).
// Without it (procfs), acked = (wireOut − bufferedAmount) − outq, where wireOut − bufferedAmount
// is what reached the kernel and outq (SIOCOUTQ / tx_queue) what it still holds unacknowledged.
// Only samples of an ESTABLISHED connection count: a reset purges the send queue, and an empty
// queue then means discarded, not acknowledged.
// TLS (wss://): the kernel carries records with their own overhead, so offsets do not line up.
// Whenever ws holds nothing (bufferedAmount 0), every WebSocket byte so far is in the kernel: that
// moment anchors (wire offset, kernel bytes written = bytesAcked + outq). An anchor's wire offset is
// acknowledged once bytesAcked reaches its kernel offset. Without bytesAcked (the procfs fallback)
// only an empty kernel queue with nothing buffered proves anything: everything sent is acked.
// Never over-counts; under continuous backlog on TLS it lags (records wait for the next anchor).

export interface AckSample {
  /** The connection is ESTABLISHED (samples of any other state are ignored). */
  established: boolean;
  /** WebSocket bytes handed to ws so far this session (framing included). */
  wireOut: number;
  /** ws.bufferedAmount now. */
  buffered: number;
  /** Kernel bytes not yet acknowledged (SIOCOUTQ / tx_queue). */
  outq: number;
  /** Cumulative kernel bytes acknowledged, or null when unknown. */
  bytesAcked: number | null;
}

/** Anchors kept (TLS): 64 × one per tick at 4 Hz is 16 s of backlog history; older ones are merged away. */
const MAX_ANCHORS = 64;

export class AckTracker {
  private acked = 0;
  /** Kernel bytes written (bytesAcked + outq) when the session opened: wire offset 0. */
  private base: number | null = null;
  private anchors: Array<{ wire: number; kernel: number }> = [];
  /** Samples that contradicted the counters (kernel going backwards): ignored, counted. */
  rejected = 0;

  /** @param exact true when the WebSocket bytes are the TCP stream itself (no TLS). */
  constructor(readonly exact: boolean) {}

  /** The acknowledged wire offset so far (monotone). */
  get ackedWire(): number {
    return this.acked;
  }

  /**
   * The session opened: the kernel has `bytesAcked + outq` bytes of this connection (handshake,
   * upgrade request) before wire offset 0. Call with the first sample after 'open'.
   */
  open(s: Pick<AckSample, 'established' | 'outq' | 'bytesAcked'> | null): void {
    this.acked = 0;
    this.anchors.length = 0;
    this.base = s && s.established && s.bytesAcked !== null && s.bytesAcked >= 0 && s.outq >= 0 ? s.bytesAcked + s.outq : null;
  }

  observe(s: AckSample): number {
    if (!s.established) return this.acked;
    if (!(s.wireOut >= 0) || !(s.buffered >= 0) || !(s.outq >= 0) || s.buffered > s.wireOut) {
      this.rejected++;
      return this.acked;
    }
    if (this.exact) {
      const written = s.wireOut - s.buffered;
      let a = s.bytesAcked !== null && this.base !== null ? s.bytesAcked - this.base : written - s.outq;
      if (a > written) a = written; // never beyond what reached the kernel
      if (a > this.acked) this.acked = a;
      return this.acked;
    }
    if (s.buffered === 0 && s.outq === 0) {
      // Nothing anywhere between us and the peer's TCP: all of it is acknowledged.
      if (s.wireOut > this.acked) this.acked = s.wireOut;
      this.anchors.length = 0;
      return this.acked;
    }
    if (s.bytesAcked === null || !(s.bytesAcked >= 0)) return this.acked;
    if (s.buffered === 0) {
      const kernel = s.bytesAcked + s.outq;
      const last = this.anchors[this.anchors.length - 1];
      if (!last || s.wireOut > last.wire) {
        if (last && kernel < last.kernel) this.rejected++;
        else {
          if (this.anchors.length >= MAX_ANCHORS) this.anchors.splice(0, this.anchors.length - MAX_ANCHORS + 1);
          this.anchors.push({ wire: s.wireOut, kernel });
        }
      }
    }
    let i = 0;
    while (i < this.anchors.length && this.anchors[i]!.kernel <= s.bytesAcked) {
      if (this.anchors[i]!.wire > this.acked) this.acked = this.anchors[i]!.wire;
      i++;
    }
    if (i > 0) this.anchors.splice(0, i);
    return this.acked;
  }

  /** A new session starts at wire offset 0 (no base: procfs arithmetic until open()). */
  reset(): void {
    this.acked = 0;
    this.base = null;
    this.anchors.length = 0;
  }
}
