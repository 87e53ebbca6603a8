// The control router against a recording fake actuator (the router is transport-free; the drivers
// have their own contract suites against real protocol simulators).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EdgeError } from '../../runtime/engine/api.js';
import { ControlRouter, type Actuator, type Velocity } from '../../runtime/control/router.js';
import { waitUntil } from '../sim/serial-pty.js';

class FakeActuator implements Actuator {
  calls: Array<{ at: number; type: 'move' | 'stop'; v?: Velocity }> = [];
  failNext = 0;
  delayMs = 0;
  private listeners: Array<(e: { up: boolean; reason: string | null; stopped: boolean }) => void> = [];
  link = { up: true, reason: null as string | null };
  constructor(readonly id: string) {}
  private async go(type: 'move' | 'stop', v?: Velocity): Promise<void> {
    if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs));
    if (this.failNext > 0) {
      this.failNext--;
      throw new EdgeError('PTZ_LINK_DOWN', 'unreachable');
    }
    this.calls.push({ at: Date.now(), type, v });
  }
  sendMotion(v: Velocity): Promise<void> {
    return this.go('move', v);
  }
  sendStop(): Promise<void> {
    return this.go('stop');
  }
  linkStatus() {
    return { ...this.link };
  }
  onLinkChange(cb: (e: { up: boolean; reason: string | null; stopped: boolean }) => void): void {
    this.listeners.push(cb);
  }
  linkDown(reason = 'unplugged'): void {
    this.link = { up: false, reason };
    for (const cb of this.listeners) cb({ up: false, reason, stopped: false });
  }
  linkUp(stopped = true): void {
    this.link = { up: true, reason: null };
    for (const cb of this.listeners) cb({ up: true, reason: null, stopped });
  }
  get last() {
    return this.calls[this.calls.length - 1];
  }
}

const api = { kind: 'api', session: 'http:1' };
const api2 = { kind: 'api', session: 'http:2' };
const joy = { kind: 'joystick', session: 'joystick:pad' };
const remote = { kind: 'remote', session: 'pang:7' };

function setup(opts: ConstructorParameters<typeof ControlRouter>[0] = {}) {
  const r = new ControlRouter({ leaseMs: 200, maxRatePerSec: 50, ...opts });
  const a = new FakeActuator('ptz/front');
  r.add(a);
  return { r, a };
}

describe('control router: arbitration', () => {
  it('a higher-priority source takes over; a lower one is refused with CONTROL_BUSY', async (t) => {
    const { r, a } = setup({ leaseMs: 1000 });
    t.after(() => r.close());
    assert.equal(await r.move('ptz/front', api, { pan: 0.2 }), 'sent');
    assert.equal(await r.move('ptz/front', joy, { pan: -0.5 }), 'sent');
    assert.deepEqual(a.last!.v, { pan: -0.5 });
    await assert.rejects(r.move('ptz/front', api, { pan: 1 }), (e: unknown) => {
      assert.ok(e instanceof EdgeError);
      assert.equal(e.code, 'CONTROL_BUSY');
      assert.match(e.message, /joystick/);
      return true;
    });
    await assert.rejects(r.move('ptz/front', remote, { pan: 1 }), /CONTROL_BUSY/);
    const s = r.stats()['ptz/front']!;
    assert.equal(s.takeovers, 1);
    assert.equal(s.refused, 2);
    assert.equal(s.owner, 'joystick');
  });

  it('an equal-priority other session is refused while the lease runs, accepted after', async (t) => {
    const { r, a } = setup({ leaseMs: 100 });
    t.after(() => r.close());
    await r.move('ptz/front', api, { pan: 0.2 });
    await assert.rejects(r.move('ptz/front', api2, { pan: 0.3 }), /CONTROL_BUSY/);
    await waitUntil(() => a.last?.type === 'stop', 'dead-man stop of the first session');
    assert.equal(await r.move('ptz/front', api2, { pan: 0.3 }), 'sent');
  });

  it('Stop is accepted from anyone, even a lower source', async (t) => {
    const { r, a } = setup({ leaseMs: 1000 });
    t.after(() => r.close());
    await r.move('ptz/front', joy, { tilt: 1 });
    await r.stop('ptz/front', api);
    assert.equal(a.last!.type, 'stop');
  });

  it('unknown devices get CONTROL_UNKNOWN_DEVICE', async (t) => {
    const { r } = setup();
    t.after(() => r.close());
    await assert.rejects(r.move('ptz/nope', api, { pan: 1 }), /CONTROL_UNKNOWN_DEVICE/);
  });
});

