// Unplug/replug of a serial device: socat killed (the pty links vanish) and started again.
// The driver reopens with backoff without spinning, sends Stop first, and never replays a motion
// command that was issued while the cable was out.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { EdgeError } from '../../runtime/engine/api.js';
import { PelcoDDriver } from '../../drivers/ptz/pelco-d-driver.js';
import { SabertoothDriver } from '../../drivers/motor/serial-motor.js';
import { SerialLink } from '../../drivers/serial/port.js';
import { PelcoDHeadSim } from '../sim/pelco-d-head.js';
import { SabertoothSim } from '../sim/motor-controller.js';
import { PtyCable, waitUntil } from '../sim/serial-pty.js';

async function tmp(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'replug-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

describe('serial replug', () => {
  it('Pelco-D: recovers after the cable is pulled and replugged; Stop first, no stale motion', async (t) => {
    const dir = await tmp(t);
    const cable = new PtyCable(path.join(dir, 'dev'), path.join(dir, 'head'));
    await cable.start();
    let sim = new PelcoDHeadSim(cable.peer, 1);
    await sim.open();
    const driver = new PelcoDDriver({ name: 'front', path: cable.dev, baudRate: 9600, address: 1, serial: { backoff: { initialMs: 50, maxMs: 400 } } });
    t.after(async () => {
      await driver.close();
      await sim.close();
      await cable.kill();
    });
    await waitUntil(() => driver.stats()['serialOpen'] === true, 'open');
    await driver.move({ pan: 1, tilt: 0, zoom: 0 });
    await waitUntil(() => sim.moving, 'moving');

    // Pull the cable.
    await sim.close();
    await cable.kill();
    // The loss shows on the next write (EIO) — a keepalive-less PTZ notices on its next command.
    await assert.rejects(
      (async () => {
        for (let i = 0; i < 200; i++) {
          await driver.move({ pan: 0.9, tilt: 0, zoom: 0 });
          await new Promise((r) => setTimeout(r, 10));
        }
      })(),
      (e: unknown) => e instanceof EdgeError && e.code === 'PTZ_LINK_DOWN',
    );
    // Motion while unplugged is refused at once, never queued.
    await assert.rejects(driver.move({ pan: -1, tilt: 0, zoom: 0 }), /PTZ_LINK_DOWN/);
    const failuresBefore = Number(driver.stats()['serialOpenFailures']);
    await new Promise((r) => setTimeout(r, 600));
    const failuresDuring = Number(driver.stats()['serialOpenFailures']) - failuresBefore;
    // Backoff 50..400 ms over 600 ms: a handful of attempts, not a spin.
    assert.ok(failuresDuring <= 6, `${failuresDuring} open attempts in 600 ms`);

    // Plug it back in.
    await cable.start();
    sim = new PelcoDHeadSim(cable.peer, 1);
    await sim.open();
    await waitUntil(() => sim.log.length > 0, 'first frame after replug', 5000);
    assert.equal(sim.log[0]!.type, 'stop', 'Stop is the first thing sent after replug');
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(sim.log.filter((l) => l.type === 'move').length, 0, 'no stale motion replayed');
    await driver.move({ pan: 0.5, tilt: 0, zoom: 0 });
    await waitUntil(() => sim.moving, 'controllable again');
    assert.ok(Number(driver.stats()['serialOpens']) >= 2);
  });

  it('Sabertooth: the watchdog is re-armed and Stop sent first after replug', async (t) => {
    const dir = await tmp(t);
    const cable = new PtyCable(path.join(dir, 'dev'), path.join(dir, 'ctrl'));
    await cable.start();
    let sim = new SabertoothSim(cable.peer);
    await sim.open();
    const driver = new SabertoothDriver({ name: 'base', path: cable.dev, baudRate: 9600, address: 128, keepaliveMs: 50, serial: { backoff: { initialMs: 50, maxMs: 400 } } });
    t.after(async () => {
      await driver.close();
      await sim.close();
      await cable.kill();
    });
    await waitUntil(() => driver.stats()['serialOpen'] === true, 'open');
    await driver.drive({ left: 0.5, right: 0.5 });
    await waitUntil(() => sim.moving, 'moving');
    await sim.close();
    await cable.kill();
    // keepalives hit EIO → the link notices by itself
    await waitUntil(() => driver.stats()['serialOpen'] === false, 'loss detected by keepalive write', 5000);
    await assert.rejects(driver.drive({ left: 1, right: 1 }), /MOTOR_LINK_DOWN/);
    await cable.start();
    sim = new SabertoothSim(cable.peer);
    await sim.open();
    await waitUntil(() => sim.log.some((l) => l.type === 'stop'), 'stop after replug', 5000);
    const kinds = sim.log.map((l) => l.type).filter((k) => k !== 'autobaud');
    assert.deepEqual(kinds.slice(0, 2), ['timeout-set', 'stop']);
    await new Promise((r) => setTimeout(r, 150));
    assert.equal(sim.moving, false, 'old drive command not replayed by keepalive');
  });

  it('SerialLink: a missing path is retried with growing backoff, not in a loop', async (t) => {
    const dir = await tmp(t);
    const link = new SerialLink({ path: path.join(dir, 'nothing'), baudRate: 9600, backoff: { initialMs: 20, maxMs: 200, jitter: 0 } });
    t.after(() => link.close());
    link.start();
    await new Promise((r) => setTimeout(r, 700));
    const s = link.stats();
    // 20+40+80+160+200… ≈ 5 attempts in 700 ms
    assert.ok(Number(s['openFailures']) >= 3 && Number(s['openFailures']) <= 8, `openFailures=${s['openFailures']}`);
    assert.match(String(s['lastError']), /ENOENT|No such file/);
    assert.equal(link.write(Buffer.from([1])), false);
    assert.equal(s['open'], false);
  });

  it('SerialLink: lines are split, CR stripped, overlong lines dropped and counted', async (t) => {
    const dir = await tmp(t);
    const cable = new PtyCable(path.join(dir, 'dev'), path.join(dir, 'gps'));
    await cable.start();
    t.after(() => cable.kill());
    const link = new SerialLink({ path: cable.dev, baudRate: 9600, lines: true, maxLineBytes: 16 });
    t.after(() => link.close());
    const lines: string[] = [];
    link.onLine((l) => lines.push(l));
    let opened = false;
    link.onOpen(() => (opened = true));
    link.start();
    await waitUntil(() => opened, 'open');
    const { openPeer, closePeer } = await import('../sim/serial-pty.js');
    const peer = await openPeer(cable.peer, 9600);
    t.after(() => closePeer(peer));
    peer.write('abc\r\nde');
    peer.write('f\n' + 'x'.repeat(40) + '\nok\n');
    await waitUntil(() => lines.length >= 3, 'lines');
    assert.deepEqual(lines, ['abc', 'def', 'ok']);
    assert.equal(link.stats()['dropLongLine'], 1);
  });
});
