// Board detection from the files the kernel and vendor images expose. Reads under an injectable
// root so tests (and `moth-edge board --root`) can use fixture trees.
//
// Order of evidence: /proc/device-tree/model (+ compatible) names the board on every Pi and Jetson
// image; /proc/cpuinfo's Revision code identifies a Pi when the device tree is not mounted (some
// containers); /etc/nv_tegra_release identifies an L4T (Jetson) image; the CPU architecture is the
// fallback.

import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { arch as osArch, totalmem } from 'node:os';

export type BoardId =
  | 'pi-zero-2w'
  | 'pi3'
  | 'pi4'
  | 'pi5'
  | 'jetson-nano'
  | 'jetson-orin-nano'
  | 'generic-arm64'
  | 'generic-x86';

export const BOARD_IDS: readonly BoardId[] = [
  'pi-zero-2w',
  'pi3',
  'pi4',
  'pi5',
  'jetson-nano',
  'jetson-orin-nano',
  'generic-arm64',
  'generic-x86',
];

export interface BoardInfo {
  id: BoardId;
  /** Human model string as the board reports it (device-tree model, cpuinfo Model/model name). */
  model: string;
  /** Node's process.arch naming: arm64, arm, x64, ia32… */
  arch: string;
  /** RAM in MiB from /proc/meminfo (null when unreadable). */
  memMb: number | null;
  /** Which file decided the id. */
  source: 'device-tree' | 'cpuinfo' | 'nv_tegra_release' | 'arch';
  /** Raspberry Pi revision code (hex), when known. */
  piRevision?: string;
  /** L4T release from /etc/nv_tegra_release, e.g. "R32.7.4". */
  l4t?: string;
  /** SoC family: bcm2711, tegra210, tegra234, … */
  soc?: string;
}

export interface DetectOptions {
  /** Architecture to assume (default: process's own when root is '/', else taken from the tree). */
  arch?: string;
}

const FILES = ['proc/device-tree/model', 'proc/device-tree/compatible', 'proc/cpuinfo', 'etc/nv_tegra_release', 'proc/meminfo'] as const;
type Evidence = Record<(typeof FILES)[number], string | null>;

// Device-tree strings are NUL-terminated (and `compatible` is a NUL-separated list).
const strip = (s: string): string => s.replace(/\0+$/, '');

async function readText(root: string, rel: string): Promise<string | null> {
  try {
    return strip(await readFile(join(root, rel), 'latin1'));
  } catch {
    return null;
  }
}

function readTextSync(root: string, rel: string): string | null {
  try {
    return strip(readFileSync(join(root, rel), 'latin1'));
  } catch {
    return null;
  }
}

/**
 * Raspberry Pi new-style revision codes: bit 23 set, board type in bits 4–11.
 * https://www.raspberrypi.com/documentation/computers/raspberry-pi.html#new-style-revision-codes
 */
const PI_TYPE: Record<number, { id: BoardId | null; name: string }> = {
  0x04: { id: 'pi3', name: 'Raspberry Pi 2 Model B' }, // Cortex-A7/A53, nearest profile
  0x08: { id: 'pi3', name: 'Raspberry Pi 3 Model B' },
  0x0a: { id: 'pi3', name: 'Raspberry Pi Compute Module 3' },
  0x0d: { id: 'pi3', name: 'Raspberry Pi 3 Model B+' },
  0x0e: { id: 'pi3', name: 'Raspberry Pi 3 Model A+' },
  0x10: { id: 'pi3', name: 'Raspberry Pi Compute Module 3+' },
  0x11: { id: 'pi4', name: 'Raspberry Pi 4 Model B' },
  0x12: { id: 'pi-zero-2w', name: 'Raspberry Pi Zero 2 W' },
  0x13: { id: 'pi4', name: 'Raspberry Pi 400' },
  0x14: { id: 'pi4', name: 'Raspberry Pi Compute Module 4' },
  0x15: { id: 'pi4', name: 'Raspberry Pi Compute Module 4S' },
  0x17: { id: 'pi5', name: 'Raspberry Pi 5' },
  0x18: { id: 'pi5', name: 'Raspberry Pi Compute Module 5' },
  0x19: { id: 'pi5', name: 'Raspberry Pi 500' },
  0x1a: { id: 'pi5', name: 'Raspberry Pi Compute Module 5 Lite' },
};

/** Model-string patterns, most specific first. Data, not an if-chain (conventions.md). */
const MODEL_RULES: Array<{ re: RegExp; id: BoardId }> = [
  { re: /Raspberry Pi Zero 2/i, id: 'pi-zero-2w' },
  { re: /Raspberry Pi (5|500|Compute Module 5)/i, id: 'pi5' },
  { re: /Raspberry Pi (4|400|Compute Module 4)/i, id: 'pi4' },
  { re: /Raspberry Pi (3|Compute Module 3|2 Model B)/i, id: 'pi3' },
  { re: /Jetson.*Orin Nano/i, id: 'jetson-orin-nano' },
  { re: /Jetson[- ]Nano|jetson-nano/i, id: 'jetson-nano' },
];

/** Device-tree `compatible` entries for boards whose model string varies between images. */
const COMPATIBLE_RULES: Array<{ re: RegExp; id: BoardId }> = [
  // Orin Nano modules are p3767-0003/0004 (8 GB / 4 GB) and -0005 (devkit); 0000/0001 are Orin NX.
  { re: /nvidia,p3767-000[345]/, id: 'jetson-orin-nano' },
  { re: /nvidia,p3450-0000|nvidia,jetson-nano/, id: 'jetson-nano' },
  { re: /brcm,bcm2712/, id: 'pi5' },
  { re: /brcm,bcm2711/, id: 'pi4' },
];

