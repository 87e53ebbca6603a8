// Non-TypeScript simulator files (the GStreamer RTSP server script, stand-in CLIs) stay in the
// source tree: tsc does not copy them to dist/. Resolve them from either place.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export function simAsset(name: string): string {
  const here = fileURLToPath(new URL('.', import.meta.url)); // <root>/test/sim/ or <root>/dist/test/sim/
  const candidates = [join(here, name), join(here, '..', '..', '..', 'test', 'sim', name)];
  return candidates.find((p) => existsSync(p)) ?? candidates[0]!;
}
