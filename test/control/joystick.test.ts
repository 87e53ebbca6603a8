// An attached joystick (real js_event bytes through a fifo) driving a Pelco-D head on a pty and a
// Sabertooth motor controller: no network involved. Dead zone, hold-to-move with lease refresh,
// stop and preset buttons, priority over the HTTP API, and Stop when the device goes away.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { silentLogger } from '../../runtime/log.js';
import { createControlService } from '../../runtime/control/service.js';
import { encodeJsEvent, JS_EVENT_AXIS, JS_EVENT_BUTTON, JS_EVENT_INIT } from '../../drivers/input/joystick.js';
import { PelcoDHeadSim } from '../sim/pelco-d-head.js';
import { SabertoothSim } from '../sim/motor-controller.js';
import { PtyCable, waitUntil } from '../sim/serial-pty.js';

async function setup(t: TestContext) {
  const dir = await mkdtemp(path.join(tmpdir(), 'joy-'));
  const fifo = path.join(dir, 'js0');
  execFileSync('mkfifo', [fifo]);
  const headCable = new PtyCable(path.join(dir, 'ptz'), path.join(dir, 'ptz-peer'));
  const motorCable = new PtyCable(path.join(dir, 'mot'), path.join(dir, 'mot-peer'));
  await headCable.start();
  await motorCable.start();
  const head = new PelcoDHeadSim(headCable.peer, 1);
  await head.open();
  const motor = new SabertoothSim(motorCable.peer, 128);
  await motor.open();
  const svc = createControlService(
    {
      leaseMs: 300,
      ptz: [{ kind: 'pelco-d', name: 'front', path: headCable.dev, address: 1 }],
      motors: [{ kind: 'sabertooth', name: 'base', path: motorCable.dev, keepaliveMs: 100 }],
      joysticks: [
        {
          name: 'pad',
          path: fifo,
          ptz: 'front',
          motor: 'base',
          deadzone: 0.1,
          expo: 0,
          axes: { pan: { axis: 0 }, tilt: { axis: 1, invert: true } },
          drive: { mode: 'tank', left: { axis: 2 }, right: { axis: 3 } },
          buttons: { stop: 0, presets: { '5': 3 } },
          refreshMs: 100,
        },
      ],
    },
    silentLogger(),
  );
  // The writer end of the fifo is "the joystick".
  const fd = fs.openSync(fifo, fs.constants.O_RDWR);
  let open = true;
  const send = (...events: Buffer[]) => fs.writeSync(fd, Buffer.concat(events));
  const unplug = () => {
    if (open) fs.closeSync(fd);
    open = false;
  };
  t.after(async () => {
    unplug();
    await svc.close();
    await head.close();
    await motor.close();
    await headCable.kill();
    await motorCable.kill();
    await rm(dir, { recursive: true, force: true });
  });
  await waitUntil(() => {
    const d = svc.stats()['drivers'] as Record<string, Record<string, unknown>>;
    return d['ptz/front']!['serialOpen'] === true && d['motor/base']!['serialOpen'] === true;
  }, 'serial ports open');
  await waitUntil(() => (svc.stats()['joysticks'] as Array<Record<string, unknown>>)[0]!['open'] === true, 'joystick open');
  const axis = (n: number, v: number) => encodeJsEvent(Date.now() & 0xffffffff, v, JS_EVENT_AXIS, n);
  const button = (n: number, v: number) => encodeJsEvent(Date.now() & 0xffffffff, v, JS_EVENT_BUTTON, n);
  return { svc, head, motor, send, unplug, axis, button, fifo, fd };
}

