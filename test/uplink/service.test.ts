// Egress service wiring of the uplink work: the scheduler exists only when a priority is
// configured (default behaviour unchanged), egress stats carry uplink (estimate, scheduler, spans),
// and close() stops the controller with the links.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { egressConfigSchema } from '../../runtime/egress/config.js';
import { createEgressService } from '../../runtime/egress/service.js';
import { silentLog } from '../../runtime/egress/pang-link.js';
import { StrictPangPeer } from '../sim/strict-pang-peer.js';
import { testEngine } from '../egress/engine-fixture.js';
import { waitFor } from '../egress/helpers.js';

const CHAN = '0123456789abcdefghij';

test('uplink scheduler on with any upstream unless scheduler: off; stats carry uplink', async (t) => {
  let synced = 0;
  const peer = new StrictPangPeer({ channels: { [CHAN]: undefined } });
  await peer.listen();
  t.after(() => peer.close());
  const engine = testEngine(['cam']);
  t.after(() => engine.close());
  const imu = engine.publisher({ channel: 'cam', source: 'base', track: 'imu' }, { label: 'imu' });
  imu.setMime('application/json');
  t.after(() => imu.close());
  const base = { url: peer.url };
  const plain = createEgressService({
    config: egressConfigSchema.parse({ upstream: [{ url: base.url, channel: CHAN, track: 'imu', from: 'cam/base/imu' }], whep: { enabled: false }, scheduler: 'off' }),
    engine,
    log: silentLog,
  });
  t.after(() => plain.close());
  assert.equal(plain.uplinkController, null, 'scheduler: off: no scheduler');
  assert.equal(plain.stats().uplink.scheduler, null);
  plain.close();
  const byDefault = createEgressService({
    config: egressConfigSchema.parse({ upstream: [{ url: base.url, channel: CHAN, track: 'imu', from: 'cam/base/imu' }], whep: { enabled: false } }),
    engine,
    log: silentLog,
  });
  t.after(() => byDefault.close());
  assert.ok(byDefault.uplinkController, 'an upstream without priorities still gets the scheduler (default priorities by kind)');
  byDefault.close();

  assert.throws(() => egressConfigSchema.parse({ upstream: [{ url: base.url, channel: CHAN, from: 'cam/base/imu', priority: -1 }] }));
  const svc = createEgressService({
    config: egressConfigSchema.parse({ upstream: [{ url: base.url, channel: CHAN, track: 'imu', from: 'cam/base/imu', priority: 120 }], whep: { enabled: false } }),
    engine,
    log: silentLog,
    syncUploadedBytes: () => synced,
  });
  t.after(() => svc.close());
  assert.ok(svc.uplinkController);
  let i = 0;
  const timer = setInterval(() => (synced += 2000) && imu.write({ ts: i * 20_000, wallclock: Date.now(), key: true, data: Buffer.from(JSON.stringify({ i: i++ })) }), 20);
  t.after(() => clearInterval(timer));
  await waitFor(() => (svc.stats().uplink.scheduler?.tracks['up0:cam/base/imu']?.full ?? 0) >= 1, 10_000, 'scheduler decided for the telemetry link');
  const s = svc.stats();
  assert.equal(s.upstream[0]!.priority.priority, 120);
  assert.equal(s.upstream[0]!.priority.mode, 'full');
  await waitFor(() => svc.stats().uplink.spans.framesRecorded > 0 && svc.stats().uplink.bytesPerSec !== null, 10_000, 'live spans and an estimate');
  await waitFor(() => (svc.stats().uplink.sync?.samples ?? 0) >= 1, 10_000, 'sync throughput sampled');
  assert.ok(svc.stats().uplink.sync!.bytesPerSec! > 0 && svc.stats().uplink.sync!.confident === false, 'sync is a lower bound');
  assert.ok(svc.spans.live('cam/base/imu', 0, Date.now() + 1000).spans.length >= 1);
  svc.close();
  svc.close();
  assert.equal(svc.stats().upstream[0]!.state, 'closed');
});
