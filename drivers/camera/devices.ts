// `moth-edge devices`: the V4L2 cameras on this board and what they can deliver, so a config can
// name a stable /dev/v4l/by-id path and the right inputFormat. Devices come from sysfs
// (/sys/class/video4linux); capabilities and formats from `v4l2-ctl` (v4l-utils) when installed,
// else from ffmpeg's `-list_formats all`. The text parsers are pure and tested on captured output.

import { execFile } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync, existsSync } from 'node:fs';
import { join, resolve, basename } from 'node:path';
import { resolveFfmpeg } from '../exec/ffmpeg.js';

export interface FrameSize {
  width: number;
  height: number;
  /** Frame rates offered at this size (empty when the tool did not say). */
  fps: number[];
}

export interface PixelFormat {
  /** V4L2 fourcc ('H264', 'MJPG', 'YUYV') or ffmpeg's name when only ffmpeg was asked. */
  fourcc: string;
  description: string;
  compressed: boolean;
  sizes: FrameSize[];
  /** Stepwise/continuous range, when the device takes any size in it (Pi's unicam, many ISPs). */
  range?: { minWidth: number; minHeight: number; maxWidth: number; maxHeight: number };
  /** The v4l2 driver's `inputFormat` value for this format, when moth-edge can use it. */
  inputFormat?: 'h264' | 'mjpeg' | 'yuyv422';
}

export interface V4l2Info {
  driver?: string;
  card?: string;
  bus?: string;
  /** Device Caps (this node), e.g. ["Video Capture", "Streaming"]. */
  deviceCaps: string[];
}

export interface V4l2Device {
  path: string;
  name: string;
  byId: string[];
  byPath: string[];
  info: V4l2Info;
  formats: PixelFormat[];
  /** Can capture video (not a metadata/output/m2m node). */
  capture: boolean;
  source: 'v4l2-ctl' | 'ffmpeg' | 'sysfs';
  error?: string;
}

const FOURCC_INPUT: Record<string, PixelFormat['inputFormat']> = { H264: 'h264', MJPG: 'mjpeg', JPEG: 'mjpeg', YUYV: 'yuyv422' };
const FFMPEG_INPUT: Record<string, PixelFormat['inputFormat']> = { h264: 'h264', mjpeg: 'mjpeg', yuyv422: 'yuyv422' };

// A device lists a few formats × a few dozen sizes; bounds keep a hostile tool output cheap.
const MAX_FORMATS = 64;
const MAX_SIZES = 256;

/** Parse `v4l2-ctl --info` (the "Driver Info" block). */
export function parseV4l2Info(text: string): V4l2Info {
  const info: V4l2Info = { deviceCaps: [] };
  const lines = text.split('\n');
  let inCaps = false;
  for (const raw of lines) {
    const line = raw.replace(/\r$/, '');
    const kv = /^\s*(Driver name|Card type|Bus info|Device Caps|Capabilities)\s*:\s*(.*)$/.exec(line);
    if (kv) {
      inCaps = kv[1] === 'Device Caps';
      if (kv[1] === 'Driver name') info.driver = kv[2]!.trim();
      else if (kv[1] === 'Card type') info.card = kv[2]!.trim();
      else if (kv[1] === 'Bus info') info.bus = kv[2]!.trim();
      continue;
    }
    if (inCaps) {
      const cap = /^\t\t(\S.*)$/.exec(line) ?? /^\s{8,}(\S.*)$/.exec(line);
      if (cap && !cap[1]!.includes(':')) info.deviceCaps.push(cap[1]!.trim());
      else inCaps = false;
    }
  }
  return info;
}

/** Parse `v4l2-ctl --list-formats-ext`. */
export function parseV4l2Formats(text: string): PixelFormat[] {
  const out: PixelFormat[] = [];
  let cur: PixelFormat | undefined;
  let size: FrameSize | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\r$/, '');
    const f = /^\s*\[\d+\]:\s*'([^']{1,8})'\s*\(([^)]*)\)?/.exec(line);
    if (f) {
      if (out.length >= MAX_FORMATS) break;
      const fourcc = f[1]!.trim();
      const description = (f[2] ?? '').replace(/,\s*compressed$/, '').trim();
      cur = { fourcc, description, compressed: /compressed/.test(f[2] ?? '') || fourcc === 'H264' || fourcc === 'MJPG', sizes: [], inputFormat: FOURCC_INPUT[fourcc] };
      out.push(cur);
      size = undefined;
      continue;
    }
    if (!cur) continue;
    const d = /^\s*Size:\s*Discrete\s+(\d{1,5})x(\d{1,5})/.exec(line);
    if (d) {
      if (cur.sizes.length >= MAX_SIZES) continue;
      size = { width: Number(d[1]), height: Number(d[2]), fps: [] };
      cur.sizes.push(size);
      continue;
    }
    const s = /^\s*Size:\s*(?:Stepwise|Continuous)\s+(\d{1,5})x(\d{1,5})\s*-\s*(\d{1,5})x(\d{1,5})/.exec(line);
    if (s) {
      cur.range = { minWidth: Number(s[1]), minHeight: Number(s[2]), maxWidth: Number(s[3]), maxHeight: Number(s[4]) };
      size = undefined;
      continue;
    }
    const i = /^\s*Interval:\s*Discrete\s+[\d.]+s\s*\(([\d.]+)\s*fps\)/.exec(line);
    if (i && size && size.fps.length < 64) size.fps.push(Number(i[1]));
  }
  return out;
}

