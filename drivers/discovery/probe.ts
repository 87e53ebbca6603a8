// WS-Discovery probe on the LAN (`moth-edge discover`): multicast a Probe, collect ProbeMatches
// for a while, one entry per device. Thin UDP shell over ws-discovery.ts.

import { createSocket, type Socket } from 'node:dgram';
import { networkInterfaces } from 'node:os';
import { EdgeError } from '../../runtime/engine/api.js';
import { buildProbe, MAX_DATAGRAM_BYTES, newMessageId, parseProbeMatches, WSD_MULTICAST_ADDRESS, WSD_PORT, WsDiscoveryError, type ProbeMatch } from './ws-discovery.js';

export interface DiscoverOptions {
  /** How long to listen for answers. Cameras answer within ~1 s (the spec's APP_MAX_DELAY is 500 ms). */
  timeoutMs?: number;
  /** Where to send the Probe; default the WS-Discovery multicast group. Unicast targets work too. */
  targets?: Array<{ host: string; port: number }>;
  /** Local IPv4 address whose interface sends the multicast (a robot may have Wi-Fi + Ethernet). */
  interfaceAddress?: string;
  /** Probe types; default ONVIF NetworkVideoTransmitter. [] = every device. */
  types?: string[];
  /** The Probe is UDP: send it this many times (SOAP-over-UDP repeats, 2.1: MULTICAST_UDP_REPEAT). */
  repeats?: number;
  signal?: AbortSignal;
}

export interface DiscoveredDevice extends ProbeMatch {
  /** The address the answer came from. */
  from: string;
}

export interface DiscoverResult {
  devices: DiscoveredDevice[];
  stats: { sent: number; received: number; invalid: number; unrelated: number; duplicates: number; truncated: number };
}

// A LAN with more cameras than this is not a robot's LAN; the bound keeps a flood harmless.
const MAX_DEVICES = 256;

export async function discover(o: DiscoverOptions = {}): Promise<DiscoverResult> {
  const timeoutMs = o.timeoutMs ?? 3000;
  const messageId = newMessageId();
  const probe = Buffer.from(buildProbe(messageId, o.types ?? ['dn:NetworkVideoTransmitter']));
  const targets = o.targets ?? [{ host: WSD_MULTICAST_ADDRESS, port: WSD_PORT }];
  const stats = { sent: 0, received: 0, invalid: 0, unrelated: 0, duplicates: 0, truncated: 0 };
  const byEndpoint = new Map<string, DiscoveredDevice>();
  const sock: Socket = createSocket({ type: 'udp4', reuseAddr: true });
  let closed = false;
  const close = (): void => {
    if (closed) return;
    closed = true;
    try {
      sock.close();
    } catch {
      // already closed
    }
  };
  try {
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.bind(0, () => {
        sock.off('error', reject);
        resolve();
      });
    });
    sock.on('error', () => {}); // ICMP unreachable from a unicast target must not end the probe
    if (o.interfaceAddress) sock.setMulticastInterface(o.interfaceAddress);
    sock.setMulticastTTL(1); // the LAN segment only, as the spec says
    sock.on('message', (msg, rinfo) => {
      stats.received++;
      if (msg.length > MAX_DATAGRAM_BYTES) {
        stats.invalid++;
        return;
      }
      let matches: ProbeMatch[];
      try {
        matches = parseProbeMatches(msg.toString('utf8'));
      } catch (err) {
        if (err instanceof WsDiscoveryError) {
          stats.invalid++;
          return;
        }
        throw err;
      }
      for (const m of matches) {
        if (m.relatesTo && m.relatesTo !== messageId) {
          stats.unrelated++; // an answer to someone else's probe
          continue;
        }
        const key = m.endpoint || m.xaddrs.join(' ');
        if (byEndpoint.has(key)) {
          stats.duplicates++;
          continue;
        }
        if (byEndpoint.size >= MAX_DEVICES) {
          stats.truncated++;
          continue;
        }
        byEndpoint.set(key, { ...m, from: rinfo.address });
      }
    });
    const repeats = Math.max(1, Math.min(5, o.repeats ?? 2));
    for (let i = 0; i < repeats; i++) {
      for (const t of targets) {
        await new Promise<void>((resolve) => {
          sock.send(probe, t.port, t.host, (err) => {
            if (!err) stats.sent++;
            resolve();
          });
        });
      }
    }
    if (stats.sent === 0) {
      throw new EdgeError('DISCOVERY_SEND_FAILED', `could not send the probe to ${targets.map((t) => `${t.host}:${t.port}`).join(', ')} (no multicast route?)`);
    }
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, timeoutMs);
      function done(): void {
        clearTimeout(timer);
        o.signal?.removeEventListener('abort', done);
        resolve();
      }
      o.signal?.addEventListener('abort', done, { once: true });
    });
  } finally {
    close();
  }
  return { devices: [...byEndpoint.values()], stats };
}

