// Where the better-sqlite3 addon comes from: node-gyp-build finds build/Release when it was built
// on this machine, else prebuilds/<platform>-<arch>/node.abi<N>.node — the layout the arm64
// bundle ships (board/bundle/build.ts), so one code path loads both.

import { createRequire } from 'node:module';
import { dirname } from 'node:path';

const require = createRequire(import.meta.url);
let cached: string | undefined;

export function sqliteNativeBinding(): string {
  if (cached) return cached;
  const gypBuild = require('node-gyp-build') as { path(dir: string): string };
  cached = gypBuild.path(dirname(require.resolve('better-sqlite3/package.json')));
  return cached;
}