const SOC_RE = /(brcm,bcm27\d\d|brcm,bcm2835|nvidia,tegra\d+)/;

function genericFor(arch: string): BoardId {
  return arch === 'arm64' || arch === 'arm' ? 'generic-arm64' : 'generic-x86';
}

/** Map /proc/cpuinfo's architecture hints to Node's arch names (for fixture trees). */
function archFromCpuinfo(cpuinfo: string | null): string | null {
  if (!cpuinfo) return null;
  if (/^CPU architecture\s*:\s*8/m.test(cpuinfo) || /aarch64|AArch64/.test(cpuinfo)) return 'arm64';
  if (/^CPU architecture\s*:\s*7/m.test(cpuinfo) || /ARMv7/.test(cpuinfo)) return 'arm';
  if (/^vendor_id\s*:|^model name\s*:.*(Intel|AMD)/m.test(cpuinfo)) return 'x64';
  return null;
}

function cpuinfoField(cpuinfo: string | null, key: string): string | null {
  if (!cpuinfo) return null;
  const m = new RegExp(`^${key}\\s*:\\s*(.+)$`, 'mi').exec(cpuinfo);
  return m ? m[1]!.trim() : null;
}

export function parsePiRevision(rev: string): { type: number; memMb: number } | null {
  const code = parseInt(rev.replace(/^0x/i, ''), 16);
  if (!Number.isFinite(code) || !(code & (1 << 23))) return null;
  return { type: (code >> 4) & 0xff, memMb: 256 << ((code >> 20) & 0x7) };
}

export function parseNvTegraRelease(text: string): { l4t: string; board: string | null } | null {
  const m = /#\s*R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)/.exec(text);
  if (!m) return null;
  const b = /BOARD:\s*([\w-]+)/.exec(text);
  return { l4t: `R${m[1]}.${m[2]}`, board: b ? b[1]! : null };
}

export async function detectBoard(root = '/', opts: DetectOptions = {}): Promise<BoardInfo> {
  const texts = await Promise.all(FILES.map((f) => readText(root, f)));
  return classify(Object.fromEntries(FILES.map((f, i) => [f, texts[i]!])) as Evidence, root, opts);
}

/** Same as detectBoard, synchronously (for pm2's ecosystem file, which cannot await). */
export function detectBoardSync(root = '/', opts: DetectOptions = {}): BoardInfo {
  return classify(Object.fromEntries(FILES.map((f) => [f, readTextSync(root, f)])) as Evidence, root, opts);
}

function classify(ev: Evidence, root: string, opts: DetectOptions): BoardInfo {
  const model = ev['proc/device-tree/model'];
  const compatible = ev['proc/device-tree/compatible'];
  const cpuinfo = ev['proc/cpuinfo'];
  const tegra = ev['etc/nv_tegra_release'];
  const meminfo = ev['proc/meminfo'];
  // On the live system the process knows its own arch (under qemu-user, /proc/cpuinfo is the
  // host's); a fixture tree only has its cpuinfo.
  const arch = opts.arch ?? (root === '/' ? osArch() : (archFromCpuinfo(cpuinfo) ?? 'x64'));
  const memKb = meminfo ? /^MemTotal:\s*(\d+)\s*kB/m.exec(meminfo) : null;
  const memMb = memKb ? Math.round(Number(memKb[1]) / 1024) : root === '/' ? Math.round(totalmem() / 1048576) : null;
  const compat = compatible ? compatible.split('\0').join(' ') : '';
  const soc = SOC_RE.exec(compat)?.[1]?.split(',')[1];
  const tegraRel = tegra ? parseNvTegraRelease(tegra) : null;
  const revision = cpuinfoField(cpuinfo, 'Revision');
  const extras: Partial<BoardInfo> = {};
  if (soc) extras.soc = soc;
  if (tegraRel) extras.l4t = tegraRel.l4t;
  if (revision && /raspberry|bcm2/i.test(`${model ?? ''} ${cpuinfo ?? ''} ${compat}`)) extras.piRevision = revision;

  // 1) device tree model, then compatible.
  if (model) {
    const rule = MODEL_RULES.find((r) => r.re.test(model)) ?? COMPATIBLE_RULES.find((r) => r.re.test(compat));
    return { id: rule ? rule.id : genericFor(arch), model, arch, memMb, source: 'device-tree', ...extras };
  }
  // 2) cpuinfo: a Pi revision code, or a "Model" line (Pi kernels print it).
  if (revision) {
    const rev = parsePiRevision(revision);
    const known = rev ? PI_TYPE[rev.type] : undefined;
    if (known && known.id) {
      return { id: known.id, model: cpuinfoField(cpuinfo, 'Model') ?? known.name, arch, memMb: memMb ?? rev!.memMb, source: 'cpuinfo', ...extras };
    }
  }
  const cpuModel = cpuinfoField(cpuinfo, 'Model');
  if (cpuModel) {
    const rule = MODEL_RULES.find((r) => r.re.test(cpuModel));
    if (rule) return { id: rule.id, model: cpuModel, arch, memMb, source: 'cpuinfo', ...extras };
  }
  // 3) an L4T image without a device tree: R32 on a t210 board is the Nano generation.
  if (tegraRel) {
    const id: BoardId = tegraRel.board === 't210ref' ? 'jetson-nano' : genericFor(arch);
    return { id, model: `NVIDIA Jetson (L4T ${tegraRel.l4t}, ${tegraRel.board ?? 'unknown board'})`, arch, memMb, source: 'nv_tegra_release', ...extras };
  }
  // 4) generic by architecture.
  const name = cpuinfoField(cpuinfo, 'model name') ?? cpuinfoField(cpuinfo, 'Hardware') ?? `generic ${arch}`;
  return { id: genericFor(arch), model: name, arch, memMb, source: 'arch', ...extras };
}
