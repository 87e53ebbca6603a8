// Test support: start the real runtime in-process on an ephemeral port, talk to it with ws.

import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { createServer, type AddressInfo } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { WebSocket } from 'ws';
import { App } from '../../runtime/app.js';
import { parseConfig } from '../../runtime/config/load.js';
import { silentLogger } from '../../runtime/log.js';

export const run = promisify(execFile);

export async function startApp(config: Record<string, unknown>): Promise<App> {
  const server = { host: '127.0.0.1', port: 0, ...((config.server as object) ?? {}) };
  // Tests that do not ask for recordings get none (no files in the working directory).
  const recordings = config.recordings ?? { enabled: false };
  const cfg = parseConfig({ log: { level: 'silent' }, ...config, server, recordings }, 'test config');
  return App.start(cfg, silentLogger());
}

/** A TCP port nobody listens on now: bound on loopback, then closed (a peer may take it later). */
export async function closedPort(): Promise<number> {
  const s = createServer().listen(0, '127.0.0.1');
  await once(s, 'listening');
  const port = (s.address() as AddressInfo).port;
  s.close();
  await once(s, 'close');
  return port;
}

export function tempDir(prefix = 'moth-edge-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Wait for a condition, polling; fails with `what` after `ms`. Not a sleep-then-assert. */
export async function waitFor(cond: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export interface Collected {
  ws: WebSocket;
  texts: string[];
  binaries: Buffer[];
  /** Order of messages: 't' text, 'b' binary. */
  order: Array<'t' | 'b'>;
  closed: Promise<{ code: number; reason: string }>;
  opened: Promise<void>;
}

export function collect(url: string): Collected {
  const ws = new WebSocket(url);
  const c: Collected = {
    ws,
    texts: [],
    binaries: [],
    order: [],
    closed: new Promise((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() }))),
    opened: new Promise((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    }),
  };
  ws.on('error', () => {});
  ws.on('message', (data, isBinary) => {
    const b = Buffer.isBuffer(data) ? data : Buffer.from(data as ArrayBuffer);
    if (isBinary) {
      c.binaries.push(b);
      c.order.push('b');
    } else {
      c.texts.push(b.toString('utf8'));
      c.order.push('t');
    }
  });
  return c;
}

/** Open a ws and resolve with the close code the server sends (refusal tests). */
export function closeCodeOf(url: string, timeoutMs = 5000): Promise<{ code: number; reason: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    const t = setTimeout(() => {
      ws.terminate();
      reject(new Error(`no close within ${timeoutMs} ms for ${url}`));
    }, timeoutMs);
    ws.on('error', () => {});
    ws.once('close', (code, reason) => {
      clearTimeout(t);
      resolve({ code, reason: reason.toString() });
    });
  });
}

/** Real H.264 from the real ffmpeg: Annex-B, SPS/PPS before every IDR. */
export async function encodeH264(
  dir: string,
  opts: { width: number; height: number; fps: number; frames: number; bitrateKbps?: number; gop?: number; zerolatency?: boolean; profile?: string; preset?: string },
): Promise<Buffer> {
  const out = join(dir, `tp-${opts.width}x${opts.height}-${opts.frames}.h264`);
  const args = ['-hide_banner', '-loglevel', 'error', '-f', 'lavfi', '-i', `testsrc2=size=${opts.width}x${opts.height}:rate=${opts.fps}`,
    '-frames:v', String(opts.frames), '-c:v', 'libx264', '-preset', opts.preset ?? 'ultrafast'];
  if (opts.zerolatency !== false) args.push('-tune', 'zerolatency');
  if (opts.profile) args.push('-profile:v', opts.profile);
  if (opts.bitrateKbps) args.push('-b:v', `${opts.bitrateKbps}k`, '-maxrate', `${opts.bitrateKbps}k`, '-bufsize', `${opts.bitrateKbps}k`);
  args.push('-pix_fmt', 'yuv420p', '-g', String(opts.gop ?? opts.fps), '-x264-params', 'repeat-headers=1', '-f', 'h264', '-y', out);
  await run('ffmpeg', args);
  const { readFileSync } = await import('node:fs');
  return readFileSync(out);
}

export interface ProbeResult {
  codec: string;
  width: number;
  height: number;
  frames: number;
  errors: string;
}

/** Decode a file with the real ffprobe; counts frames by decoding them. */
export async function ffprobe(file: string): Promise<ProbeResult> {
  const { stdout, stderr } = await run('ffprobe', ['-v', 'error', '-count_frames', '-select_streams', 'v:0',
    '-show_entries', 'stream=codec_name,width,height,nb_read_frames', '-of', 'json', file]);
  const s = (JSON.parse(stdout) as { streams: Array<Record<string, string | number>> }).streams[0]!;
  return { codec: String(s.codec_name), width: Number(s.width), height: Number(s.height), frames: Number(s.nb_read_frames), errors: stderr };
}

export function writeFile(dir: string, name: string, data: Buffer | string): string {
  const p = join(dir, name);
  writeFileSync(p, data);
  return p;
}

/** How to run the CLI as a child: the compiled JS in CI, the TS source under tsx while developing. */
export function cliCommand(): { cmd: string; args: string[] } {
  const ts = import.meta.url.endsWith('.ts');
  const entry = fileURLToPath(new URL(`../../runtime/cli.${ts ? 'ts' : 'js'}`, import.meta.url));
  return { cmd: process.execPath, args: ts ? ['--import', 'tsx', entry] : [entry] };
}

/**
 * PIDs of processes whose command line contains `needle` and, when `mark` is given, whose
 * environment holds MOTH_TEST_MARK=<mark>: children inherit it, so only this test's process tree
 * matches even after an orphan is reparented — other test runs on the machine use the same
 * command lines.
 */
export async function pidsMatching(needle: string, mark?: string): Promise<number[]> {
  const pids = await pidsByArgs(needle);
  if (mark === undefined) return pids;
  const { readFile } = await import('node:fs/promises');
  const out: number[] = [];
  for (const pid of pids) {
    const env = await readFile(`/proc/${pid}/environ`, 'latin1').catch(() => '');
    if (env.split('\0').includes(`MOTH_TEST_MARK=${mark}`)) out.push(pid);
  }
  return out;
}

/** PIDs of processes whose command line contains `needle`. */
async function pidsByArgs(needle: string): Promise<number[]> {
  const { stdout } = await run('ps', ['-eo', 'pid=,args=']);
  return stdout
    .split('\n')
    .filter((l) => l.includes(needle) && !l.includes('ps -eo'))
    .map((l) => Number(l.trim().split(/\s+/)[0]));
}
