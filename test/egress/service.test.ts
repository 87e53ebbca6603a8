// createEgressService from a parsed config: links start, stats show link state without secrets,
// close() is idempotent and releases everything.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { egressConfigSchema } from '../../runtime/egress/config.js';
import { createEgressService } from '../../runtime/egress/service.js';
import { silentLog } from '../../runtime/egress/pang-link.js';
import { StrictPangPeer } from '../sim/strict-pang-peer.js';
import { testEngine } from './engine-fixture.js';
import { waitFor } from './helpers.js';

const CHAN = '0123456789abcdefghij';

test('egress service: config → running links, secret-free stats, idempotent close', async (t) => {
  const peer = new StrictPangPeer({ channels: { [CHAN]: 'pub-key-77' } });
  await peer.listen();
  t.after(() => peer.close());
  const engine = testEngine(['cam', 'op']);
  t.after(() => engine.close());
  const cam = engine.publisher({ channel: 'cam', source: 'base', track: 'video' }, { label: 'cam' });
  cam.setMime('video/h264');
  t.after(() => cam.close());
  const config = egressConfigSchema.parse({
    upstream: [{ url: peer.url, channel: CHAN, key: 'pub-key-77', from: 'cam/base/video' }],
    pull: [{ url: peer.url, channel: CHAN, key: 'pub-key-77', source: 'op', track: 'cmd', to: 'op/base/cmd' }],
    whip: [{ url: 'http://127.0.0.1:9/whip', token: 'whip-token-88', tracks: ['cam/base/video'], timeoutSec: 1 }],
    whipIngest: { enabled: true, token: 'ingest-token-9999' },
    backoff: { initialMs: 50, maxMs: 400 },
  });
  const svc = createEgressService({ config, engine, log: silentLog });
  t.after(() => svc.close());
  await waitFor(() => svc.stats().upstream[0]!.state === 'connected' && svc.stats().pull[0]!.state === 'connected', 10_000, 'pang links connected');
  await waitFor(() => svc.stats().whip[0]!.lastError !== null, 10_000, 'WHIP target failing');
  const s = svc.stats();
  assert.ok(s.whep && s.whipIngest, 'WHEP and ingest enabled');
  const text = JSON.stringify(s);
  for (const secret of ['pub-key-77', 'whip-token-88', 'ingest-token-9999']) assert.ok(!text.includes(secret), `${secret} not in stats`);
  svc.close();
  svc.close();
  assert.equal(svc.stats().upstream[0]!.state, 'closed');
  assert.equal(svc.stats().whip[0]!.state, 'closed');
  await waitFor(() => peer.track(`${CHAN}/base/video`).publisher === null, 5000, 'upstream session closed');
});

test('egress service: a WHIP target with a priority puts the uplink scheduler on, with the WHIP link among its links', () => {
  const engine = testEngine(['cam']);
  const base = { url: 'http://127.0.0.1:9/whip', tracks: ['cam/base/video'], timeoutSec: 1 };
  const off = createEgressService({ config: egressConfigSchema.parse({ whip: [base] }), engine, log: silentLog });
  assert.equal(off.uplinkController, null, 'no priority anywhere: no scheduler (unchanged default)');
  off.close();
  const on = createEgressService({ config: egressConfigSchema.parse({ whip: [{ ...base, priority: 30, trickle: 'off' }] }), engine, log: silentLog });
  assert.ok(on.uplinkController, 'priority on a WHIP target: scheduler on');
  on.uplinkController!.tick(Date.now());
  on.close();
  engine.close();
  assert.throws(() => egressConfigSchema.parse({ whip: [{ ...base, trickle: 'sometimes' }] }), /trickle/);
});