describe('control router: rate limit and coalescing', () => {
  it('a burst reaches the device as at most N per second, ending with the latest velocity', async (t) => {
    const { r, a } = setup({ maxRatePerSec: 10, leaseMs: 2000 });
    t.after(() => r.close());
    const results = await Promise.all(Array.from({ length: 30 }, (_, i) => r.move('ptz/front', api, { pan: (i + 1) / 30 })));
    const moves = a.calls.filter((c) => c.type === 'move');
    assert.ok(moves.length <= 3, `sent ${moves.length}`);
    assert.deepEqual(moves[moves.length - 1]!.v, { pan: 1 });
    const s = r.stats()['ptz/front']!;
    assert.equal(s.sent + s.coalesced, 30);
    assert.equal(results.filter((x) => x === 'coalesced').length, s.coalesced);
    for (let i = 1; i < moves.length; i++) assert.ok(moves[i]!.at - moves[i - 1]!.at >= 95, 'spaced by 1/rate');
  });

  it('a repeated identical velocity refreshes the lease without resending', async (t) => {
    const { r, a } = setup({ leaseMs: 300 });
    t.after(() => r.close());
    await r.move('ptz/front', api, { pan: 0.5 });
    for (let i = 0; i < 8; i++) {
      await new Promise((res) => setTimeout(res, 60));
      assert.equal(await r.move('ptz/front', api, { pan: 0.5 }), 'unchanged');
    }
    // 480 ms > lease: only the refreshes kept it moving
    assert.equal(a.calls.filter((c) => c.type === 'stop').length, 0);
    assert.equal(a.calls.length, 1);
    await waitUntil(() => a.last?.type === 'stop', 'dead-man after refreshes stop');
  });
});

describe('control router: dead-man', () => {
  it('sends Stop when the lease runs out, within the lease + a few ms', async (t) => {
    const { r, a } = setup({ leaseMs: 120 });
    t.after(() => r.close());
    const t0 = Date.now();
    await r.move('ptz/front', remote, { pan: 1 });
    await waitUntil(() => a.last?.type === 'stop', 'dead-man stop', 2000);
    const dt = a.last!.at - t0;
    assert.ok(dt >= 115 && dt < 1000, `stop after ${dt} ms`);
    assert.equal(r.stats()['ptz/front']!.deadmanStops, 1);
  });

  it('a per-command lease overrides the default and is capped by maxLeaseMs', async (t) => {
    const { r, a } = setup({ leaseMs: 100, maxLeaseMs: 300 });
    t.after(() => r.close());
    const t0 = Date.now();
    await r.move('ptz/front', remote, { pan: 1 }, 60_000);
    await waitUntil(() => a.last?.type === 'stop', 'dead-man stop', 2000);
    const dt = a.last!.at - t0;
    assert.ok(dt >= 290 && dt < 1000, `stop after ${dt} ms`);
  });

  it('releaseSession (link drop) stops that session’s devices at once', async (t) => {
    const { r, a } = setup({ leaseMs: 5000 });
    t.after(() => r.close());
    await r.move('ptz/front', remote, { pan: 1 });
    const t0 = Date.now();
    r.releaseSession('pang:7');
    await waitUntil(() => a.last?.type === 'stop', 'link-drop stop', 1000);
    assert.ok(a.last!.at - t0 < 100);
    assert.equal(r.stats()['ptz/front']!.linkDropStops, 1);
    // and the device is free for others now
    assert.equal(await r.move('ptz/front', api, { pan: 0.1 }), 'sent');
  });

  it('releasing another session leaves the device alone', async (t) => {
    const { r, a } = setup({ leaseMs: 5000 });
    t.after(() => r.close());
    await r.move('ptz/front', remote, { pan: 1 });
    r.releaseSession('pang:other');
    await new Promise((res) => setImmediate(res));
    assert.equal(a.last!.type, 'move');
  });
});

