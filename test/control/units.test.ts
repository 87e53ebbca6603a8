// Pure pieces of issue 17, with tables and fast-check properties (no I/O, clocks passed in):
// the per-sender command clock, the shared device auth state, the access gate's rate limit,
// the health verdict.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { CommandClock } from '../../runtime/control/command.js';
import { DeviceAuth } from '../../drivers/auth/device-auth.js';
import { EdgeError } from '../../runtime/engine/api.js';
import { AccessGate, doorOf, openDoors } from '../../runtime/http/access.js';
import { driverHealth, globMatch, healthReport } from '../../runtime/http/health.js';

describe('CommandClock: how late a command is, without trusting either clock', () => {
  it('property: with any sender clock offset and path delays under the ttl, fresh commands pass; a command held longer than ttl + jitter is dropped', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: -86_400_000, max: 86_400_000 }), // sender clock offset
        fc.array(fc.integer({ min: 0, max: 200 }), { minLength: 2, maxLength: 60 }), // path delays (ms)
        fc.integer({ min: 1300, max: 60_000 }), // how long the late one sat in a frozen link
        (skew, delays, held) => {
          const c = new CommandClock();
          const ttl = 1000;
          let now = 1_000_000;
          for (const d of delays) {
            now += 250;
            const sent = now - d + skew;
            assert.equal(c.check(sent, ttl, now).fresh, true, `fresh command with delay ${d}`);
          }
          now += 250;
          assert.equal(c.check(now - held + skew, ttl, now).fresh, false, `held ${held} ms`);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('a burst released by a stalled link does not teach itself: every command of it older than the ttl is dropped', () => {
    const c = new CommandClock();
    let now = 0;
    for (let i = 0; i < 10; i++) c.check((now += 250) - 20, 1000, now);
    // 50 s stall: 200 moves sent every 250 ms arrive at once
    const sentFrom = now;
    now += 50_000;
    const verdicts = [];
    for (let i = 0; i < 200; i++) verdicts.push(c.check(sentFrom + i * 250, 1000, now + i).fresh);
    const accepted = verdicts.filter(Boolean).length;
    // only those sent in the last second before the release pass
    assert.ok(accepted <= 5, `${accepted} of the burst accepted`);
    assert.equal(c.rebases, 0);
  });

  it('a sender clock that steps back is re-learned after 8 consistent commands over 3 s (counted)', () => {
    const c = new CommandClock();
    let now = 0;
    for (let i = 0; i < 5; i++) c.check((now += 250) - 10, 1000, now);
    const step = -5000; // the operator's clock jumped back 5 s
    const out: boolean[] = [];
    for (let i = 0; i < 20; i++) out.push(c.check((now += 250) - 10 + step, 1000, now).fresh);
    assert.equal(out[0], false);
    assert.equal(c.rebases, 1);
    assert.ok(out.slice(-5).every(Boolean), 'accepted again after the rebase');
  });
});

describe('DeviceAuth: one login state per account', () => {
  const refused = async () => ({ ok: false as const, refused: true as const });
  const accepted = async () => ({ ok: true as const, value: 'v' });

  it('property: however many concurrent exchanges with a wrong password, the device sees at most 2 refusals until reset', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.integer({ min: 0, max: 5 }), { minLength: 1, maxLength: 30 }), async (delays) => {
        const a = new DeviceAuth({ label: 'x' });
        let atDevice = 0;
        const calls = delays.map((d) =>
          a.run(async () => {
            atDevice++;
            await new Promise((r) => setTimeout(r, d));
            return refused();
          }),
        );
        const results = await Promise.allSettled(calls);
        assert.ok(atDevice <= 2, `${atDevice} refusals at the device`);
        assert.ok(results.every((r) => r.status === 'rejected' && r.reason instanceof EdgeError));
        assert.equal(a.stats().state, delays.length >= 2 ? 'locked' : 'unverified');
      }),
      { numRuns: 60 },
    );
  });

  it('lock-out grows 10 min → 20 min; a success resets the count; reset() allows 2 fresh tries; a network error counts nothing', async () => {
    const a = new DeviceAuth({ label: 'x', lockoutMs: 600_000 });
    await assert.rejects(a.run(refused), /refused the credentials$/);
    await assert.rejects(a.run(async () => Promise.reject(new Error('ECONNRESET'))), /ECONNRESET/);
    assert.equal(a.triesLeft(), 1, 'the network error did not count');
    await assert.rejects(a.run(refused), /locked out for 600 s/);
    await assert.rejects(a.run(accepted), (e: unknown) => e instanceof EdgeError && e.code === 'AUTH_LOCKED');
    a.reset();
    assert.equal(await a.run(accepted), 'v');
    await assert.rejects(a.run(refused));
    assert.equal(await a.run(accepted), 'v', 'a success clears the refusal count');
    assert.equal(a.triesLeft(), 2);
    assert.equal(a.stats().resets, 1);
  });
});

