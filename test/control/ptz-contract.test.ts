// One contract suite, run against every PTZ driver and its protocol simulator:
// ONVIF (real `onvif` package ↔ SOAP simulator with WS-UsernameToken and a skewed clock),
// Hikvision ISAPI (digest auth simulator), Pelco-D (bytes over a socat pty pair).
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { EdgeError } from '../../runtime/engine/api.js';
import { IsapiDriver } from '../../drivers/ptz/isapi.js';
import { OnvifDriver } from '../../drivers/ptz/onvif.js';
import { PelcoDDriver } from '../../drivers/ptz/pelco-d-driver.js';
import type { PtzDriver } from '../../drivers/ptz/types.js';
import { IsapiDeviceSim } from '../sim/isapi-device.js';
import { OnvifDeviceSim } from '../sim/onvif-device.js';
import { PelcoDHeadSim } from '../sim/pelco-d-head.js';
import { PtyCable, waitUntil } from '../sim/serial-pty.js';

interface SimView {
  /** Current velocity signs the device is moving with. */
  velocity(): { pan: number; tilt: number; zoom: number };
  moving(): boolean;
  gotoCount(): number;
}

interface Fixture {
  driver: PtzDriver;
  sim: SimView;
}

type Setup = (t: TestContext) => Promise<Fixture>;

const implementations: Record<string, Setup> = {
  async onvif(t) {
    // Device clock one hour and a bit ahead: tokens must be stamped with device time.
    const sim = new OnvifDeviceSim({ username: 'admin', password: 's3cret-onvif', skewMs: 3_600_000 + 37_000 });
    await sim.start();
    const driver = new OnvifDriver({ name: 'front', hostname: '127.0.0.1', port: sim.port, username: 'admin', password: 's3cret-onvif', timeoutMs: 3000 });
    t.after(async () => {
      await driver.close();
      await sim.stop();
    });
    return {
      driver,
      sim: {
        velocity: () => sim.vel,
        moving: () => sim.moving,
        gotoCount: () => sim.log.filter((l) => l.op === 'GotoPreset').length,
      },
    };
  },
  async isapi(t) {
    const sim = new IsapiDeviceSim({ username: 'admin', password: 'hik-Pa55' });
    await sim.start();
    const driver = new IsapiDriver({ name: 'front', url: sim.url, username: 'admin', password: 'hik-Pa55' });
    t.after(async () => {
      await driver.close();
      await sim.stop();
    });
    return {
      driver,
      sim: {
        velocity: () => sim.vel,
        moving: () => sim.moving,
        gotoCount: () => sim.log.filter((l) => l.op === 'goto').length,
      },
    };
  },
  async 'pelco-d'(t) {
    const dir = await mkdtemp(path.join(tmpdir(), 'pelco-'));
    const cable = new PtyCable(path.join(dir, 'dev'), path.join(dir, 'head'));
    await cable.start();
    const sim = new PelcoDHeadSim(cable.peer, 3);
    await sim.open();
    const driver = new PelcoDDriver({ name: 'front', path: cable.dev, baudRate: 9600, address: 3, queryPosition: true });
    t.after(async () => {
      await driver.close();
      await sim.close();
      await cable.kill();
      await rm(dir, { recursive: true, force: true });
    });
    await waitUntil(() => driver.stats()['serialOpen'] === true, 'pelco-d serial open');
    return {
      driver,
      sim: {
        velocity: () => sim.vel,
        moving: () => sim.moving,
        gotoCount: () => sim.log.filter((l) => l.type === 'preset' && l.op === 'goto').length,
      },
    };
  },
};

const sign = (x: number) => Math.sign(x);

for (const [name, setup] of Object.entries(implementations)) {
  describe(`PTZ contract: ${name}`, () => {
    it('declares continuous move and presets', async (t) => {
      const { driver } = await setup(t);
      const c = driver.capabilities();
      assert.equal(c.continuous, true);
      assert.equal(c.presets, true);
      assert.equal(driver.name, 'front');
    });

    it('moves with the commanded directions and stops', async (t) => {
      const { driver, sim } = await setup(t);
      await driver.move({ pan: 0.5, tilt: 0.25, zoom: 1 });
      await waitUntil(() => sim.moving(), 'device moving');
      const v = sim.velocity();
      assert.deepEqual([sign(v.pan), sign(v.tilt), sign(v.zoom)], [1, 1, 1]);
      await driver.move({ pan: -1, tilt: -0.5, zoom: -1 });
      await waitUntil(() => sim.velocity().pan < 0, 'device reversed');
      const w = sim.velocity();
      assert.deepEqual([sign(w.pan), sign(w.tilt), sign(w.zoom)], [-1, -1, -1]);
      await driver.stop();
      await waitUntil(() => !sim.moving(), 'device stopped');
      assert.equal((await driver.status()).moving, false);
    });

    it('stores, lists and recalls a preset', async (t) => {
      const { driver, sim } = await setup(t);
      await driver.setPreset('7', 'dock');
      const list = await driver.presets();
      assert.ok(list.some((p) => p.id === '7' && p.name === 'dock'), `preset 7 listed: ${JSON.stringify(list)}`);
      await driver.move({ pan: 1, tilt: 0, zoom: 0 });
      await driver.gotoPreset('7');
      await waitUntil(() => sim.gotoCount() === 1, 'goto preset received');
      assert.equal(sim.moving(), false);
    });

    it('reports status with the device online', async (t) => {
      const { driver } = await setup(t);
      const s = await driver.status();
      assert.equal(s.online, true);
      assert.ok(s.position, 'position reported');
      for (const k of ['pan', 'tilt', 'zoom'] as const) assert.ok(Number.isFinite(s.position![k]), `${k} finite`);
    });

    it('refuses a malformed preset id with a typed error and keeps working', async (t) => {
      const { driver, sim } = await setup(t);
      await assert.rejects(driver.gotoPreset('<bad>'), (e: unknown) => e instanceof EdgeError && e.code === 'PTZ_BAD_PRESET');
      await driver.move({ pan: 0.3, tilt: 0, zoom: 0 });
      await waitUntil(() => sim.moving(), 'still controllable');
      await driver.stop();
    });

    it('close() is idempotent and stops a moving head', async (t) => {
      const { driver, sim } = await setup(t);
      await driver.move({ pan: 0.4, tilt: 0, zoom: 0 });
      await waitUntil(() => sim.moving(), 'moving');
      await driver.close();
      await driver.close();
      await waitUntil(() => !sim.moving(), 'stopped by close');
    });
  });
}