/** IPv4 addresses of the interfaces that can multicast (for `--interface all`). */
export function lanAddresses(): string[] {
  const out: string[] = [];
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) out.push(a.address);
  }
  return out;
}

function parseArgs(argv: string[]): { timeoutMs: number; json: boolean; targets?: Array<{ host: string; port: number }>; iface?: string; all: boolean } | string {
  let timeoutMs = 3000;
  let json = false;
  let all = false;
  let iface: string | undefined;
  const targets: Array<{ host: string; port: number }> = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const val = (): string | undefined => argv[++i];
    if (a === '--json') json = true;
    else if (a === '--all') all = true;
    else if (a === '--timeout') {
      const v = Number(val());
      if (!Number.isInteger(v) || v < 100 || v > 60_000) return '--timeout takes milliseconds, 100..60000';
      timeoutMs = v;
    } else if (a === '--target') {
      const m = /^([A-Za-z0-9.-]{1,253}|\[[0-9a-fA-F:]+\]):(\d{1,5})$/.exec(val() ?? '');
      if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) return '--target takes host:port';
      targets.push({ host: m[1]!, port: Number(m[2]) });
    } else if (a === '--interface') {
      const v = val() ?? '';
      if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(v)) return '--interface takes a local IPv4 address';
      iface = v;
    } else if (a === '-h' || a === '--help') return 'help';
    else return `unknown option ${a}`;
  }
  return { timeoutMs, json, targets: targets.length ? targets : undefined, iface, all };
}

const USAGE = `usage: moth-edge discover [--timeout ms] [--json] [--all] [--interface <local IPv4>] [--target host:port]…
  Multicasts an ONVIF WS-Discovery Probe (239.255.255.250:3702) and lists the cameras that answer.
  --all      probe for every WS-Discovery device, not only ONVIF video transmitters
  --target   probe this address by unicast instead of multicast (repeatable)`;

/** `moth-edge discover`. Returns the exit code: 0 done (even with no device found), 1 failure, 2 usage. */
export async function runDiscoverCli(
  argv: string[],
  io: { out: (s: string) => void; err: (s: string) => void } = { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s) },
): Promise<number> {
  const a = parseArgs(argv);
  if (typeof a === 'string') {
    if (a === 'help') {
      io.out(`${USAGE}\n`);
      return 0;
    }
    io.err(`${a}\n${USAGE}\n`);
    return 2;
  }
  let res: DiscoverResult;
  try {
    res = await discover({ timeoutMs: a.timeoutMs, targets: a.targets, interfaceAddress: a.iface, types: a.all ? [] : undefined });
  } catch (err) {
    io.err(`discover failed: ${(err as Error).message}\n`);
    return 1;
  }
  if (a.json) {
    io.out(`${JSON.stringify(res, null, 2)}\n`);
    return 0;
  }
  if (res.devices.length === 0) {
    io.out(`no devices answered in ${a.timeoutMs} ms (probes sent: ${res.stats.sent})\n`);
    return 0;
  }
  for (const d of res.devices) {
    io.out(`${d.name ?? '(no name)'}${d.hardware ? ` [${d.hardware}]` : ''}  ${d.xaddrs.join(' ')}\n`);
    io.out(`    endpoint ${d.endpoint}  from ${d.from}${d.location ? `  location ${d.location}` : ''}\n`);
    io.out(`    types ${d.types.join(' ')}\n`);
  }
  io.out(`${res.devices.length} device(s)\n`);
  return 0;
}
