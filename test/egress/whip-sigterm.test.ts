// Issue 14, "leave cleanly": at SIGTERM a WHIP publisher's DELETE is sent and awaited before the
// process exits, so the server ends the session at once instead of holding it until its own
// timeout. Two real runtimes (the CLI): one ingests over WHIP (werift), the other publishes its
// test pattern to it; the publisher is stopped with SIGTERM and the ingest must have no session
// left the moment the publisher's process has exited.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startRuntime } from '../support/runtime-process.js';
import { tempDir } from './helpers.js';
import { waitFor } from '../support/app.js';

const TOKEN = 'whip-ingest-token-0123456789';

interface IngestStats {
  egress: { whipIngest: { sessions: unknown[] } | null };
}
interface PubStats {
  egress: { whip: Array<{ state: string; deletes: { ok: number; failed: number } }> };
}

test('SIGTERM: the WHIP server hears the DELETE before the publisher exits; exit 0 within 5 s', { timeout: 90_000 }, async (t) => {
  const dir = await tempDir(t, 'whip-sigterm-');
  const ingest = await startRuntime(t, dir, 'ingest.yaml', ['server: { port: 0 }', 'log: { level: warn }', 'recordings: { enabled: false }', 'egress:', `  whipIngest: { enabled: true, token: "${TOKEN}" }`].join('\n'));
  const pub = await startRuntime(t, dir, 'robot.yaml', [
    'server: { port: 0 }',
    'log: { level: warn }',
    'recordings: { enabled: false }',
    'channels:',
    '  - id: c0ffee00000000000001',
    '    name: robot',
    '    sources:',
    '      - name: base',
    '        driver: { kind: testpattern, width: 320, height: 240, fps: 15, bitrateKbps: 300 }',
    'egress:',
    '  whep: { enabled: false }',
    '  whip:',
    `    - { url: "http://127.0.0.1:${ingest.port}/whip/ingest/robot/video", token: "${TOKEN}", tracks: [robot/base/video] }`,
  ].join('\n'));
  await waitFor(async () => (await pub.api<PubStats>('/api/stats')).egress.whip[0]?.state === 'connected', 30_000, 'the WHIP session is up');
  await waitFor(async () => ((await ingest.api<IngestStats>('/api/stats')).egress.whipIngest?.sessions.length ?? 0) === 1, 10_000, 'the ingest holds one session');
  const t0 = Date.now();
  pub.child.kill('SIGTERM');
  const code = await pub.exited;
  const ms = Date.now() - t0;
  // The publisher is gone; the server must already have ended the session (no waiting here).
  const left = (await ingest.api<IngestStats>('/api/stats')).egress.whipIngest!.sessions.length;
  assert.equal(code, 0, 'exit 0');
  assert.ok(ms < 5000, `stopped in ${ms} ms`);
  assert.equal(left, 0, 'the DELETE reached the server before the process exited');
  t.diagnostic(`publisher stopped in ${ms} ms; ingest sessions left: ${left}`);
});