/** Parse ffmpeg's `-f v4l2 -list_formats all -i <dev>` stderr. */
export function parseFfmpegFormats(text: string): PixelFormat[] {
  const out: PixelFormat[] = [];
  for (const line of text.split('\n')) {
    const m = /\]\s*(Raw|Compressed)\s*:\s*(\S+)\s*:\s*(.*?)\s*:\s*(.*)$/.exec(line);
    if (!m) continue;
    if (out.length >= MAX_FORMATS) break;
    const name = m[2]!;
    const sizes: FrameSize[] = [];
    let range: PixelFormat['range'];
    const sizeText = m[4]!.trim();
    const step = /\{(\d+)-(\d+), \d+\}x\{(\d+)-(\d+), \d+\}/.exec(sizeText);
    if (step) range = { minWidth: Number(step[1]), maxWidth: Number(step[2]), minHeight: Number(step[3]), maxHeight: Number(step[4]) };
    else {
      for (const s of sizeText.split(/\s+/).slice(0, MAX_SIZES)) {
        const wh = /^(\d{1,5})x(\d{1,5})$/.exec(s);
        if (wh) sizes.push({ width: Number(wh[1]), height: Number(wh[2]), fps: [] });
      }
    }
    out.push({ fourcc: name, description: m[3]!.trim(), compressed: m[1] === 'Compressed', sizes, range, inputFormat: FFMPEG_INPUT[name] });
  }
  return out;
}

export interface DeviceProbeDeps {
  /** Root of sysfs (tests pass a fixture tree). */
  sysRoot?: string;
  /** Root of /dev (for the v4l/by-id and by-path links). */
  devRoot?: string;
  /** v4l2-ctl binary; `null` = do not use it. Default: /usr/bin/v4l2-ctl when present. */
  v4l2ctl?: string | null;
  ffmpegPath?: string;
  timeoutMs?: number;
}

function runTool(cmd: string, args: string[], timeoutMs: number): Promise<{ stdout: string; stderr: string; code: number | null }> {
  return new Promise((resolvePromise) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 1024 * 1024, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : null) : 0;
      resolvePromise({ stdout: String(stdout), stderr: String(stderr), code });
    });
  });
}

function links(dir: string, devRoot: string): Map<string, string[]> {
  const map = new Map<string, string[]>();
  if (!existsSync(dir)) return map;
  for (const n of readdirSync(dir)) {
    try {
      const target = resolve(dir, readlinkSync(join(dir, n)));
      const dev = join('/dev', basename(target)); // fixture trees resolve under devRoot; report real paths
      const list = map.get(dev) ?? [];
      list.push(join('/dev', dir.slice(devRoot.length).replace(/^\/+/, ''), n));
      map.set(dev, list);
    } catch {
      // not a link
    }
  }
  return map;
}

