// Pelco-D PTZ head over a serial line (RS-485 adapter). Thin shell: framing is in pelco-d.ts,
// the port (reopen, bounded queue, stale-motion dropping) in drivers/serial/port.ts.

import { EdgeError, type DriverStats } from '../../runtime/engine/api.js';
import { LinkMonitor, type LinkEvent, type LinkSnapshot } from '../link/link-state.js';
import { SerialLink, linkReason, type SerialLinkOptions } from '../serial/port.js';
import {
  PelcoDDecoder,
  decodeCommand,
  encodeMove,
  encodePreset,
  encodeQuery,
  encodeStop,
  type PelcoQuery,
} from './pelco-d.js';
import { isZeroVelocity, type PtzCapabilities, type PtzDriver, type PtzPreset, type PtzStatus, type PtzVelocity } from './types.js';

export interface PelcoDOptions {
  name: string;
  path: string;
  baudRate: number;
  address: number;
  /** Ask the head for its position (0x51/0x53/0x55); many heads do not answer. */
  queryPosition?: boolean;
  /** Known presets (Pelco-D cannot list them). */
  presets?: PtzPreset[];
  /** Wait for a query answer at most this long. */
  queryTimeoutMs?: number;
  serial?: Partial<SerialLinkOptions>;
}

export class PelcoDDriver implements PtzDriver {
  readonly kind = 'pelco-d' as const;
  readonly name: string;
  private readonly link: SerialLink;
  private readonly address: number;
  private readonly decoder = new PelcoDDecoder();
  private readonly known = new Map<string, string>();
  private readonly linkState: LinkMonitor;
  private readonly waiters = new Map<PelcoQuery, Array<(v: number) => void>>();
  private moving = false;
  private readonly c = { moves: 0, stops: 0, presetCalls: 0, presetSets: 0, queries: 0, queryTimeouts: 0, refusedLinkDown: 0 };

  constructor(private readonly o: PelcoDOptions) {
    this.name = o.name;
    this.address = o.address;
    encodeStop(o.address); // validates the address at construction
    for (const p of o.presets ?? []) this.known.set(p.id, p.name);
    this.link = new SerialLink({ presenceCheckMs: 1000, ...o.serial, path: o.path, baudRate: o.baudRate });
    this.linkState = new LinkMonitor({ up: false, reason: `serial port ${o.path} not open yet` });
    this.link.onOpen(() => {
      // First bytes after every (re)open: Stop. Whatever the head did while we were away, it halts.
      this.link.write(encodeStop(this.address), { key: 'motion' });
      this.moving = false;
      this.linkState.markUp(true);
    });
    this.link.onClose((e) => this.linkState.markDown(`serial port ${o.path} lost: ${linkReason(e)}`));
    this.link.onOpenFailure((e) => this.linkState.markDown(`serial port ${o.path} cannot be opened: ${linkReason(e)}`));
    this.link.onData((b) => {
      for (const f of this.decoder.push(b)) {
        const cmd = decodeCommand(f);
        if (cmd.type === 'response' && f.address === this.address) {
          const w = this.waiters.get(cmd.what);
          this.waiters.delete(cmd.what);
          for (const r of w ?? []) r(cmd.value);
        }
      }
    });
    this.link.start();
  }

  capabilities(): PtzCapabilities {
    return { continuous: true, absolute: false, relative: false, zoom: true, presets: true, status: this.o.queryPosition ?? false };
  }

  linkStatus(): LinkSnapshot {
    return this.linkState.snapshot();
  }

  onLinkChange(cb: (e: LinkEvent) => void): void {
    this.linkState.on(cb);
  }

  private send(frame: Buffer, key?: string): void {
    if (!this.link.write(frame, key ? { key } : {})) {
      this.c.refusedLinkDown++;
      throw new EdgeError('PTZ_LINK_DOWN', `serial port not open`, { camera: this.name, path: this.link.path });
    }
  }

  async move(v: PtzVelocity): Promise<void> {
    if (isZeroVelocity(v)) return this.stop();
    this.send(encodeMove(this.address, v), 'motion');
    this.c.moves++;
    this.moving = true;
  }

  async stop(): Promise<void> {
    this.send(encodeStop(this.address), 'motion');
    this.c.stops++;
    this.moving = false;
  }

  private presetNumber(id: string): number {
    const n = Number(id);
    if (!/^\d{1,3}$/.test(id) || n < 1 || n > 255) {
      throw new EdgeError('PTZ_BAD_PRESET', `Pelco-D presets are 1..255, got ${id.slice(0, 20)}`, { camera: this.name });
    }
    return n;
  }

  async gotoPreset(id: string): Promise<void> {
    this.send(encodePreset(this.address, 'goto', this.presetNumber(id)), 'motion');
    this.c.presetCalls++;
    this.moving = false;
  }

  async setPreset(id: string, name?: string): Promise<void> {
    this.send(encodePreset(this.address, 'set', this.presetNumber(id)));
    this.known.set(id, name ?? this.known.get(id) ?? `preset ${id}`);
    this.c.presetSets++;
  }

  async presets(): Promise<PtzPreset[]> {
    return [...this.known].map(([id, name]) => ({ id, name })).sort((a, b) => Number(a.id) - Number(b.id));
  }

  private query(what: PelcoQuery): Promise<number> {
    const timeoutMs = this.o.queryTimeoutMs ?? 300;
    return new Promise((resolve, reject) => {
      const list = this.waiters.get(what) ?? [];
      if (list.length >= 4) {
        reject(new EdgeError('PTZ_BUSY', 'too many status queries in flight', { camera: this.name }));
        return;
      }
      const t = setTimeout(() => {
        const l = this.waiters.get(what);
        if (l) {
          const i = l.indexOf(done);
          if (i >= 0) l.splice(i, 1);
        }
        this.c.queryTimeouts++;
        reject(new EdgeError('PTZ_TIMEOUT', `no answer to ${what} query in ${timeoutMs} ms`, { camera: this.name }));
      }, timeoutMs);
      const done = (v: number) => {
        clearTimeout(t);
        resolve(v);
      };
      list.push(done);
      this.waiters.set(what, list);
      try {
        this.send(encodeQuery(this.address, what));
        this.c.queries++;
      } catch (e) {
        clearTimeout(t);
        list.splice(list.indexOf(done), 1);
        reject(e);
      }
    });
  }

  async status(): Promise<PtzStatus> {
    const online = this.link.isOpen;
    if (!this.o.queryPosition || !online) return { online, moving: this.moving };
    const pan = await this.query('pan');
    const tilt = await this.query('tilt');
    const zoom = await this.query('zoom');
    // Pan 0..35999 (1/100°) → -1..1 around 180°; tilt as signed 1/100° → /9000; zoom raw /65535.
    return {
      online,
      moving: this.moving,
      position: { pan: pan / 18000 - 1, tilt: (tilt > 0x7fff ? tilt - 0x10000 : tilt) / 9000, zoom: zoom / 0xffff },
      detail: { panCentiDeg: pan, tiltRaw: tilt, zoomRaw: zoom },
    };
  }

  stats(): DriverStats {
    return {
      kind: this.kind,
      ...this.c,
      decodedFrames: this.decoder.counters.frames,
      badChecksum: this.decoder.counters.badChecksum,
      ...this.link.actuatorStats(),
    };
  }

  async close(): Promise<void> {
    if (this.link.isOpen) this.link.write(encodeStop(this.address), { key: 'motion' });
    await this.link.close();
  }
}
