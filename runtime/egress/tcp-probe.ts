// The send side of one upstream TCP connection as the kernel sees it (issue 14). Bytes that left
// ws.bufferedAmount are not delivered: they may wait in the kernel's send queue, or be in flight
// unacknowledged, and die there when the link is cut. A probe reads what the peer's TCP stack
// acknowledged — through moth-native (TCP_INFO + SIOCOUTQ), or without the addon from
// /proc/net/tcp's tx_queue (bytes written and not yet acknowledged: SIOCOUTQ's value) — and bounds
// what the kernel may hold unsent (TCP_NOTSENT_LOWAT, SO_SNDBUF), so that the backlog sits in
// bufferedAmount, where the sender sees it within a second.
import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { nativeTcp, TCP_INFO, TCP_OPT, type NativeTcp } from '../native/index.js';

export interface TcpSample {
  /**
   * The connection is ESTABLISHED. Anything else (reset, closing) makes outq meaningless: a reset
   * purges the send queue, so an empty queue then means "discarded", not "acknowledged".
   */
  established: boolean;
  /** Bytes written to the kernel and not yet acknowledged by the peer (in flight + unsent). */
  outq: number;
  /** Of those, bytes not yet sent at all (-1 unknown). */
  notsent: number;
  /** Cumulative bytes the peer acknowledged (tcpi_bytes_acked), or null when unknown (procfs). */
  bytesAcked: number | null;
  /** ms since the last ACK arrived (-1 unknown). */
  lastAckRecvMs: number;
  rttUs: number;
  retransmits: number;
  totalRetrans: number;
}

export interface TcpTuning {
  /** TCP_NOTSENT_LOWAT: unsent bytes the kernel holds beyond what is in flight. */
  notsentLowatBytes: number;
  /** SO_SNDBUF (in flight + unsent); null leaves the kernel's autotuning. */
  sndbufBytes: number | null;
  /** TCP_USER_TIMEOUT: the kernel aborts the connection when sent data stays unacknowledged this long. */
  userTimeoutMs: number;
  /** TCP keepalive probes (for links that mostly receive); null leaves them off. */
  keepalive: { idleSec: number; intervalSec: number; count: number } | null;
}

export type ProbeKind = 'native' | 'procfs' | 'none';

export interface TcpProbeStats {
  kind: ProbeKind;
  samples: number;
  failures: number;
  /** Options the kernel refused (name → count). */
  tuningRefused: Record<string, number>;
  /** What the kernel reports for SO_SNDBUF after tuning (it doubles what was asked), or null. */
  sndbufBytes: number | null;
  notsentLowatBytes: number | null;
  userTimeoutMs: number | null;
}

/** The kernel fd of a net.Socket or a tls.TLSSocket (TLSWrap's parent TCP handle), or null. */
export function tcpFd(socket: Socket | null | undefined): number | null {
  const h = (socket as unknown as { _handle?: { fd?: unknown; _parent?: { fd?: unknown } } } | null)?._handle;
  const fd = typeof h?.fd === 'number' && h.fd >= 0 ? h.fd : h?._parent?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : null;
}

/** Linux TCP_ESTABLISHED (include/net/tcp_states.h), as in tcpi_state and /proc/net/tcp's st column. */
const TCP_ESTABLISHED = 1;

/** State and tx_queue of the /proc/net/tcp{,6} line for (localPort, remotePort), or null when not found. Pure. */
export function procTcpRow(text: string, localPort: number, remotePort: number): { state: number; txQueue: number } | null {
  const lp = localPort.toString(16).toUpperCase().padStart(4, '0');
  const rp = remotePort.toString(16).toUpperCase().padStart(4, '0');
  for (const line of text.split('\n')) {
    // "  sl  local_address rem_address   st tx_queue:rx_queue ..."
    const f = line.trim().split(/\s+/);
    if (f.length < 5 || !f[1] || !f[2] || !f[4]) continue;
    if (!f[1].endsWith(`:${lp}`) || !f[2].endsWith(`:${rp}`)) continue;
    const tx = f[4].split(':', 1)[0]!;
    const st = f[3] ?? '';
    if (!/^[0-9A-Fa-f]{1,16}$/.test(tx) || !/^[0-9A-Fa-f]{2}$/.test(st)) return null;
    return { state: parseInt(st, 16), txQueue: parseInt(tx, 16) };
  }
  return null;
}

/**
 * One socket's probe. `sample()` is cheap enough for every tick of a link (one getsockopt and one
 * ioctl; the procfs fallback reads two small files). Never throws: a failed sample returns null and
 * is counted.
 */