describe('AccessGate', () => {
  it('wrong tokens block an address after maxFailures in the window; missing ones never do; other addresses are not affected', () => {
    const g = new AccessGate({ bindIsLoopback: false, tokens: { api: 'the-token-0123456789', control: 'the-token-0123456789' }, rateLimit: { maxFailures: 3, windowMs: 10_000, blockMs: 5000 } });
    let t = 0;
    for (let i = 0; i < 20; i++) assert.equal(g.check('api', 'a', undefined, (t += 10)).ok, false);
    assert.equal(g.blockedFor('a', t), 0, 'missing tokens are not guesses');
    for (let i = 0; i < 2; i++) assert.equal((g.check('api', 'a', 'nope', (t += 10)) as { code: string }).code, 'AUTH_FAILED');
    // failures older than the window are forgotten
    t += 20_000;
    assert.equal((g.check('api', 'a', 'nope', t) as { code: string }).code, 'AUTH_FAILED');
    assert.equal(g.blockedFor('a', t), 0);
    g.check('api', 'a', 'nope', (t += 10));
    g.check('control', 'a', 'nope', (t += 10));
    assert.equal((g.check('control', 'a', 'the-token-0123456789', (t += 10)) as { status: number }).status, 429);
    assert.equal(g.check('control', 'b', 'the-token-0123456789', t).ok, true);
    assert.equal(g.check('control', 'a', 'the-token-0123456789', t + 5001).ok, true, 'unblocked after blockMs');
  });

  it('doors and open doors', () => {
    assert.equal(doorOf('/'), null);
    assert.equal(doorOf('/healthz'), null);
    assert.equal(doorOf('/ptz/front/move'), 'control');
    assert.equal(doorOf('/motors'), 'control');
    assert.equal(doorOf('/whep/a/b/c'), 'whep');
    assert.equal(doorOf('/whip/session/x'), 'whip');
    assert.equal(doorOf('/metrics'), 'metrics');
    assert.equal(doorOf('/api/stats'), 'api');
    assert.equal(doorOf('/shot/ws'), 'api');
    assert.equal(doorOf('/pang/ws/sub'), 'pang');
    assert.deepEqual(openDoors(true, {}), []);
    assert.deepEqual(openDoors(false, { control: 'x' }, { whip: false }), ['pang', 'whep', 'api', 'metrics']);
    const closed = new AccessGate({ bindIsLoopback: false, tokens: {} }).check('api', 'a', undefined);
    assert.equal((closed as { code: string }).code, 'DOOR_CLOSED', 'fail closed beyond loopback');
  });
});

describe('health verdict', () => {
  it('required down → 503 down; only optional down → 200 degraded; globs', () => {
    assert.ok(globMatch('driver:*', 'driver:robot/base/video'));
    assert.ok(!globMatch('ptz:*', 'motor:base'));
    const req = ['driver:*', 'ptz:*'];
    assert.equal(healthReport([{ name: 'ptz:a', up: false, reason: 'x' }], req).httpStatus, 503);
    const d = healthReport([{ name: 'upstream:u', up: false, reason: 'x' }, { name: 'ptz:a', up: true, reason: null }], req);
    assert.deepEqual([d.httpStatus, d.status, d.down], [200, 'degraded', ['upstream:u']]);
    assert.equal(driverHealth({ name: 'g', state: 'starting', ready: false, lastError: null }, { up: false, reason: 'port missing' }, 1000).up, false);
    assert.equal(driverHealth({ name: 'c', state: 'starting', ready: false, lastError: null }, undefined, 1000).up, true, 'grace at start');
    assert.equal(driverHealth({ name: 'c', state: 'starting', ready: false, lastError: null }, undefined, 60_000).up, false, 'no frame a minute after start');
  });
});
