import type {
  ConsumerHandle,
  ConsumerStats,
  DropReason,
  QueueItem,
  TrackKind,
  TrackRef,
} from './api.js';
import type { MemoryBudget } from './budget.js';

/**
 * A frame shared by every queue that holds it. Its bytes count once against the process memory
 * budget, from publish until the last queue (or the GOP cache) lets go of it.
 */
export class HeldFrame {
  refs = 0;
  constructor(
    readonly item: QueueItem,
    readonly size: number,
    private readonly budget: MemoryBudget,
  ) {
    budget.add(size);
  }
  retain(): void {
    this.refs++;
  }
  release(): void {
    if (--this.refs === 0) this.budget.remove(this.size);
  }
}

/** Fixed per-item overhead we charge on top of the payload (object headers, queue slot). */
export const ITEM_OVERHEAD = 96;

/** Hard cap on items per queue whatever their size: 30 fps × 10 s of tiny frames, or 2000 records. */
export const MAX_QUEUE_ITEMS = 2048;

const ZERO_DROPS = (): Record<DropReason, number> => ({
  'queue-full': 0,
  'gop-tail': 0,
  'stale-gop': 0,
  memory: 0,
  'text-overflow': 0,
});

/**
 * One consumer's bounded queue. Policy (conventions: "drops are whole units"):
 * - video: when a frame does not fit, drop it and every following non-key frame (the GOP tail),
 *   keep what is queued; when the next keyframe comes and still does not fit, the queued frames are
 *   stale: drop them and jump to live at that keyframe.
 * - data/audio/images: drop the oldest frames until the new one fits.
 * Text items (MIME, REXT) are tiny and ordered; they are kept through GOP drops and only the oldest
 * text is dropped when the item count cap is hit.
 */
export class Consumer implements ConsumerHandle {
  private readonly queue: HeldFrame[] = [];
  private head = 0;
  private bytes = 0;
  private peak = 0;
  private waitingKey: boolean;
  private itemsOut = 0;
  private bytesOut = 0;
  private droppedBytes = 0;
  private readonly dropped = ZERO_DROPS();
  private readableCbs: Array<() => void> = [];
  private closeCbs: Array<(reason: string) => void> = [];
  private waiters: Array<() => void> = [];
  private _closed = false;
  closeReason: string | undefined;

  constructor(
    readonly id: number,
    readonly ref: TrackRef,
    readonly label: string,
    readonly ceilingBytes: number,
    private kind: TrackKind,
    private readonly getMime: () => string | undefined,
    private readonly onDetach: (c: Consumer) => void,
    readonly selfOrigin: number | undefined,
    readonly texts: boolean,
  ) {
    // A video consumer never starts mid-GOP.
    this.waitingKey = kind === 'video';
  }

  get closed(): boolean {
    return this._closed;
  }

  mime(): string | undefined {
    return this.getMime();
  }

  setKind(kind: TrackKind): void {
    if (kind === this.kind) return;
    this.kind = kind;
    this.waitingKey = kind === 'video';
  }

  get queuedBytes(): number {
    return this.bytes;
  }

  get length(): number {
    return this.queue.length - this.head;
  }

  /** Called by the track for each published item. Never blocks, never throws. */
  push(h: HeldFrame): void {
    if (this._closed) return;
    const item = h.item;
    if (this.selfOrigin !== undefined && item.origin === this.selfOrigin) return;
    if (item.type === 'text') {
      if (!this.texts) return;
      if (this.length >= MAX_QUEUE_ITEMS) this.dropOldest('text', 'text-overflow');
      this.enqueue(h);
      return;
    }
    if (this.kind === 'video') {
      const key = item.frame.key;
      if (this.waitingKey && !key) {
        this.count('gop-tail', h.size);
        return;
      }
      if (this.bytes + h.size > this.ceilingBytes || this.length >= MAX_QUEUE_ITEMS) {
        if (key) {
          // The queued frames are older than this keyframe: drop them and come back to live.
          this.dropFrames('stale-gop');
          if (h.size > this.ceilingBytes) {
            this.waitingKey = true;
            this.count('queue-full', h.size);
            return;
          }
        } else {
          this.waitingKey = true;
          this.count('queue-full', h.size);
          return;
        }
      }
      this.waitingKey = false;
      this.enqueue(h);
      return;
    }
    if (h.size > this.ceilingBytes) {
      this.count('queue-full', h.size);
      return;
    }
    while (this.bytes + h.size > this.ceilingBytes || this.length >= MAX_QUEUE_ITEMS) {
      if (!this.dropOldest('frame', 'queue-full')) break;
    }
    this.enqueue(h);
  }