/** Every /dev/videoN with its name, stable links, capabilities and formats. */
export async function listV4l2Devices(deps: DeviceProbeDeps = {}): Promise<V4l2Device[]> {
  const sysRoot = deps.sysRoot ?? '/sys';
  const devRoot = deps.devRoot ?? '/dev';
  const cls = join(sysRoot, 'class', 'video4linux');
  if (!existsSync(cls)) return [];
  const names = readdirSync(cls).filter((n) => /^video\d{1,3}$/.test(n)).sort((a, b) => Number(a.slice(5)) - Number(b.slice(5)));
  const byId = links(join(devRoot, 'v4l', 'by-id'), devRoot);
  const byPath = links(join(devRoot, 'v4l', 'by-path'), devRoot);
  const v4l2ctl = deps.v4l2ctl === undefined ? (existsSync('/usr/bin/v4l2-ctl') ? '/usr/bin/v4l2-ctl' : null) : deps.v4l2ctl;
  const timeoutMs = deps.timeoutMs ?? 5000;
  const out: V4l2Device[] = [];
  for (const n of names.slice(0, 64)) {
    const path = `/dev/${n}`;
    let name = n;
    try {
      name = readFileSync(join(cls, n, 'name'), 'utf8').trim().slice(0, 128) || n;
    } catch {
      // no name attribute
    }
    const dev: V4l2Device = { path, name, byId: byId.get(path) ?? [], byPath: byPath.get(path) ?? [], info: { deviceCaps: [] }, formats: [], capture: true, source: 'sysfs' };
    if (v4l2ctl) {
      const r = await runTool(v4l2ctl, ['--device', path, '--info', '--list-formats-ext'], timeoutMs);
      if (r.code === 0) {
        dev.info = parseV4l2Info(r.stdout);
        dev.formats = parseV4l2Formats(r.stdout);
        dev.source = 'v4l2-ctl';
        if (dev.info.deviceCaps.length) dev.capture = dev.info.deviceCaps.some((c) => /^Video Capture/.test(c));
      } else dev.error = (r.stderr.trim().split('\n').pop() ?? `v4l2-ctl exited ${r.code}`).slice(0, 200);
    } else {
      let ffmpeg: string | undefined;
      try {
        ffmpeg = resolveFfmpeg(deps.ffmpegPath).path;
      } catch {
        dev.error = 'neither v4l2-ctl nor ffmpeg available';
      }
      if (ffmpeg) {
        const r = await runTool(ffmpeg, ['-hide_banner', '-f', 'v4l2', '-list_formats', 'all', '-i', path], timeoutMs);
        dev.formats = parseFfmpegFormats(r.stderr);
        dev.source = 'ffmpeg';
        // a metadata node lists no formats; so does a busy or broken one
        dev.capture = dev.formats.length > 0;
        if (!dev.formats.length) dev.error = (r.stderr.trim().split('\n').pop() ?? '').slice(0, 200) || undefined;
      }
    }
    out.push(dev);
  }
  return out;
}

/** The driver config this device suggests (H.264 passthrough first, then MJPEG, then raw). */
export function suggestConfig(d: V4l2Device): Record<string, unknown> | null {
  if (!d.capture) return null;
  const pick = (f: PixelFormat['inputFormat']) => d.formats.find((x) => x.inputFormat === f);
  const f = pick('h264') ?? pick('mjpeg') ?? pick('yuyv422');
  if (!f) return null;
  const best = [...f.sizes].sort((a, b) => b.width * b.height - a.width * a.height).find((s) => s.width <= 1920) ?? f.sizes[0];
  const fps = best?.fps.length ? Math.max(...best.fps.filter((x) => x <= 30)) : 30;
  return {
    kind: 'v4l2',
    device: d.byId[0] ?? d.path,
    inputFormat: f.inputFormat,
    ...(best ? { width: best.width, height: best.height } : {}),
    fps: Number.isFinite(fps) && fps > 0 ? Math.round(fps) : 30,
  };
}

const USAGE = `usage: moth-edge devices [--json]
  Lists V4L2 cameras (/dev/video*): name, stable /dev/v4l/by-id path, formats, sizes and frame rates,
  and a suggested "v4l2" driver config for each capture node.`;

/** `moth-edge devices`. Returns the exit code: 0 listed (even none), 2 usage. */
export async function runDevicesCli(
  argv: string[],
  io: { out: (s: string) => void; err: (s: string) => void } = { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s) },
  deps: DeviceProbeDeps = {},
): Promise<number> {
  let json = false;
  for (const a of argv) {
    if (a === '--json') json = true;
    else if (a === '-h' || a === '--help') {
      io.out(`${USAGE}\n`);
      return 0;
    } else {
      io.err(`unknown option ${a}\n${USAGE}\n`);
      return 2;
    }
  }
  const devices = await listV4l2Devices(deps);
  if (json) {
    io.out(`${JSON.stringify(devices.map((d) => ({ ...d, suggested: suggestConfig(d) })), null, 2)}\n`);
    return 0;
  }
  if (devices.length === 0) {
    io.out('no V4L2 devices (/sys/class/video4linux is empty or missing)\n');
    return 0;
  }
  for (const d of devices) {
    io.out(`${d.path}  ${d.name}${d.info.driver ? `  (${d.info.driver}${d.info.bus ? `, ${d.info.bus}` : ''})` : ''}${d.capture ? '' : '  [not a capture node]'}\n`);
    for (const l of d.byId) io.out(`    by-id   ${l}\n`);
    for (const l of d.byPath) io.out(`    by-path ${l}\n`);
    if (d.error) io.out(`    error   ${d.error}\n`);
    for (const f of d.formats) {
      const sizes = f.range
        ? `${f.range.minWidth}x${f.range.minHeight} … ${f.range.maxWidth}x${f.range.maxHeight}`
        : f.sizes.map((s) => `${s.width}x${s.height}${s.fps.length ? `@${Math.max(...s.fps)}` : ''}`).join(' ');
      io.out(`    ${f.fourcc.padEnd(8)} ${f.description}${f.inputFormat ? `  → inputFormat "${f.inputFormat}"` : ''}\n      ${sizes}\n`);
    }
    const s = suggestConfig(d);
    if (s) io.out(`    suggested: ${JSON.stringify(s)}\n`);
  }
  return 0;
}