describe('joystick control', () => {
  it('initial-state events and dead-zone noise move nothing', async (t) => {
    const { head, send, axis } = await setup(t);
    send(encodeJsEvent(0, 0, JS_EVENT_AXIS | JS_EVENT_INIT, 0), encodeJsEvent(0, 0, JS_EVENT_BUTTON | JS_EVENT_INIT, 0), axis(0, 2000), axis(1, -3000));
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(head.log.filter((l) => l.type === 'move').length, 0);
  });

  it('held stick keeps the head moving past the lease; centring stops it', async (t) => {
    const { head, send, axis } = await setup(t);
    send(axis(0, 32767), axis(1, -16000));
    await waitUntil(() => head.vel.pan > 0 && head.vel.tilt !== 0, 'head moving on both axes');
    assert.ok(head.vel.pan > 0.9, `pan ${head.vel.pan}`);
    assert.ok(head.vel.tilt > 0, 'stick up (negative axis) tilts up via invert');
    const start = Date.now();
    await waitUntil(() => Date.now() - start > 800, 'hold 800 ms (> lease 300 ms)');
    assert.equal(head.moving, true, 'refreshed lease kept it moving');
    assert.equal(head.log.filter((l) => l.type === 'stop' && l.at > start).length, 0);
    send(axis(0, 0), axis(1, 0));
    await waitUntil(() => !head.moving, 'stopped at centre');
  });

  it('tank drive on two axes drives the motor controller', async (t) => {
    const { motor, send, axis } = await setup(t);
    send(axis(2, 32767), axis(3, -32767));
    await waitUntil(() => motor.speeds.left !== 0 && motor.speeds.right !== 0, 'motor driving both sides');
    assert.deepEqual(motor.speeds, { left: 1, right: -1 });
    send(axis(2, 0), axis(3, 0));
    await waitUntil(() => !motor.moving, 'motor stopped');
  });

  it('stop button stops while deflected and holds until the stick is centred; preset button recalls', async (t) => {
    const { head, send, axis, button } = await setup(t);
    send(axis(0, -32767));
    await waitUntil(() => head.moving, 'moving');
    send(button(0, 1), button(0, 0));
    await waitUntil(() => !head.moving, 'stopped by button');
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(head.moving, false, 'refresh did not restart motion while latched');
    send(axis(0, 0));
    send(button(3, 1), button(3, 0));
    await waitUntil(() => head.log.some((l) => l.type === 'preset' && l.op === 'goto' && l.id === 5), 'preset 5 recalled');
  });

  it('outranks the HTTP API while held', async (t) => {
    const { svc, send, axis } = await setup(t);
    send(axis(0, 20000));
    await waitUntil(() => svc.router.holder('ptz/front')?.kind === 'joystick', 'joystick holds');
    await assert.rejects(svc.ptzMove('front', { kind: 'api', session: 'http:x' }, { pan: -1, tilt: 0, zoom: 0 }), /CONTROL_BUSY/);
    send(axis(0, 0));
  });

  it('unplugging the joystick mid-move stops the head at once', async (t) => {
    const { head, send, axis, unplug, svc } = await setup(t);
    send(axis(0, 32767));
    await waitUntil(() => head.moving, 'moving');
    const at = Date.now();
    unplug();
    await waitUntil(() => !head.moving, 'stopped on unplug', 1000);
    assert.ok(Date.now() - at < 1000);
    const j = (svc.stats()['joysticks'] as Array<Record<string, number>>)[0]!;
    assert.equal(j['losses'], 1);
  });
});

describe('evdev gamepad input', () => {
  it('reads input_event records from a fifo, axis ranges from config, and notices the device leaving', async (t) => {
    const { JoystickInput } = await import('../../drivers/input/joystick.js');
    const dir = await mkdtemp(path.join(tmpdir(), 'evdev-'));
    const fifo = path.join(dir, 'event3');
    execFileSync('mkfifo', [fifo]);
    const input = new JoystickInput({ path: fifo, format: 'evdev', evdevEventSize: 24, evdevRanges: { 0: { min: 0, max: 255 } }, pollMs: 5 });
    const events: Array<{ kind: string; number: number; value: number }> = [];
    const lost: string[] = [];
    input.onEvent((e) => events.push(e));
    input.onLost((w) => lost.push(w));
    input.start();
    const fd = fs.openSync(fifo, fs.constants.O_RDWR);
    t.after(async () => {
      input.close();
      await rm(dir, { recursive: true, force: true });
    });
    const ev = (type: number, code: number, value: number) => {
      const b = Buffer.alloc(24);
      b.writeUInt16LE(type, 16);
      b.writeUInt16LE(code, 18);
      b.writeInt32LE(value, 20);
      return b;
    };
    await waitUntil(() => input.isOpen, 'open');
    // one record split across two writes, then a sync event (ignored)
    const all = Buffer.concat([ev(3, 0, 0), ev(1, 304, 1), ev(0, 0, 0)]);
    fs.writeSync(fd, all.subarray(0, 30));
    fs.writeSync(fd, all.subarray(30));
    await waitUntil(() => events.length === 2, 'two events');
    assert.deepEqual(events, [
      { kind: 'axis', number: 0, value: -1, init: false },
      { kind: 'button', number: 304, value: 1, init: false },
    ]);
    fs.closeSync(fd);
    await waitUntil(() => lost.length === 1, 'loss noticed');
  });
});
