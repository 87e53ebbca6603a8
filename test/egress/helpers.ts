// Small helpers shared by the egress tests.
import { execFile } from 'node:child_process';
import { createSocket, type Socket } from 'node:dgram';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { TestContext } from 'node:test';
import { socketFd } from '../../runtime/egress/webrtc.js';

export const run = promisify(execFile);

/** Poll `pred` until it holds; fail with `what` after `ms` (a bound, not a speed assertion). */
export async function waitFor(pred: () => boolean, ms: number, what: string | (() => string)): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for: ${typeof what === 'function' ? what() : what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export async function tempDir(t: TestContext, prefix = 'egress-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A self-signed cert for 127.0.0.1 made with the real openssl. */
export async function selfSignedCert(dir: string): Promise<{ certFile: string; keyFile: string }> {
  const certFile = join(dir, 'cert.pem');
  const keyFile = join(dir, 'key.pem');
  await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1']);
  return { certFile, keyFile };
}

/** ffprobe a raw H.264 file: number of decoded frames and the stream's size. */
export async function probeH264(file: string): Promise<{ frames: number; width: number; height: number }> {
  const { stdout } = await run('ffprobe', ['-v', 'error', '-f', 'h264', '-count_frames', '-select_streams', 'v:0', '-show_entries', 'stream=nb_read_frames,width,height', '-of', 'json', file], { timeout: 60_000 });
  const s = (JSON.parse(stdout) as { streams: Array<{ nb_read_frames: string; width: number; height: number }> }).streams[0]!;
  return { frames: Number(s.nb_read_frames), width: s.width, height: s.height };
}

export const fastBackoff = { initialMs: 50, maxMs: 400, resetAfterMs: 10_000 };

/** A UDP socket bound on loopback, closed when the test ends. */
export async function boundUdp(t: TestContext): Promise<Socket> {
  const s = createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  t.after(() => s.close());
  return s;
}

/** A bound dgram socket's fd (what the native sender writes to). */
export function udpFd(s: Socket): number {
  const fd = socketFd(s);
  if (fd === null) throw new Error('dgram socket has no fd');
  return fd;
}
