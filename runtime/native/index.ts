// Loader for moth-native (runtime/native/*.c, binding.gyp at the package root): SRTP protect +
// one sendmmsg() per RTP access unit for the WHIP/WHEP direct RTP path (issue 4), and the TCP
// send-side truth of an upstream link — TCP_INFO, SIOCOUTQ, socket options (issue 14).
// node-gyp-build finds build/Release when built on this machine, else
// prebuilds/<platform>-<arch>/ — the layout the arm64 bundle ships (board/bundle/build.ts).
// The addon is optional at run time: when it is missing or fails to load, nativeSrtp() returns
// null, the reason is kept for stats, and callers use their JavaScript path.

import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EdgeError } from '../engine/api.js';

/** werift's SRTP protection profile ids (rtp/src/srtp/const). */
export const SRTP_PROFILE = { AES_CM_128_HMAC_SHA1_80: 1, AEAD_AES_128_GCM: 7 } as const;
export type SrtpProfileId = (typeof SRTP_PROFILE)[keyof typeof SRTP_PROFILE];

declare const contextBrand: unique symbol;
/** An SRTP sending context held by the addon (keys copied into native memory, freed by GC). */
export type NativeSrtpContext = { readonly [contextBrand]: true };

interface Binding {
  createContext(profile: number, key: Buffer, salt: Buffer, authKey: Buffer | null): NativeSrtpContext;
  protect(ctx: NativeSrtpContext, pt: number, seq: number, timestamp: number, ssrc: number, roc: number, marker: boolean, payload: Buffer): Buffer;
  sendAu(ctx: NativeSrtpContext, fd: number, addr: string, port: number, pt: number, firstSeq: number, timestamp: number, ssrc: number, roc: number, payloads: readonly Buffer[]): number;
  sendAnnexB(ctx: NativeSrtpContext, fd: number, addr: string, port: number, pt: number, firstSeq: number, timestamp: number, ssrc: number, roc: number, au: Buffer, mtu: number, plan: Uint32Array): number;
  packetize(au: Buffer, mtu: number, plan: Uint32Array): number;
  tcpInfo(fd: number, out: Float64Array): boolean;
  setTcpOption(fd: number, opt: number, value: number): number;
}

/**
 * Where sendAnnexB/packetize put an access unit's packets: [packets, payload bytes, then per
 * packet: offset in the AU, length, FU indicator << 8 | FU header (0: a single NAL unit)].
 */
export const PLAN = { HEAD: 2, STRIDE: 3, MAX_PACKETS: 4096 } as const;

/** A plan big enough for any access unit the addon accepts (4096 packets). */
export function newPlan(): Uint32Array {
  return new Uint32Array(PLAN.HEAD + PLAN.STRIDE * PLAN.MAX_PACKETS);
}

/** Typed wrapper: every addon failure surfaces as an EdgeError with the addon's code. */
export class NativeSrtp {
  constructor(private readonly b: Binding) {}

  createContext(profile: number, key: Buffer, salt: Buffer, authKey: Buffer | null): NativeSrtpContext {
    return this.call(() => this.b.createContext(profile, key, salt, authKey));
  }

  /** One SRTP packet (header, protected payload, tag): the same bytes sendAu puts on the wire. */
  protect(ctx: NativeSrtpContext, h: { payloadType: number; sequenceNumber: number; timestamp: number; ssrc: number; marker: boolean }, roc: number, payload: Buffer): Buffer {
    return this.call(() => this.b.protect(ctx, h.payloadType, h.sequenceNumber, h.timestamp >>> 0, h.ssrc >>> 0, roc >>> 0, h.marker, payload));
  }

  /**
   * Protect and send one access unit (marker on the last packet) with sendmmsg() on `fd`;
   * returns the packets that went (fewer when the socket buffer is full: the rest are dropped).
   */
  sendAu(ctx: NativeSrtpContext, fd: number, addr: string, port: number, pt: number, firstSeq: number, timestamp: number, ssrc: number, roc: number, payloads: readonly Buffer[]): number {
    return this.call(() => this.b.sendAu(ctx, fd, addr, port, pt, firstSeq, timestamp >>> 0, ssrc >>> 0, roc >>> 0, payloads));
  }

  /**
   * Packetize one Annex-B access unit as packetizeH264 (runtime/egress/h264-rtp.ts) does, then
   * protect and send it like sendAu; `plan` receives the packets (see PLAN). Returns packets sent.
   */
  sendAnnexB(ctx: NativeSrtpContext, fd: number, addr: string, port: number, pt: number, firstSeq: number, timestamp: number, ssrc: number, roc: number, au: Buffer, mtu: number, plan: Uint32Array): number {
    return this.call(() => this.b.sendAnnexB(ctx, fd, addr, port, pt, firstSeq, timestamp >>> 0, ssrc >>> 0, roc >>> 0, au, mtu, plan));
  }

