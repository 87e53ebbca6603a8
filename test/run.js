#!/usr/bin/env node
// Runs every compiled test file (dist/test/**/*.test.js) with node's test runner.
// Before that, checks the real peers the tests use: a missing peer fails loudly (never a skip).
// Usage: node test/run.js [filter-substring ...]

import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const distTest = join(root, 'dist', 'test');

const PEERS = [
  ['ffmpeg', ['-version']],
  ['ffprobe', ['-version']],
  ['socat', ['-V']],
  ['openssl', ['version']],
  ['nginx', ['-v']],
  ['chromium', ['--version']],
  ['gst-launch-1.0', ['--version']],
  ['/usr/bin/python3', ['-c', 'import gi; gi.require_version("GstRtspServer", "1.0"); from gi.repository import GstRtspServer']],
];

const missing = [];
for (const [cmd, args] of PEERS) {
  const r = spawnSync(cmd, args, { stdio: 'ignore', timeout: 20_000 });
  if (r.error || r.status !== 0) missing.push(cmd);
}
if (missing.length) {
  console.error(`test peers missing: ${missing.join(', ')} — install them (see .ci/apt-packages) before running the tests.`);
  if (process.env.CI || !process.env.MOTH_EDGE_ALLOW_MISSING_PEERS) process.exit(1);
}

function walk(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) {
      if (name !== 'bench') out.push(...walk(p));
    } else if (name.endsWith('.test.js')) out.push(p);
  }
  return out;
}

if (!existsSync(distTest)) {
  console.error('dist/test is missing: run `npm run build` first (npm test does it).');
  process.exit(1);
}
const filters = process.argv.slice(2);
const files = walk(distTest)
  .filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)))
  .sort();
if (files.length === 0) {
  console.error('no test files matched');
  process.exit(1);
}
console.log(`running ${files.length} test files: ${files.map((f) => relative(distTest, f)).join(' ')}`);
// Two files at a time on a 2-core machine; a file that hangs is cut at 5 minutes.
const r = spawnSync(process.execPath, ['--test', '--test-concurrency=2', '--test-timeout=300000', ...files], {
  stdio: 'inherit',
  cwd: root,
  env: { ...process.env, NODE_OPTIONS: [process.env.NODE_OPTIONS, '--enable-source-maps'].filter(Boolean).join(' ') },
});
process.exit(r.status ?? 1);
