// A real network path for link tests (issue 14): a network namespace the test creates, joined to
// the host by a veth pair, shaped with tc. The upstream runs inside the namespace; the runtime
// under test in the host namespace reaches it at `peerAddr`. Faults are what a robot's uplink does:
//  - blackhole(): every packet dropped both ways — the link goes silent, no RST, no FIN (a tbf
//    whose bucket is smaller than any packet: this kernel has tbf but no netem);
//  - cut(): the interfaces go down — the modem lost its carrier;
//  - thin(bytesPerSec): a token bucket at that rate with a 500 ms queue (a cellular uplink);
//  - restore(): the plain path.
// Needs root and iproute2 (CI has both); netnsUnavailable() says why not otherwise.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface NetnsPath {
  ns: string;
  hostAddr: string;
  peerAddr: string;
  blackhole(): Promise<void>;
  cut(): Promise<void>;
  thin(bytesPerSec: number): Promise<void>;
  restore(): Promise<void>;
  /** Start a process inside the namespace (its stdout/stderr piped). */
  spawn(cmd: string, args: string[], env?: NodeJS.ProcessEnv): ChildProcess;
  close(): Promise<void>;
}

/** Null when this machine can make namespaces here, else why not. */
export async function netnsUnavailable(): Promise<string | null> {
  if (process.getuid?.() !== 0) return 'network namespaces need root';
  try {
    await run('ip', ['-V']);
    await run('tc', ['-V']);
  } catch {
    return 'iproute2 (ip, tc) is not installed';
  }
  return null;
}

export async function createNetnsPath(tag: string): Promise<NetnsPath> {
  const id = (process.pid % 200) + 20;
  const sub = Math.abs(hash(tag)) % 250;
  const ns = `mt${process.pid}${tag}`.slice(0, 15);
  const va = `mta${process.pid}`.slice(0, 13) + tag.slice(0, 2);
  const vb = `mtb${process.pid}`.slice(0, 13) + tag.slice(0, 2);
  const hostAddr = `10.${id}.${sub}.1`;
  const peerAddr = `10.${id}.${sub}.2`;
  const sh = async (args: string[]): Promise<void> => {
    await run(args[0]!, args.slice(1));
  };
  await sh(['ip', 'netns', 'add', ns]);
  try {
    await sh(['ip', 'link', 'add', va, 'type', 'veth', 'peer', 'name', vb]);
    await sh(['ip', 'link', 'set', vb, 'netns', ns]);
    await sh(['ip', 'addr', 'add', `${hostAddr}/24`, 'dev', va]);
    await sh(['ip', 'link', 'set', va, 'up']);
    await sh(['ip', '-n', ns, 'addr', 'add', `${peerAddr}/24`, 'dev', vb]);
    await sh(['ip', '-n', ns, 'link', 'set', vb, 'up']);
    await sh(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
    // With the link down its connected route goes; without this the host's default route would
    // carry the packets elsewhere (here: a proxy answering HTTP 404). A robot whose only uplink is
    // down has no route at all: connects fail at once (EHOSTUNREACH), established sessions go silent.
    await sh(['ip', 'route', 'add', 'unreachable', `10.${id}.${sub}.0/24`, 'metric', '4000']);
  } catch (err) {
    await run('ip', ['netns', 'del', ns]).catch(() => undefined);
    await run('ip', ['link', 'del', va]).catch(() => undefined);
    throw err;
  }
  const tc = async (side: 'host' | 'peer', args: string[]): Promise<void> => {
    await (side === 'host' ? sh(['tc', ...args]) : sh(['ip', 'netns', 'exec', ns, 'tc', ...args]));
  };
  const dev = (side: 'host' | 'peer'): string => (side === 'host' ? va : vb);
  const tbf = (side: 'host' | 'peer', params: string[]): Promise<void> => tc(side, ['qdisc', 'replace', 'dev', dev(side), 'root', 'tbf', ...params]);
  const plain = async (side: 'host' | 'peer'): Promise<void> => {
    await tc(side, ['qdisc', 'del', 'dev', dev(side), 'root']).catch(() => undefined); // none set: fine
  };
  const linkState = async (up: boolean): Promise<void> => {
    await sh(['ip', 'link', 'set', va, up ? 'up' : 'down']);
    await sh(['ip', '-n', ns, 'link', 'set', vb, up ? 'up' : 'down']);
  };
  const baseline = async (): Promise<void> => {
    await linkState(true);
    await plain('host');
    await plain('peer');
  };
  await baseline();
  const children = new Set<ChildProcess>();
  return {
    ns,
    hostAddr,
    peerAddr,
    blackhole: async () => {
      // A bucket of 1 byte: every packet is larger than the burst, so every packet is dropped.
      await tbf('host', ['rate', '8bit', 'burst', '1', 'latency', '1ms']);
      await tbf('peer', ['rate', '8bit', 'burst', '1', 'latency', '1ms']);
    },
    cut: async () => {
      await linkState(false);
    },
    thin: async (bytesPerSec) => {
      await linkState(true);
      await plain('peer');
      // A 500 ms queue at the bottleneck: the bufferbloat a cellular modem has, bounded.
      await tbf('host', ['rate', `${Math.max(8000, Math.round(bytesPerSec * 8))}bit`, 'burst', '16kb', 'latency', '500ms']);
    },
    restore: baseline,
    spawn: (cmd, args, env = {}) => {
      const c = spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
      children.add(c);
      c.once('exit', () => children.delete(c));
      return c;
    },
    close: async () => {
      for (const c of children) c.kill('SIGKILL');
      await run('ip', ['netns', 'del', ns]).catch(() => undefined);
      await run('ip', ['link', 'del', va]).catch(() => undefined);
      await run('ip', ['route', 'del', 'unreachable', `10.${id}.${sub}.0/24`, 'metric', '4000']).catch(() => undefined);
    },
  };
}

function hash(s: string): number {
  let h = 0;
  for (const c of s) h = (h * 31 + c.charCodeAt(0)) | 0;
  return h;
}