  /** Memory pressure: let go of every queued frame (video waits for the next keyframe). */
  shed(): number {
    const before = this.bytes;
    this.dropFrames('memory');
    if (this.kind === 'video') this.waitingKey = true;
    return before - this.bytes;
  }

  next(): QueueItem | undefined {
    if (this.head >= this.queue.length) return undefined;
    const h = this.queue[this.head]!;
    this.queue[this.head] = undefined as unknown as HeldFrame;
    this.head++;
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
    this.bytes -= h.size;
    this.itemsOut++;
    this.bytesOut += h.item.type === 'frame' ? h.item.frame.data.length : Buffer.byteLength(h.item.text);
    h.release();
    return h.item;
  }

  onReadable(cb: () => void): void {
    this.readableCbs.push(cb);
  }

  onClose(cb: (reason: string) => void): void {
    if (this._closed) {
      queueMicrotask(() => cb(this.closeReason ?? 'closed'));
      return;
    }
    this.closeCbs.push(cb);
  }

  wait(signal?: AbortSignal): Promise<void> {
    if (this.length > 0 || this._closed) return Promise.resolve();
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<void>((resolve, reject) => {
      const done = () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = () => {
        this.waiters = this.waiters.filter((w) => w !== done);
        reject(signal!.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(done);
    });
  }

  stats(): ConsumerStats {
    return {
      id: this.id,
      label: this.label,
      queuedItems: this.length,
      queuedBytes: this.bytes,
      ceilingBytes: this.ceilingBytes,
      peakBytes: this.peak,
      itemsOut: this.itemsOut,
      bytesOut: this.bytesOut,
      dropped: { ...this.dropped },
      droppedBytes: this.droppedBytes,
      waitingForKeyframe: this.waitingKey,
    };
  }

  /** Consumer side close: detach from the track, release the queue. Idempotent. */
  close(): void {
    this.terminate('closed by consumer');
  }

  /** Engine side close (publisher gone, track removed): tells the owner why. Idempotent. */
  terminate(reason: string): void {
    if (this._closed) return;
    this._closed = true;
    this.closeReason = reason;
    this.dropFrames(null);
    for (let i = this.head; i < this.queue.length; i++) this.queue[i]!.release();
    this.queue.length = 0;
    this.head = 0;
    this.bytes = 0;
    this.onDetach(this);
    const cbs = this.closeCbs;
    this.closeCbs = [];
    for (const cb of cbs) safeCall(() => cb(reason));
    this.wake();
  }

  private enqueue(h: HeldFrame): void {
    h.retain();
    const wasEmpty = this.length === 0;
    this.queue.push(h);
    this.bytes += h.size;
    if (this.bytes > this.peak) this.peak = this.bytes;
    if (wasEmpty) {
      for (const cb of this.readableCbs) safeCall(cb);
      this.wake();
    }
  }

  private wake(): void {
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) w();
  }

  private count(reason: DropReason, size: number): void {
    this.dropped[reason]++;
    this.droppedBytes += size;
  }

  /** Drop the oldest item of a type; returns false when there is none. */
  private dropOldest(type: 'frame' | 'text', reason: DropReason): boolean {
    for (let i = this.head; i < this.queue.length; i++) {
      const h = this.queue[i]!;
      if (h.item.type !== type) continue;
      this.queue.splice(i, 1);
      this.bytes -= h.size;
      this.count(reason, h.size);
      h.release();
      return true;
    }
    return false;
  }

  /** Drop every queued frame, keep texts in order. reason null: no counting (on close). */
  private dropFrames(reason: DropReason | null): void {
    if (this.length === 0) return;
    const kept: HeldFrame[] = [];
    for (let i = this.head; i < this.queue.length; i++) {
      const h = this.queue[i]!;
      if (h.item.type === 'text') {
        kept.push(h);
        continue;
      }
      this.bytes -= h.size;
      if (reason) this.count(reason, h.size);
      h.release();
    }
    this.queue.length = 0;
    this.head = 0;
    this.queue.push(...kept);
  }
}

function safeCall(fn: () => void): void {
  try {
    fn();
  } catch (err) {
    // A listener's throw must not kill the publisher (conventions: typed events).
    queueMicrotask(() => {
      process.emitWarning(`consumer listener threw: ${(err as Error)?.message ?? String(err)}`);
    });
  }
}
