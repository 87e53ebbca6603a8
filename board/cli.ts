// `moth-edge board`: print what was detected and what the runtime will choose from it.
//
//   moth-edge board [--root <dir>] [--json] [--ffmpeg <path>] [--no-probe]

import { execFile } from 'node:child_process';
import { detectBoard, type BoardInfo } from './detect.js';
import { chooseEncoder, pm2MemoryString, profileFor, type BoardProfile, type EncoderChoice } from './profiles.js';
import { createThermalMonitor, type ThermalState } from './thermal.js';

export interface BoardReport {
  board: BoardInfo;
  profile: BoardProfile;
  pm2MaxMemoryRestart: string;
  /** ffmpeg's H.264 encoders that the profile knows (null: ffmpeg not probed / not found). */
  ffmpegEncoders: string[] | null;
  /** What a non-H.264 camera gets encoded with; passthrough applies whenever the camera gives H.264. */
  encoder: EncoderChoice | null;
  thermal: ThermalState;
  /** Video settings after the current thermal step. */
  videoNow: { fps: number; bitrateKbps: number };
}

export interface BoardCliIo {
  out: (s: string) => void;
  err: (s: string) => void;
}

const KNOWN_ENCODERS = ['h264_v4l2m2m', 'h264_nvmpi', 'libx264'];

/** `ffmpeg -encoders` → the H.264 encoder names we care about. Bounded in time and output. */
export function probeFfmpegEncoders(ffmpeg: string, timeoutMs = 5000): Promise<string[] | null> {
  return new Promise((resolve) => {
    execFile(ffmpeg, ['-hide_banner', '-encoders'], { timeout: timeoutMs, maxBuffer: 1 << 20 }, (err, stdout) => {
      if (err) return resolve(null);
      const names = new Set(stdout.split('\n').map((l) => l.trim().split(/\s+/)[1] ?? ''));
      resolve(KNOWN_ENCODERS.filter((e) => names.has(e)));
    });
  });
}

export async function boardReport(opts: { root?: string; ffmpeg?: string | null; vcgencmd?: string } = {}): Promise<BoardReport> {
  const root = opts.root ?? '/';
  const board = await detectBoard(root);
  const profile = profileFor(board);
  const ffmpegEncoders = opts.ffmpeg === null ? null : await probeFfmpegEncoders(opts.ffmpeg ?? 'ffmpeg');
  const thermalMon = createThermalMonitor({ profile, root, autoStart: false, ...(opts.vcgencmd ? { vcgencmd: opts.vcgencmd } : {}) });
  const thermal = await thermalMon.sample();
  const videoNow = thermalMon.adjust(profile.video);
  thermalMon.close();
  return {
    board,
    profile,
    pm2MaxMemoryRestart: pm2MemoryString(profile),
    ffmpegEncoders,
    encoder: ffmpegEncoders === null ? null : chooseEncoder(profile, new Set(ffmpegEncoders)),
    thermal,
    videoNow,
  };
}

function text(r: BoardReport): string {
  const b = r.board;
  const p = r.profile;
  const lines = [
    `board       ${b.id}  (${b.model})`,
    `detected by ${b.source}${b.piRevision ? `, Pi revision ${b.piRevision}` : ''}${b.l4t ? `, L4T ${b.l4t}` : ''}${b.soc ? `, SoC ${b.soc}` : ''}`,
    `arch        ${b.arch}, RAM ${b.memMb ?? '?'} MiB`,
    `profile     ${p.name}`,
    `memory      pm2 max_memory_restart ${r.pm2MaxMemoryRestart}, engine budget ${p.memory.engineBudgetMb} MiB, V8 heap ${p.memory.nodeMaxOldSpaceMb} MiB`,
    `h264        hardware encoder: ${p.hardwareH264 ?? 'none'}; order ${p.encoders.join(' > ')}`,
    `encoder     ${r.ffmpegEncoders === null ? 'ffmpeg not probed/found' : `ffmpeg offers [${r.ffmpegEncoders.join(', ')}] → ${r.encoder ?? 'none usable'}`} (passthrough when the camera gives H.264)`,
    `video       ${p.video.width}x${p.video.height} @ ${p.video.fps} fps, ${p.video.bitrateKbps} kbit/s (now ${r.videoNow.fps} fps, ${r.videoNow.bitrateKbps} kbit/s)`,
    `thermal     ${r.thermal.tempC === null ? 'no sensor' : `${r.thermal.tempC} °C (${r.thermal.zone})`}, level ${r.thermal.level}` +
      `${r.thermal.throttled ? `, throttled=0x${r.thermal.throttled.raw.toString(16)}` : ''}` +
      `; steps at ${p.thermal.warmC}/${p.thermal.hotC}/${p.thermal.criticalC} °C`,
  ];
  return lines.join('\n') + '\n';
}

const USAGE = 'usage: moth-edge board [--root <dir>] [--json] [--ffmpeg <path>] [--no-probe]\n';

/** Entry for the runtime CLI: returns the process exit code. */
export async function runBoardCli(argv: string[], io: BoardCliIo = { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s) }): Promise<number> {
  let root = '/';
  let json = false;
  let ffmpeg: string | null = 'ffmpeg';
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--json') json = true;
    else if (a === '--no-probe') ffmpeg = null;
    else if ((a === '--root' || a === '--ffmpeg') && i + 1 < argv.length) {
      const v = argv[++i]!;
      if (a === '--root') root = v;
      else ffmpeg = v;
    } else if (a === '-h' || a === '--help') {
      io.out(USAGE);
      return 0;
    } else {
      io.err(`moth-edge board: unknown argument ${JSON.stringify(a)}\n${USAGE}`);
      return 2;
    }
  }
  const r = await boardReport({ root, ffmpeg });
  io.out(json ? JSON.stringify(r, null, 2) + '\n' : text(r));
  return 0;
}
