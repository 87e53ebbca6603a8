// A size-limited filesystem for disk-full tests: a tmpfs mounted by the test (root is needed),
// unmounted and removed after it. Null when mounting is not possible here.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export async function smallFs(t: { after: (fn: () => unknown) => void }, sizeKb: number): Promise<string | null> {
  const dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'small-fs-'));
  const mnt = path.join(dir, 'mnt');
  fs.mkdirSync(mnt);
  let mounted = false;
  // one hook, in order: unmount, then remove the folder
  t.after(() => {
    if (mounted) {
      try {
        execFileSync('umount', ['-l', mnt], { stdio: 'pipe' });
      } catch {
        /* already gone */
      }
    }
    fs.rmSync(dir, { recursive: true, force: true });
  });
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeKb}k`, 'tmpfs', mnt], { stdio: 'pipe' });
    mounted = true;
  } catch {
    return null;
  }
  return mnt;
}
