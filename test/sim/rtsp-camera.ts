// Starts test/sim/rtsp-server.py (GStreamer's gst-rtsp-server through /usr/bin/python3) as a real
// RTSP camera for tests and benchmarks. Its own process group, so kill() leaves nothing behind.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { simAsset } from './assets.js';

const SCRIPT = simAsset('rtsp-server.py');
const PYTHON = '/usr/bin/python3';

export interface RtspCameraOptions {
  port?: number;
  mount?: string;
  user?: string;
  password?: string;
  auth?: 'digest' | 'basic' | 'both';
  transport?: 'tcp' | 'udp' | 'both';
  fps?: number;
  size?: string;
  gop?: number;
  bitrateKbps?: number;
  /** Seconds; the server drops a session not kept alive within it (default: the server's 60). */
  sessionTimeoutS?: number;
  /** rtph264pay config-interval: -1 SPS/PPS with every IDR (default), 0 only in the SDP. */
  configInterval?: number;
}

export interface RtspCamera {
  port: number;
  /** rtsp://127.0.0.1:<port><mount> (no credentials). */
  url: string;
  pid: number;
  /** SIGKILL the server (a camera losing power). */
  kill(): Promise<void>;
  /** SIGTERM, then SIGKILL after 2 s. Idempotent. */
  stop(): Promise<void>;
}

/** Why the GStreamer RTSP server cannot run here, or undefined when it can. */
export function rtspServerUnavailable(): string | undefined {
  if (!existsSync(PYTHON)) return `${PYTHON} missing`;
  return undefined;
}

export async function startRtspCamera(o: RtspCameraOptions = {}, timeoutMs = 15_000): Promise<RtspCamera> {
  const mount = o.mount ?? '/cam';
  const args = [SCRIPT, '--port', String(o.port ?? 0), '--mount', mount, '--transport', o.transport ?? 'both',
    '--fps', String(o.fps ?? 25), '--size', o.size ?? '320x240', '--gop', String(o.gop ?? 25), '--bitrate', String(o.bitrateKbps ?? 500)];
  if (o.sessionTimeoutS) args.push('--session-timeout', String(o.sessionTimeoutS));
  if (o.configInterval !== undefined) args.push('--config-interval', String(o.configInterval));
  if (o.user) args.push('--user', o.user, '--password', o.password ?? '', '--auth', o.auth ?? 'digest');
  const p: ChildProcess = spawn(PYTHON, args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  p.stderr!.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  const exited = new Promise<void>((r) => p.once('exit', () => r()));
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => {
      killGroup(p, 'SIGKILL');
      reject(new Error(`rtsp-server.py not ready in ${timeoutMs} ms: ${stderr}`));
    }, timeoutMs);
    p.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /READY (\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      } else if (/ERROR/.test(out)) {
        clearTimeout(timer);
        reject(new Error(`rtsp-server.py: ${out.trim()} ${stderr}`));
      }
    });
    p.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`rtsp-server.py exited with ${code}: ${stderr}`));
    });
  });
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    if (!stopping) {
      stopping = (async () => {
        if (p.exitCode !== null || p.signalCode !== null) return;
        killGroup(p, 'SIGTERM');
        let t: NodeJS.Timeout | undefined;
        await Promise.race([exited, new Promise<void>((r) => (t = setTimeout(r, 2000)))]);
        clearTimeout(t);
        killGroup(p, 'SIGKILL');
        await exited;
      })();
    }
    return stopping;
  };
  return {
    port,
    url: `rtsp://127.0.0.1:${port}${mount}`,
    pid: p.pid!,
    kill: async () => {
      killGroup(p, 'SIGKILL');
      await exited;
    },
    stop,
  };
}

function killGroup(p: ChildProcess, sig: NodeJS.Signals): void {
  try {
    if (p.pid) process.kill(-p.pid, sig);
  } catch {
    // already gone
  }
}
