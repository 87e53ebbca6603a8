// Issue 14, "delivered means acknowledged": which acknowledgement counts, against which upstream.
// The upstream here is a real moth-edge runtime (the CLI in its own process) used as a relay.
// Frozen with SIGSTOP, its kernel still acknowledges TCP bytes into its receive buffer while the
// process takes nothing: with the relay's XACK (ack=1, the default) those records stay in flight
// — not delivered — and a SIGKILL leaves them owed (in doubt, for the backfill); with TCP
// acknowledgements only (what a Moth server allows) they count as delivered the moment the
// relay's kernel has them. The README's guarantee table says exactly this.
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { captureClockUs } from '../../runtime/engine/api.js';
import { PangPublisher } from '../../runtime/egress/pang-publisher.js';
import { silentLog } from '../../runtime/egress/pang-link.js';
import { SpanLog } from '../../runtime/uplink/spans.js';
import { FakeSource } from './fake-source.js';
import { tempDir, waitFor } from './helpers.js';
import { freePort, startRuntime, type RuntimeProcess } from '../support/runtime-process.js';

const RELAY_CH = 'a11ce000000000000000';
const imu = { channel: 'cam', source: 'base', track: 'imu' };

async function relay(t: TestContext, dir: string, port: number, name: string): Promise<RuntimeProcess> {
  return startRuntime(t, dir, name, [`server: { port: ${port} }`, 'log: { level: warn }', 'recordings: { enabled: false }', 'channels:', `  - id: ${RELAY_CH}`, '    name: relay'].join('\n'));
}

function sensor(src: FakeSource): { write(n: number): void; count(): number } {
  src.setMime(imu, 'application/json');
  let seq = 0;
  return {
    write: (n) => {
      for (let i = 0; i < n; i++) src.publish(imu, { ts: captureClockUs(), wallclock: Date.now(), key: true, data: Buffer.from(JSON.stringify({ seq: seq++ })) });
    },
    count: () => seq,
  };
}

async function rig(t: TestContext, requestAcks: boolean) {
  const dir = await tempDir(t, 'upstream-ack-');
  const port = await freePort();
  const r = await relay(t, dir, port, 'relay.yaml');
  const src = new FakeSource();
  const spans = new SpanLog();
  const pub = new PangPublisher({
    name: 'ack',
    endpoint: { url: `ws://127.0.0.1:${port}`, channel: RELAY_CH, source: 'base', track: 'imu' },
    from: imu,
    maxBufferedBytes: 256 * 1024,
    source: src,
    log: silentLog,
    backoff: { initialMs: 1000, maxMs: 60_000 },
    spans,
    requestAcks,
  });
  t.after(() => pub.close());
  pub.start();
  await waitFor(() => pub.stats().state === 'connected' || pub.stats().link.wireOut > 0, 10_000, 'session open');
  return { dir, port, r, src, spans, pub, s: sensor(src) };
}

test('ack=1 against a moth-edge relay: a frozen relay acknowledges nothing, a killed one leaves its records owed', { timeout: 60_000 }, async (t) => {
  const { r, pub, s, dir, port } = await rig(t, true);
  s.write(100);
  await waitFor(() => pub.stats().spans.delivered === 100, 10_000, () => `100 delivered (${JSON.stringify(pub.stats().spans)})`);
  assert.equal(pub.stats().link.ackSource, 'upstream', 'the relay acknowledges by XACK');
  assert.ok(pub.stats().link.upstreamAcks > 0);

  r.child.kill('SIGSTOP');
  t.after(() => r.child.kill('SIGCONT'));
  s.write(50);
  // Its kernel takes the bytes (they are TCP-acknowledged) but the relay has not read them.
  await waitFor(() => pub.stats().link.unacked === 0 || pub.stats().link.ackedWire === pub.stats().link.wireOut, 10_000, 'the frozen relay’s kernel acknowledged the 50 records');
  await new Promise((res) => setTimeout(res, 500));
  assert.equal(pub.stats().spans.delivered, 100, 'nothing the relay did not take counts as delivered');
  assert.equal(pub.stats().spans.unacked, 50, 'the 50 stay in flight');

  r.child.kill('SIGKILL');
  await waitFor(() => pub.stats().spans.inDoubt === 50, 15_000, () => `the 50 owed as in doubt when the session died (${JSON.stringify(pub.stats().spans)})`);
  assert.equal(pub.stats().spans.delivered, 100);
  // The relay comes back on its port: the link finds it on the fast ladder and delivers again.
  await relay(t, dir, port, 'relay2.yaml');
  // Records captured while no session runs are the backfill's (with recordings): send once live again.
  await waitFor(() => pub.sessions >= 2 && pub.stats().link.wireOut > 0, 15_000, 'a new session');
  const before = pub.stats().spans.delivered;
  s.write(20);
  await waitFor(() => pub.stats().spans.delivered >= before + 20, 15_000, () => `delivered again after the relay returned (${JSON.stringify(pub.stats().spans)})`);
  assert.ok((pub.stats().failures.UPSTREAM_DROPPED ?? 0) + (pub.stats().failures.UPSTREAM_CONN_REFUSED ?? 0) >= 1);
  assert.equal(pub.stats().retries.refused, 0, 'a killed relay is the network, not a refusal');
});

test('TCP acknowledgements only (a Moth upstream): the frozen relay’s kernel acknowledgement counts as delivered', { timeout: 60_000 }, async (t) => {
  const { r, pub, s } = await rig(t, false);
  s.write(100);
  await waitFor(() => pub.stats().spans.delivered === 100, 10_000, 'delivered');
  assert.equal(pub.stats().link.ackSource, 'tcp');
  r.child.kill('SIGSTOP');
  t.after(() => r.child.kill('SIGCONT'));
  s.write(50);
  await waitFor(() => pub.stats().spans.delivered === 150, 10_000, () => `the relay's kernel took them: delivered by TCP (${JSON.stringify(pub.stats().spans)})`);
});
