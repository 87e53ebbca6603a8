// A missing peer: skipped with its reason on a developer's machine, a failure in CI (where
// .ci/run installs every peer, so a skip there would hide a broken install).
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';

export function skipUnlessCi(t: TestContext, reason: string): void {
  if (process.env.CI) assert.fail(`${reason} — CI installs this peer, so it must not be skipped`);
  t.skip(reason);
}
