/**
 * The process-wide memory ceiling for every buffered frame (GOP caches + consumer queues).
 * A frame counts once however many queues hold it. When a publish would cross the ceiling the
 * engine sheds the biggest backlogs first (the slowest consumer pays, not the publisher).
 */
export class MemoryBudget {
  used = 0;
  peak = 0;
  shedEvents = 0;
  shedBytes = 0;

  constructor(readonly ceiling: number) {
    if (!(ceiling > 0)) throw new RangeError(`memory ceiling must be > 0 bytes, got ${ceiling}`);
  }

  add(n: number): void {
    this.used += n;
    if (this.used > this.peak) this.peak = this.used;
  }

  remove(n: number): void {
    this.used -= n;
  }

  wouldExceed(n: number): boolean {
    return this.used + n > this.ceiling;
  }

  stats() {
    return {
      ceilingBytes: this.ceiling,
      usedBytes: this.used,
      peakBytes: this.peak,
      shedEvents: this.shedEvents,
      shedBytes: this.shedBytes,
    };
  }
}
