// /healthz covers every configured component of the real runtime and names what is down:
// a GPS whose serial port is missing (down, not "starting"), a PTZ head that cannot be reached, a
// motor controller whose port is gone, an upstream link (optional by default), the recordings on a
// full disk (a tmpfs mounted by the test) — 503 while a required one is down, 200 once they are back.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { IsapiDeviceSim } from '../sim/isapi-device.js';
import { PtyCable } from '../sim/serial-pty.js';
import { startApp, tempDir, waitFor } from '../support/app.js';
import { skipUnlessCi } from '../support/peer.js';
import { smallFs } from '../support/tmpfs.js';

interface Health {
  status: string;
  down: string[];
  components: Array<{ name: string; up: boolean; required: boolean; reason: string | null }>;
}

async function health(port: number): Promise<{ code: number; body: Health }> {
  const r = await fetch(`http://127.0.0.1:${port}/healthz`);
  return { code: r.status, body: (await r.json()) as Health };
}

describe('/healthz', () => {
  it('names every component; a missing GPS port, an unreachable PTZ head and a gone motor port are down (503); back → 200', async (t) => {
    const { dir, cleanup } = tempDir();
    t.after(cleanup);
    const gpsCable = new PtyCable(path.join(dir, 'gps'), path.join(dir, 'gps-peer'));
    const motorCable = new PtyCable(path.join(dir, 'motor'), path.join(dir, 'motor-peer'));
    const dome = new IsapiDeviceSim({ username: 'admin', password: 'pw' });
    await dome.start();
    const domePort = dome.port;
    await dome.stop(); // the camera is not there at start
    const app = await startApp({
      channels: [{ id: 'c0ffee00000000000000', sources: [{ name: 'base', driver: { kind: 'gps', path: gpsCable.dev, reopen: { initialMs: 100, maxMs: 500 } } }] }],
      control: {
        ptz: [{ kind: 'isapi', name: 'dome', url: `http://127.0.0.1:${domePort}`, username: 'admin', password: 'pw', timeoutMs: 500 }],
        motors: [{ kind: 'line', name: 'base', path: motorCable.dev, baudRate: 115200 }],
      },
      egress: { upstream: [{ url: 'ws://127.0.0.1:9', instant: 'robot', from: 'c0ffee00000000000000/base/gps', track: 'gps' }] },
    });
    t.after(async () => {
      await app.close();
      await gpsCable.kill();
      await motorCable.kill();
      await dome.stop();
    });
    await waitFor(async () => (await health(app.port)).body.down.includes('ptz:dome'), 10_000, 'the PTZ head found unreachable');
    const h = await health(app.port);
    assert.equal(h.code, 503);
    assert.equal(h.body.status, 'down');
    const byName = new Map(h.body.components.map((c) => [c.name, c]));
    const upName = [...byName.keys()].find((n) => n.startsWith('upstream:'))!;
    assert.deepEqual([...byName.keys()].sort(), ['driver:c0ffee00000000000000/base/gps', 'motor:base', 'ptz:dome', upName].sort());
    const gps = byName.get('driver:c0ffee00000000000000/base/gps')!;
    assert.equal(gps.up, false, 'a GPS whose port is missing is down, not "starting"');
    assert.match(gps.reason!, /serial port .*gps.* not open/);
    assert.match(byName.get('motor:base')!.reason!, /serial port/);
    assert.match(byName.get('ptz:dome')!.reason!, /no answer|failed/);
    const up = byName.get(upName)!;
    assert.equal(up.up, false);
    assert.equal(up.required, false, 'upstream links are optional by default');

    // Everything comes back: the ports appear, the camera answers.
    await gpsCable.start();
    await motorCable.start();
    await dome.start(domePort);
    await waitFor(async () => {
      const x = await health(app.port);
      return x.body.down.length === 1 && x.body.down[0] === upName;
    }, 15_000, 'only the optional upstream down');
    const back = await health(app.port);
    assert.equal(back.code, 200);
    assert.equal(back.body.status, 'degraded');
  });

  it('recordings on a full disk are down (503) with the reason', async (t: TestContext) => {
    const mnt = await smallFs(t, 2048);
    if (!mnt) return skipUnlessCi(t, 'cannot mount a tmpfs here (not root / no CAP_SYS_ADMIN)');
    // Fill the disk with something retention must not delete, leaving a little room.
    const filler = path.join(mnt, 'filler.bin');
    fs.writeFileSync(filler, Buffer.alloc(1900 * 1024));
    const app = await startApp({
      channels: [{ id: 'c0ffee00000000000000', sources: [{ name: 'base', driver: { kind: 'testpattern', width: 640, height: 360, fps: 25, bitrateKbps: 4000 } }] }],
      // no free-space floor: the 2 MB disk is "back" as soon as 1 MB is free
      recordings: { enabled: true, root: path.join(mnt, 'rec'), retention: { minFreeBytes: 0 } },
    });
    t.after(() => app.close());
    await waitFor(async () => (await health(app.port)).body.down.includes('recordings'), 30_000, 'recordings down on a full disk');
    const h = await health(app.port);
    assert.equal(h.code, 503);
    assert.match(h.body.components.find((c) => c.name === 'recordings')!.reason!, /disk full/);
    // space returns → up again
    fs.rmSync(filler);
    await waitFor(async () => !(await health(app.port)).body.down.includes('recordings'), 30_000, 'recordings back');
  });
});
