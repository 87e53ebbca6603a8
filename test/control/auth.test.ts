// Credentials: at most 2 attempts, then a clear error and a long back-off (cameras lock accounts);
// Digest only, never Basic; ONVIF tokens stamped with the device's clock.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Cam } from 'onvif';
import { EdgeError } from '../../runtime/engine/api.js';
import { IsapiDriver } from '../../drivers/ptz/isapi.js';
import { OnvifDriver } from '../../drivers/ptz/onvif.js';
import { IsapiDeviceSim } from '../sim/isapi-device.js';
import { OnvifDeviceSim } from '../sim/onvif-device.js';

const code = (c: string) => (e: unknown) => e instanceof EdgeError && e.code === c;

describe('Hikvision ISAPI auth', () => {
  it('wrong password: exactly 2 attempts, PTZ_AUTH_FAILED, then fails fast without touching the device', async (t) => {
    const sim = new IsapiDeviceSim({ username: 'admin', password: 'right', lockAfter: 3 });
    await sim.start();
    const d = new IsapiDriver({ name: 'dome', url: sim.url, username: 'admin', password: 'wrong', authLockoutMs: 600_000 });
    t.after(async () => {
      await d.close();
      await sim.stop();
    });
    await assert.rejects(d.move({ pan: 1, tilt: 0, zoom: 0 }), (e: unknown) => {
      assert.ok(code('PTZ_AUTH_FAILED')(e));
      assert.match((e as Error).message, /locked out for 600 s/);
      assert.ok(!(e as Error).message.includes('wrong'), 'password not in the message');
      assert.ok(!JSON.stringify((e as EdgeError).context).includes('wrong'), 'password not in the context');
      return true;
    });
    assert.equal(sim.failedLogins, 2);
    assert.equal(sim.locked, false, 'the device account was never locked');
    const before = sim.requests;
    for (let i = 0; i < 5; i++) await assert.rejects(d.move({ pan: 1, tilt: 0, zoom: 0 }), code('PTZ_AUTH_LOCKED'));
    assert.equal(sim.requests, before, 'locked-out calls never reach the device');
    assert.equal(d.stats()['lockouts'], 1);
    assert.equal(d.stats()['locked'], true);
  });

  it('digest with SHA-256 works; nonces are reused with increasing nc', async (t) => {
    const sim = new IsapiDeviceSim({ username: 'admin', password: 'pw', algorithm: 'SHA-256' });
    await sim.start();
    const d = new IsapiDriver({ name: 'dome', url: sim.url, username: 'admin', password: 'pw' });
    t.after(async () => {
      await d.close();
      await sim.stop();
    });
    for (let i = 0; i < 5; i++) await d.move({ pan: i / 10, tilt: 0, zoom: 0 });
    await d.stop();
    assert.equal(sim.log.length, 6);
    assert.equal(sim.failedLogins, 0);
    assert.equal(d.stats()['authChallenges'], 1, 'one challenge, then the nonce is reused');
  });

  it('a device offering only Basic is refused: credentials are never sent in clear', async (t) => {
    const sim = new IsapiDeviceSim({ username: 'admin', password: 'pw', basicOnly: true });
    await sim.start();
    const d = new IsapiDriver({ name: 'dome', url: sim.url, username: 'admin', password: 'pw' });
    t.after(async () => {
      await d.close();
      await sim.stop();
    });
    await assert.rejects(d.move({ pan: 1, tilt: 0, zoom: 0 }), code('DIGEST_NOT_OFFERED'));
    assert.equal(sim.basicAttempts, 0);
  });

  it('an unreachable device is PTZ_LINK_DOWN, not an auth failure', async () => {
    const sim = new IsapiDeviceSim({ username: 'a', password: 'b' });
    await sim.start();
    const url = sim.url;
    await sim.stop();
    const d = new IsapiDriver({ name: 'dome', url, username: 'a', password: 'b', timeoutMs: 500 });
    await assert.rejects(d.move({ pan: 1, tilt: 0, zoom: 0 }), code('PTZ_LINK_DOWN'));
    assert.equal((await d.status()).online, false);
    await d.close();
  });
});

describe('ONVIF auth and clock skew', () => {
  it('a device clock 2 h off: tokens stamped with local time are refused, the driver’s are accepted', async (t) => {
    const sim = new OnvifDeviceSim({ username: 'admin', password: 'pw', skewMs: -2 * 3_600_000 });
    await sim.start();
    t.after(() => sim.stop());
    // Without the unauthenticated GetSystemDateAndTime first, the token carries local time.
    const naive = new Cam({ hostname: '127.0.0.1', port: sim.port, username: 'admin', password: 'pw', autoconnect: false } as ConstructorParameters<typeof Cam>[0]);
    const err = await new Promise<Error | null>((r) => naive.getCapabilities((e: Error | null) => r(e)));
    assert.match(String(err?.message), /not Authorized/i);
    const failuresBefore = sim.authFailures;
    const d = new OnvifDriver({ name: 'cam', hostname: '127.0.0.1', port: sim.port, username: 'admin', password: 'pw' });
    t.after(() => d.close());
    await d.move({ pan: 0.5, tilt: 0, zoom: 0 });
    assert.equal(sim.moving, true);
    assert.equal(sim.authFailures, failuresBefore);
    const s = await d.status();
    assert.ok(Math.abs(Number(s.detail?.['clockOffsetMs']) + 2 * 3_600_000) < 2000, `offset ${s.detail?.['clockOffsetMs']}`);
  });

  it('wrong password: 2 attempts then PTZ_AUTH_LOCKED without touching the device', async (t) => {
    const sim = new OnvifDeviceSim({ username: 'admin', password: 'right' });
    await sim.start();
    const d = new OnvifDriver({ name: 'cam', hostname: '127.0.0.1', port: sim.port, username: 'admin', password: 'wrong' });
    t.after(async () => {
      await d.close();
      await sim.stop();
    });
    await assert.rejects(d.move({ pan: 1, tilt: 0, zoom: 0 }), code('PTZ_AUTH_FAILED'));
    await assert.rejects(d.move({ pan: 1, tilt: 0, zoom: 0 }), (e: unknown) => code('PTZ_AUTH_FAILED')(e) && /locked out/.test((e as Error).message));
    assert.equal(sim.authFailures, 2);
    const before = sim.requests;
    await assert.rejects(d.move({ pan: 1, tilt: 0, zoom: 0 }), code('PTZ_AUTH_LOCKED'));
    assert.equal(sim.requests, before);
    assert.ok(!JSON.stringify(d.stats()).includes('wrong'));
  });
});