export class TcpProbe {
  readonly kind: ProbeKind;
  private readonly out = new Float64Array(TCP_INFO.FIELDS);
  private readonly st: TcpProbeStats;

  private constructor(
    private readonly socket: Socket,
    private readonly fd: number | null,
    private readonly native: NativeTcp | null,
  ) {
    this.kind = native && fd !== null ? 'native' : process.platform === 'linux' ? 'procfs' : 'none';
    this.st = { kind: this.kind, samples: 0, failures: 0, tuningRefused: {}, sndbufBytes: null, notsentLowatBytes: null, userTimeoutMs: null };
  }

  static for(socket: Socket, native: NativeTcp | null = nativeTcp()): TcpProbe {
    return new TcpProbe(socket, tcpFd(socket), native);
  }

  /** Applies what the kernel accepts (only with the addon: Node sets none of these). */
  tune(t: Partial<TcpTuning>): void {
    if (t.keepalive) {
      // Node's own keepalive works without the addon; the addon then sets the probe cadence.
      try {
        this.socket.setKeepAlive(true, t.keepalive.idleSec * 1000);
      } catch {
        this.refused('SO_KEEPALIVE');
      }
    }
    if (this.kind !== 'native') return;
    const set = (name: string, opt: (typeof TCP_OPT)[keyof typeof TCP_OPT], v: number): number | null => {
      try {
        return this.native!.setTcpOption(this.fd!, opt, Math.max(0, Math.round(v)));
      } catch {
        this.refused(name);
        return null;
      }
    };
    if (t.notsentLowatBytes !== undefined) this.st.notsentLowatBytes = set('TCP_NOTSENT_LOWAT', TCP_OPT.NOTSENT_LOWAT, t.notsentLowatBytes);
    if (t.sndbufBytes !== undefined && t.sndbufBytes !== null) this.st.sndbufBytes = set('SO_SNDBUF', TCP_OPT.SNDBUF, t.sndbufBytes);
    if (t.userTimeoutMs !== undefined) this.st.userTimeoutMs = set('TCP_USER_TIMEOUT', TCP_OPT.USER_TIMEOUT, t.userTimeoutMs);
    if (t.keepalive) {
      set('TCP_KEEPIDLE', TCP_OPT.KEEPIDLE, Math.max(1, t.keepalive.idleSec));
      set('TCP_KEEPINTVL', TCP_OPT.KEEPINTVL, Math.max(1, t.keepalive.intervalSec));
      set('TCP_KEEPCNT', TCP_OPT.KEEPCNT, Math.max(1, t.keepalive.count));
    }
  }

  private refused(name: string): void {
    this.st.tuningRefused[name] = (this.st.tuningRefused[name] ?? 0) + 1;
  }

  sample(): TcpSample | null {
    try {
      const s = this.kind === 'native' ? this.nativeSample() : this.kind === 'procfs' ? this.procSample() : null;
      if (s) this.st.samples++;
      else this.st.failures++;
      return s;
    } catch {
      this.st.failures++;
      return null;
    }
  }

  private nativeSample(): TcpSample | null {
    const o = this.out;
    if (!this.native!.tcpInfo(this.fd!, o)) return null;
    const outq = o[TCP_INFO.OUTQ_BYTES]!;
    if (outq < 0) return null;
    const acked = o[TCP_INFO.BYTES_ACKED]!;
    return {
      established: o[TCP_INFO.STATE] === TCP_ESTABLISHED,
      outq,
      notsent: o[TCP_INFO.NOTSENT_BYTES]!,
      bytesAcked: acked >= 0 ? acked : null,
      lastAckRecvMs: o[TCP_INFO.LAST_ACK_RECV_MS]!,
      rttUs: o[TCP_INFO.RTT_US]!,
      retransmits: o[TCP_INFO.RETRANSMITS]!,
      totalRetrans: o[TCP_INFO.TOTAL_RETRANS]!,
    };
  }

  private procSample(): TcpSample | null {
    const lp = this.socket.localPort;
    const rp = this.socket.remotePort;
    if (!lp || !rp) return null;
    for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
      let text: string;
      try {
        text = readFileSync(f, 'latin1');
      } catch {
        continue;
      }
      const row = procTcpRow(text, lp, rp);
      if (row) return { established: row.state === TCP_ESTABLISHED, outq: row.txQueue, notsent: -1, bytesAcked: null, lastAckRecvMs: -1, rttUs: -1, retransmits: -1, totalRetrans: -1 };
    }
    return null;
  }

  stats(): TcpProbeStats {
    return { ...this.st, tuningRefused: { ...this.st.tuningRefused } };
  }
}
