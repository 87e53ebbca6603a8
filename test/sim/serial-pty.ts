// A socat pty pair standing in for a serial cable: the driver opens `dev`, the device simulator
// opens `peer`. kill() = the cable is pulled (socat gone, both links vanish); restart() = plugged back.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { SerialPort } from 'serialport';

/** Start `socat` linking two ptys at `a` and `b`; resolves once it is transferring data. */
export async function spawnSocatPair(a: string, b: string, timeoutMs = 5000): Promise<ChildProcess> {
  const proc = spawn('socat', ['-d', '-d', `pty,raw,echo=0,link=${a}`, `pty,raw,echo=0,link=${b}`], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`socat did not start within ${timeoutMs} ms: ${stderr}`));
    }, timeoutMs);
    proc.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (stderr.includes('starting data transfer loop')) {
        clearTimeout(t);
        resolve();
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`socat exited ${code}: ${stderr}`));
    });
  });
  proc.stderr!.resume();
  return proc;
}

export class PtyCable {
  proc: ChildProcess | null = null;
  constructor(
    readonly dev: string,
    readonly peer: string,
  ) {}

  async start(timeoutMs = 5000): Promise<void> {
    this.proc = await spawnSocatPair(this.dev, this.peer, timeoutMs);
  }

  /** Pull the cable: socat dies, its pty links disappear. */
  async kill(): Promise<void> {
    const p = this.proc;
    this.proc = null;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise<void>((r) => p.once('exit', () => r()));
    p.kill('SIGTERM');
    await exited;
  }

  get alive(): boolean {
    return this.proc !== null && existsSync(this.dev);
  }
}

/** Open the simulator's side of the cable. */
export function openPeer(path: string, baudRate: number): Promise<SerialPort> {
  return new Promise((resolve, reject) => {
    const p = new SerialPort({ path, baudRate, autoOpen: false, hupcl: false });
    p.open((err) => (err ? reject(err) : resolve(p)));
  });
}

export function closePeer(p: SerialPort | null): Promise<void> {
  return new Promise((resolve) => {
    if (!p || !p.isOpen) {
      resolve();
      return;
    }
    p.removeAllListeners('data');
    p.on('error', () => {});
    p.close(() => resolve());
  });
}

/** Wait until pred() holds, checking every pollMs, failing with `what` after timeoutMs. */
export async function waitUntil(pred: () => boolean, what: string, timeoutMs = 5000, pollMs = 5): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, pollMs));
  }
}
