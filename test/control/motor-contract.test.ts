// One contract suite for motor controllers, against each protocol simulator on a socat pty pair:
// Sabertooth packetized serial and the line protocol.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { LineMotorDriver, SabertoothDriver } from '../../drivers/motor/serial-motor.js';
import type { MotorDriver } from '../../drivers/motor/types.js';
import { LineMotorSim, SabertoothSim } from '../sim/motor-controller.js';
import { PtyCable, waitUntil } from '../sim/serial-pty.js';

interface Fixture {
  driver: MotorDriver;
  sim: SabertoothSim | LineMotorSim;
}

async function cable(t: TestContext): Promise<PtyCable> {
  const dir = await mkdtemp(path.join(tmpdir(), 'motor-'));
  const c = new PtyCable(path.join(dir, 'dev'), path.join(dir, 'ctrl'));
  await c.start();
  t.after(async () => {
    await c.kill();
    await rm(dir, { recursive: true, force: true });
  });
  return c;
}

const implementations: Record<string, (t: TestContext) => Promise<Fixture>> = {
  async sabertooth(t) {
    const c = await cable(t);
    const sim = new SabertoothSim(c.peer, 130);
    await sim.open();
    const driver = new SabertoothDriver({ name: 'base', path: c.dev, baudRate: 9600, address: 130, deviceTimeoutMs: 500, keepaliveMs: 100 });
    t.after(async () => {
      await driver.close();
      await sim.close();
    });
    await waitUntil(() => sim.log.some((l) => l.type === 'timeout-set'), 'serial timeout armed on open');
    return { driver, sim };
  },
  async line(t) {
    const c = await cable(t);
    const sim = new LineMotorSim(c.peer, 115200, 500);
    await sim.open();
    const driver = new LineMotorDriver({ name: 'base', path: c.dev, baudRate: 115200, keepaliveMs: 100 });
    t.after(async () => {
      await driver.close();
      await sim.close();
    });
    await waitUntil(() => driver.stats()['serialOpen'] === true, 'serial open');
    return { driver, sim };
  },
};

for (const [name, setup] of Object.entries(implementations)) {
  describe(`motor contract: ${name}`, () => {
    it('sends Stop first when the port opens', async (t) => {
      const { sim } = await setup(t);
      await waitUntil(() => sim.log.some((l) => l.type === 'stop'), 'initial stop');
      assert.equal(sim.log.find((l) => l.type === 'drive' || l.type === 'stop')!.type, 'stop');
    });

    it('drives both channels with sign and magnitude, then stops', async (t) => {
      const { driver, sim } = await setup(t);
      await driver.drive({ left: 0.5, right: -0.25 });
      await waitUntil(() => sim.moving, 'moving');
      assert.ok(Math.abs(sim.speeds.left - 0.5) < 0.01, `left ${sim.speeds.left}`);
      assert.ok(Math.abs(sim.speeds.right + 0.25) < 0.01, `right ${sim.speeds.right}`);
      await driver.stop();
      await waitUntil(() => !sim.moving, 'stopped');
    });

    it('keeps the controller watchdog fed while moving', async (t) => {
      const { driver, sim } = await setup(t);
      await driver.drive({ left: 0.3, right: 0.3 });
      await waitUntil(() => sim.moving, 'moving');
      const before = sim.log.filter((l) => l.type === 'drive').length;
      // 3 keepalives at 100 ms and no watchdog stop (device watchdog 500 ms)
      await waitUntil(() => sim.log.filter((l) => l.type === 'drive').length >= before + 3, 'keepalive re-sends');
      assert.equal(sim.log.some((l) => l.type === 'watchdog-stop'), false);
      assert.equal(sim.moving, true);
      await driver.stop();
    });

    it('reports status while online', async (t) => {
      const { driver, sim } = await setup(t);
      const s = await driver.status();
      assert.equal(s.online, true);
      assert.deepEqual(s.speeds, { left: 0, right: 0 });
      if (sim instanceof LineMotorSim) {
        assert.equal(s.voltage, 12.4);
        assert.equal(s.current, 0.8);
        assert.deepEqual(s.faults, []);
      }
    });

    it('clamps out-of-range and non-finite speeds', async (t) => {
      const { driver, sim } = await setup(t);
      await driver.drive({ left: 7, right: Number.NaN });
      await waitUntil(() => sim.moving, 'moving');
      assert.equal(sim.speeds.left, 1);
      assert.equal(sim.speeds.right, 0);
      await driver.stop();
    });

    it('close() is idempotent and stops the motors', async (t) => {
      const { driver, sim } = await setup(t);
      await driver.drive({ left: 0.2, right: 0.2 });
      await waitUntil(() => sim.moving, 'moving');
      await driver.close();
      await driver.close();
      await waitUntil(() => !sim.moving, 'stopped by close');
      assert.equal(sim.log.some((l) => l.type === 'watchdog-stop'), false, 'stopped by a command, not by the watchdog');
    });
  });
}

describe('line protocol: device replies', () => {
  it('counts acks and reports device faults', async (t) => {
    const { driver, sim } = await implementations['line']!(t);
    (sim as LineMotorSim).faults = ['overcurrent', 'temp'];
    await driver.drive({ left: 0.1, right: 0.1 });
    await waitUntil(() => Number(driver.stats()['acks']) >= 2, 'acks counted');
    const s = await driver.status();
    assert.deepEqual(s.faults, ['overcurrent', 'temp']);
    assert.ok(s.lastReplyAgoMs !== undefined && s.lastReplyAgoMs < 1000);
    await driver.stop();
  });
});