  /** Only the plan of sendAnnexB (tests compare it with packetizeH264); returns the packet count. */
  packetize(au: Buffer, mtu: number, plan: Uint32Array): number {
    return this.call(() => this.b.packetize(au, mtu, plan));
  }

  private call<T>(f: () => T): T {
    return callNative(f);
  }
}

let binding: Partial<Binding> | null | undefined;
let loaded: NativeSrtp | null | undefined;
let loadError: string | null = null;

/** The package root: the nearest directory up from here whose package.json is moth-edge's. */
function packageRoot(): string | null {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pj = join(dir, 'package.json');
    if (existsSync(pj)) {
      try {
        if ((JSON.parse(readFileSync(pj, 'utf8')) as { name?: string }).name === 'moth-edge') return dir;
      } catch {
        // an unreadable package.json is not ours: keep walking up
      }
    }
    const up = dirname(dir);
    if (up === dir) return null;
    dir = up;
  }
}

/** The addon's raw exports once (null when disabled, not built or failing to load). */
function loadBinding(): Partial<Binding> | null {
  if (binding !== undefined) return binding;
  binding = null;
  if (process.env.MOTH_NATIVE === '0') {
    loadError = 'disabled by MOTH_NATIVE=0';
    return null;
  }
  try {
    const root = packageRoot();
    if (!root) throw new Error('moth-edge package root not found');
    const require = createRequire(import.meta.url);
    const gypBuild = require('node-gyp-build') as (dir: string) => unknown;
    binding = gypBuild(root) as Partial<Binding>;
  } catch (e) {
    loadError = (e as Error).message.split('\n')[0] ?? 'load failed';
  }
  return binding;
}

/** The addon, or null when it is not built for this platform or fails to load (see nativeSrtpError). */
export function nativeSrtp(): NativeSrtp | null {
  if (loaded !== undefined) return loaded;
  loaded = null;
  const b = loadBinding();
  if (!b) return null;
  if (typeof b.createContext !== 'function' || typeof b.protect !== 'function' || typeof b.sendAu !== 'function' || typeof b.sendAnnexB !== 'function' || typeof b.packetize !== 'function') {
    loadError = 'addon lacks createContext/protect/sendAu/sendAnnexB/packetize (rebuild it: npm rebuild moth-edge, or node-gyp rebuild)';
    return null;
  }
  loaded = new NativeSrtp(b as Binding);
  return loaded;
}

/** Fields of tcpInfo()'s output (runtime/native/tcp_link.c). */
export const TCP_INFO = {
  STATE: 0,
  RTT_US: 1,
  RTTVAR_US: 2,
  UNACKED_SEGS: 3,
  BYTES_ACKED: 4,
  NOTSENT_BYTES: 5,
  OUTQ_BYTES: 6,
  LAST_ACK_RECV_MS: 7,
  RETRANSMITS: 8,
  SND_CWND: 9,
  TOTAL_RETRANS: 10,
  PROBES: 11,
  BACKOFF: 12,
  BYTES_SENT: 13,
  DELIVERY_RATE: 14,
  SND_MSS: 15,
  FIELDS: 16,
} as const;

/** setTcpOption()'s option ids. */
export const TCP_OPT = { NOTSENT_LOWAT: 1, SNDBUF: 2, USER_TIMEOUT: 3, KEEPALIVE: 4, KEEPIDLE: 5, KEEPINTVL: 6, KEEPCNT: 7, RCVBUF: 8 } as const;
export type TcpOptId = (typeof TCP_OPT)[keyof typeof TCP_OPT];

/** TCP send-side truth of one socket (typed errors, like NativeSrtp). */
export class NativeTcp {
  constructor(private readonly b: Pick<Binding, 'tcpInfo' | 'setTcpOption'>) {}

  /** Fills `out` (TCP_INFO.FIELDS entries); false when fd is not a TCP socket. */
  tcpInfo(fd: number, out: Float64Array): boolean {
    return callNative(() => this.b.tcpInfo(fd, out));
  }

  /** Sets a socket option and returns what the kernel reports back (SO_SNDBUF comes back doubled). */
  setTcpOption(fd: number, opt: TcpOptId, value: number): number {
    return callNative(() => this.b.setTcpOption(fd, opt, value));
  }
}

let tcp: NativeTcp | null | undefined;

/** The TCP half of the addon, or null (missing, disabled, or an addon built before issue 14). */
export function nativeTcp(): NativeTcp | null {
  if (tcp !== undefined) return tcp;
  const b = loadBinding();
  tcp = b && typeof b.tcpInfo === 'function' && typeof b.setTcpOption === 'function' ? new NativeTcp(b as Binding) : null;
  if (b && !tcp) loadError ??= 'addon lacks tcpInfo/setTcpOption (rebuild it)';
  return tcp;
}

function callNative<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && code.startsWith('NATIVE_')) throw new EdgeError(code, (e as Error).message, {}, { cause: e });
    throw e;
  }
}

/** Why nativeSrtp()/nativeTcp() returned null (null when it loaded or was not tried yet). */
export function nativeSrtpError(): string | null {
  return loadError;
}
