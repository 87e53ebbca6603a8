// Which ffmpeg to run. A configured binary wins; then the system's (Pi OS ships one with the
// hardware codecs, and Debian's 5.x x264 used ~1/3 the CPU of the packaged 4.1 — field-notes);
// the static build from @ffmpeg-installer/ffmpeg is the fallback that always exists.

import { accessSync, constants } from 'node:fs';
import { createRequire } from 'node:module';
import { EdgeError } from '../../runtime/engine/api.js';

export interface FfmpegBinary {
  path: string;
  source: 'config' | 'system' | 'packaged';
}

const SYSTEM_PATHS = ['/usr/bin/ffmpeg', '/usr/local/bin/ffmpeg'];

function executable(p: string): boolean {
  try {
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

let cached: FfmpegBinary | undefined;

export function resolveFfmpeg(configured?: string): FfmpegBinary {
  if (configured) {
    if (!configured.startsWith('/')) {
      throw new EdgeError('FFMPEG_PATH_INVALID', `ffmpeg.path must be an absolute path, got "${configured}"`);
    }
    if (!executable(configured)) {
      throw new EdgeError('FFMPEG_NOT_FOUND', `configured ffmpeg ${configured} is not an executable file`);
    }
    return { path: configured, source: 'config' };
  }
  if (cached) return cached;
  for (const p of SYSTEM_PATHS) {
    if (executable(p)) return (cached = { path: p, source: 'system' });
  }
  try {
    const require = createRequire(import.meta.url);
    const pkg = require('@ffmpeg-installer/ffmpeg') as { path: string };
    if (executable(pkg.path)) return (cached = { path: pkg.path, source: 'packaged' });
  } catch {
    // fall through to the error below
  }
  throw new EdgeError('FFMPEG_NOT_FOUND', 'no ffmpeg: install one or set ffmpeg.path');
}