describe('control router: device link failures', () => {
  it('after a failed call a Stop is owed and goes first once the device answers', async (t) => {
    const { r, a } = setup({ leaseMs: 5000 });
    t.after(() => r.close());
    await r.move('ptz/front', api, { pan: 0.5 });
    a.failNext = 1;
    await assert.rejects(r.move('ptz/front', api, { pan: 0.7 }), /PTZ_LINK_DOWN/);
    const before = a.calls.length;
    // the retry loop may deliver the owed Stop on its own; either way the Stop precedes the next move
    await r.move('ptz/front', api, { pan: 0.9 });
    const after = a.calls.slice(before);
    assert.equal(after[0]!.type, 'stop', `first call after the failure: ${JSON.stringify(after)}`);
    assert.deepEqual(after[after.length - 1]!.v, { pan: 0.9 });
    assert.equal(r.stats()['ptz/front']!.stopsOwed, 1);
  });

  it('an owed Stop is retried with backoff until the device answers', async (t) => {
    const { r, a } = setup({ leaseMs: 5000 });
    t.after(() => r.close());
    await r.move('ptz/front', api, { pan: 0.5 });
    a.failNext = 3;
    await assert.rejects(r.stop('ptz/front', api), /PTZ_LINK_DOWN/);
    await waitUntil(() => a.last?.type === 'stop' && a.calls.length === 2, 'owed stop delivered by retries', 5000);
    assert.ok(r.stats()['ptz/front']!.stopRetries >= 2);
    assert.equal(r.stats()['ptz/front']!.moving, false);
  });

  it('a driver link-up (driver sent Stop itself) clears the owed Stop', async (t) => {
    const { r, a } = setup({ leaseMs: 5000 });
    t.after(() => r.close());
    await r.move('ptz/front', api, { pan: 0.5 });
    a.failNext = 1;
    await assert.rejects(r.move('ptz/front', api, { pan: 0.6 }), /PTZ_LINK_DOWN/);
    a.linkDown();
    a.linkUp(true);
    const before = a.calls.length;
    await r.move('ptz/front', api, { pan: 0.6 });
    assert.deepEqual(a.calls.slice(before).map((c) => c.type), ['move']);
  });

  it('while the link is down every command is LINK_DOWN — a refresh of the same velocity too — and nothing reaches the device', async (t) => {
    const { r, a } = setup({ leaseMs: 5000 });
    t.after(() => r.close());
    const events: string[] = [];
    r.on((e) => events.push(e.type));
    assert.equal(await r.move('ptz/front', api, { pan: 0.5 }), 'sent');
    await new Promise((res) => setImmediate(res));
    assert.equal(await r.move('ptz/front', api, { pan: 0.5 }), 'unchanged');
    a.linkDown('serial port lost: EIO');
    const before = a.calls.length;
    for (const p of [r.move('ptz/front', api, { pan: 0.5 }), r.move('ptz/front', api, { pan: 0.2 }), r.stop('ptz/front', api), r.operate('ptz/front', api, true, async () => 1)]) {
      await assert.rejects(p, (e: unknown) => e instanceof EdgeError && e.code === 'LINK_DOWN' && /EIO/.test(e.message));
    }
    assert.equal(a.calls.length, before, 'nothing sent while down');
    const st = r.stats()['ptz/front']!;
    assert.equal(st.linkDownRefused, 4);
    assert.equal(st.linkUp, false);
    assert.equal(st.linkLosses, 1);
    // a second down() of the same loss is not a new loss
    a.linkDown('still gone');
    assert.equal(events.filter((x) => x === 'link-lost').length, 1);
    // an HTTP-like device coming back (no Stop of its own): Stop goes first
    a.linkUp(false);
    await waitUntil(() => a.last?.type === 'stop', 'owed stop on link return', 2000);
    assert.equal(await r.move('ptz/front', api, { pan: 0.3 }), 'sent');
    assert.deepEqual(a.calls.slice(before).map((c) => c.type), ['stop', 'move']);
    assert.deepEqual(events.filter((x) => x.startsWith('link-')), ['link-lost', 'link-back']);
  });

  it('a move waiting for the rate limit fails with LINK_DOWN when the link drops; it is not replayed on return', async (t) => {
    const { r, a } = setup({ leaseMs: 5000, maxRatePerSec: 1 });
    t.after(() => r.close());
    await r.move('ptz/front', api, { pan: 0.1 });
    const pending = r.move('ptz/front', api, { pan: 0.9 }); // held by the 1/s rate limit
    a.linkDown();
    await assert.rejects(pending, /LINK_DOWN/);
    a.linkUp(true);
    await new Promise((res) => setTimeout(res, 1100));
    assert.ok(!a.calls.some((c) => c.v?.['pan'] === 0.9), 'the pending move was never sent');
  });
});

