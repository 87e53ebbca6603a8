// Child process of the egress bench: one 720p30 H.264 track (fixture AUs, looping) fed into the
// engine like a camera (one wake-up per frame, as a driver delivers them) and published over WHIP
// with werift, nothing else, so its /proc CPU is the publisher's cost.
// argv: fixture.json url [mode]; mode 'engine-only' feeds the engine without WHIP (the baseline
// the WHIP increment is measured against); EGRESS_CHILD_IDLE=1 connects but feeds nothing.
import { readFileSync } from 'node:fs';
import { captureClockUs } from '../../runtime/engine/api.js';
import { silentLog } from '../../runtime/egress/pang-link.js';
import { WhipPublisher } from '../../runtime/egress/whip-publisher.js';
import { testEngine } from '../egress/engine-fixture.js';

const [fixtureFile, url, mode] = process.argv.slice(2) as [string, string, string | undefined];
const fx = JSON.parse(readFileSync(fixtureFile, 'utf8')) as { mime: string; fps: number; aus: Array<{ key: boolean; b64: string }> };
const aus = fx.aus.map((a) => ({ key: a.key, data: Buffer.from(a.b64, 'base64') }));
const engine = testEngine();
const cam = { channel: 'cam', source: 'base', track: 'video' };
const pub = engine.publisher(cam, { label: 'bench', requestKeyframe: () => true });
pub.setMime(fx.mime);
let i = 0;
const t0 = performance.now();
const period = 1000 / fx.fps;
const idle = process.env.EGRESS_CHILD_IDLE === '1';
const tick = (): void => {
  if (idle) return;
  const due = Math.floor((performance.now() - t0) / period) + 1;
  while (i < due) {
    const au = aus[i % aus.length]!;
    pub.write({ ts: captureClockUs(), wallclock: Date.now(), key: au.key, data: au.data });
    i++;
  }
  // Wake up once per frame, at the next frame's time (a camera driver's cadence).
  setTimeout(tick, Math.max(1, t0 + i * period - performance.now()));
};
tick();
const whip = mode === 'engine-only' ? null : new WhipPublisher({ name: 'bench', url, tracks: [cam], source: engine, log: silentLog, backoff: { initialMs: 200, maxMs: 2000 } });
whip?.start();
const wait = setInterval(() => {
  if (!whip || whip.stats().state === 'connected') {
    clearInterval(wait);
    process.stdout.write('connected\n');
  }
}, 20);
process.stdin.on('data', () => {
  process.stdout.write(`${JSON.stringify({ framesOut: whip?.stats().feeds[0]?.framesOut ?? 0 })}\n`);
  whip?.close();
  engine.close();
  setTimeout(() => process.exit(0), 200);
});
