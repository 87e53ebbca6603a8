#!/usr/bin/env node
// Stand-in for v4l2-ctl (v4l-utils) on a machine with no camera: `--device /dev/videoN --info
// --list-formats-ext` prints the captured output for that device from $FAKE_V4L2CTL_DIR/videoN.txt,
// and fails like v4l2-ctl when there is none.
import { readFileSync } from 'node:fs';
import { basename, join } from 'node:path';

const args = process.argv.slice(2);
const known = new Set(['--device', '-d', '--info', '-D', '--list-formats-ext']);
let device = '/dev/video0';
for (let i = 0; i < args.length; i++) {
  if (!known.has(args[i])) {
    process.stderr.write(`v4l2-ctl: unrecognized option '${args[i]}'\n`);
    process.exit(1);
  }
  if (args[i] === '--device' || args[i] === '-d') device = args[++i];
}
try {
  process.stdout.write(readFileSync(join(process.env.FAKE_V4L2CTL_DIR ?? '/nonexistent', `${basename(device)}.txt`), 'utf8'));
} catch {
  process.stderr.write(`Cannot open device ${device}, exiting.\n`);
  process.exit(1);
}