describe('control router: operations', () => {
  it('Stop cancels a queued preset move', async (t) => {
    const { r, a } = setup({ leaseMs: 5000 });
    t.after(() => r.close());
    a.delayMs = 50;
    const m = r.move('ptz/front', api, { pan: 0.5 });
    const op = r.operate('ptz/front', api, true, async () => 'went');
    const s = r.stop('ptz/front', api);
    await assert.rejects(op, /CONTROL_CANCELLED/);
    await m;
    await s;
    assert.equal(a.last!.type, 'stop');
  });

  it('close() stops moving devices and is idempotent', async () => {
    const { r, a } = setup({ leaseMs: 5000 });
    await r.move('ptz/front', api, { pan: 0.5 });
    await r.close();
    await r.close();
    assert.equal(a.last!.type, 'stop');
    await assert.rejects(r.move('ptz/front', api, { pan: 1 }), /CONTROL_CLOSED/);
  });
});

describe('control router with a real HTTP device going away and coming back', () => {
  it('ISAPI camera unreachable mid-move: the owed Stop is the first thing it receives when back', async (t) => {
    const { IsapiDeviceSim } = await import('../sim/isapi-device.js');
    const { IsapiDriver } = await import('../../drivers/ptz/isapi.js');
    const { ControlService } = await import('../../runtime/control/service.js');
    const { silentLogger } = await import('../../runtime/log.js');
    const sim = new IsapiDeviceSim({ username: 'admin', password: 'pw' });
    await sim.start();
    const port = sim.port;
    const svc = new ControlService({ ptz: [new IsapiDriver({ name: 'dome', url: sim.url, username: 'admin', password: 'pw', timeoutMs: 300 })], log: silentLogger(), config: { leaseMs: 5000 } });
    t.after(async () => {
      await svc.close();
      await sim.stop();
    });
    await svc.ptzMove('dome', api, { pan: 0.5, tilt: 0, zoom: 0 });
    assert.equal(sim.moving, true);
    await sim.stop(); // network gone; the head keeps moving on its last command
    await assert.rejects(svc.ptzMove('dome', api, { pan: 0.8, tilt: 0, zoom: 0 }), /PTZ_LINK_DOWN/);
    // the link is known down now: every command gets LINK_DOWN at once
    await assert.rejects(svc.ptzMove('dome', api, { pan: 0.8, tilt: 0, zoom: 0 }), /LINK_DOWN/);
    assert.equal(svc.cameras()[0]!.link.up, false);
    sim.log.length = 0;
    await sim.start(port); // back: the probe finds it (network ladder, ≤ 2 s)
    await waitUntil(() => sim.log.length > 0, 'first command after the device came back', 8000);
    assert.deepEqual([sim.log[0]!.op, sim.log[0]!.pan, sim.log[0]!.tilt, sim.log[0]!.zoom], ['continuous', 0, 0, 0]);
    assert.equal(sim.moving, false);
    const st = (svc.stats()['router'] as Record<string, Record<string, number>>)['ptz/dome']!;
    assert.equal(st['stopsOwed'], 1);
    assert.equal(st['linkLosses'], 1);
    assert.ok(st['linkDownRefused']! >= 1);
  });
});
