import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { RetryPolicy, httpFailureClass, isNetworkErrno } from '../../runtime/engine/api.js';

const noJitter = { random: () => 0 };

test('a refusal climbs the long ladder (1 s → 60 s); a network failure the short one (250 ms → 1 s)', () => {
  const p = new RetryPolicy(noJitter);
  const refused = [0, 1, 2, 3, 4, 5, 6, 7].map(() => p.next(0, 'refused'));
  assert.deepEqual(refused, [1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000]);
  const q = new RetryPolicy(noJitter);
  const network = [0, 1, 2, 3, 4, 5].map(() => q.next(0, 'network'));
  assert.deepEqual(network, [250, 500, 1000, 1000, 1000, 1000]);
  assert.deepEqual(q.stats(), { refused: 0, network: 6, lastClass: 'network', lastDelayMs: 1000 });
});

test('network failures never climb the refusal ladder, and a refusal does not slow the network ladder', () => {
  const p = new RetryPolicy(noJitter);
  for (let i = 0; i < 10; i++) p.next(i, 'network');
  assert.equal(p.next(10, 'refused'), 1000);
  assert.equal(p.next(11, 'network'), 1000);
});

test('a link that was healthy before it failed starts again from the fast step', () => {
  const p = new RetryPolicy(noJitter);
  for (let i = 0; i < 5; i++) p.next(0, 'network');
  p.healthy(100);
  assert.equal(p.next(150, 'network'), 250, 'any healthy run resets the network ladder');
  // The refusal ladder needs 10 s of health: a server that accepts and then refuses stays slow.
  p.next(200, 'refused');
  p.next(300, 'refused');
  p.healthy(400);
  assert.equal(p.next(500, 'refused'), 4000);
  p.healthy(1000);
  assert.equal(p.next(11_000, 'refused'), 1000);
});

test('property: every delay is within its ladder, at most 4 attempts per second while the network is down', () => {
  fc.assert(
    fc.property(fc.array(fc.record({ cls: fc.constantFrom('refused' as const, 'network' as const), healthy: fc.boolean(), r: fc.double({ min: 0, max: 0.999999, noNaN: true }) }), { maxLength: 200 }), (steps) => {
      let r = 0.5;
      const p = new RetryPolicy({ random: () => r });
      let now = 0;
      for (const s of steps) {
        r = s.r;
        if (s.healthy) p.healthy(now);
        const d = p.next(now, s.cls);
        if (s.cls === 'network') assert.ok(d >= 125 && d <= 1000, `network delay ${d}`);
        else assert.ok(d >= 500 && d <= 60_000, `refused delay ${d}`);
        now += d;
      }
    }),
  );
});

test('failure classes: errno codes of a down network, HTTP answers of a peer that said no', () => {
  for (const c of ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN']) assert.equal(isNetworkErrno(c), true, c);
  for (const c of ['EACCES', 'ENOENT', undefined, null, '']) assert.equal(isNetworkErrno(c), false, String(c));
  assert.equal(httpFailureClass(401), 'refused');
  assert.equal(httpFailureClass(403), 'refused');
  assert.equal(httpFailureClass(404), 'refused');
  assert.equal(httpFailureClass(408), 'network');
  assert.equal(httpFailureClass(503), 'network');
  assert.equal(httpFailureClass(null), 'network');
});
