// The local pang ctl endpoint answers the `backfill_range` request type (issue 8) with the request
// id, queues the range on the backfill (bounded, counted), refuses bad ones with a typed error
// reply while the session stays open, and hands every other unknown type to the next hook.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import WebSocket from 'ws';
import { silentLog } from '../../runtime/egress/pang-link.js';
import { HttpServer } from '../../runtime/http/server.js';
import { silentLogger } from '../../runtime/log.js';
import { PangServer } from '../../runtime/pang/server.js';
import { BackfillService } from '../../runtime/uplink/backfill.js';
import { withBackfillCtl } from '../../runtime/uplink/ctl-commands.js';
import { SpanLog } from '../../runtime/uplink/spans.js';
import { testEngine } from '../egress/engine-fixture.js';
import { fastBackoff, waitFor } from '../egress/helpers.js';

const CHAN = 'a0b1c2d3e4f5g6h7i8j9';

test('ctl backfill_range: reply with req_id, bounded queue, errors keep the session open, others pass through', async (t) => {
  const engine = testEngine([]);
  engine.addStaticChannel({ id: CHAN });
  t.after(() => engine.close());
  const bf = new BackfillService({
    tracks: [{ upstream: 'up0:cam/base/imu', from: { channel: 'cam', source: 'base', track: 'imu' }, endpoint: { url: 'ws://127.0.0.1:9', channel: CHAN, source: 'base', track: 'imu.backfill' }, auto: true, live: null }],
    recordings: () => null,
    liveSpans: new SpanLog(),
    backfilled: new SpanLog(),
    log: silentLog,
    backoff: fastBackoff,
    liveLinks: () => [],
    maxRangeRequests: 2,
  });
  t.after(() => bf.close());
  const passed: string[] = [];
  const next = { onText: async (_id: string, text: string) => (passed.push(text), 'NEXT'), onSessionClosed: () => {} };
  const pang = new PangServer(engine, { maxMessageBytes: 1024 * 1024, log: silentLogger(), commands: withBackfillCtl(() => bf, next) });
  const http = new HttpServer({ host: '127.0.0.1', port: 0, maxConnections: 16 });
  pang.registerRoutes(http.router);
  http.onUpgrade('/pang/ws', (req, socket, head) => pang.handleUpgrade(req, socket, head));
  const { port } = await http.listen();
  t.after(async () => {
    await pang.close();
    await http.close();
  });
  const ws = new WebSocket(`ws://127.0.0.1:${port}/pang/ws/ctl?channel=${CHAN}`);
  t.after(() => ws.terminate());
  const replies: Array<Record<string, unknown> | string> = [];
  ws.on('message', (d) => {
    const s = String(d);
    try {
      replies.push(JSON.parse(s) as Record<string, unknown>);
    } catch {
      replies.push(s);
    }
  });
  await new Promise<void>((r, j) => ws.once('open', () => r()).once('error', j));
  const send = (o: unknown): void => ws.send(JSON.stringify(o));
  const range = (id: string, data: Record<string, unknown>): void => send({ type: 'backfill_range', data: JSON.stringify(data), req_id: id });
  range('a1', { track: 'cam/base/imu', from: 1000, to: 5000 });
  range('a2', { track: 'cam/base/imu', from: '1970-01-01T00:00:01Z', to: 9000 });
  range('a3', { track: 'cam/base/imu', from: 1000, to: 5000 }); // queue of 2 is full
  range('a4', { track: 'cam/base/nope', from: 1000, to: 5000 });
  range('a5', { track: 'cam/base/imu', from: 'yesterday', to: 5000 });
  send({ type: 'something_else', req_id: 'z' });
  send({ type: 'ping', req_id: 'p' });
  await waitFor(() => replies.length >= 7, 5000, () => `7 replies (${JSON.stringify(replies)})`);
  const byId = (id: string): Record<string, unknown> => replies.find((r) => typeof r === 'object' && r.req_id === id) as Record<string, unknown>;
  assert.equal(byId('a1').type, 'backfill_range');
  assert.deepEqual(JSON.parse(byId('a1').data as string), { queued: 1, track: 'cam/base/imu', from: 1000, to: 5000 });
  assert.equal(byId('a2').type, 'backfill_range');
  assert.equal(byId('a3').type, 'error');
  assert.match(String(byId('a3').data), /queue full/);
  assert.match(String(byId('a4').data), /no backfill upstream/);
  assert.match(String(byId('a5').data), /epoch ms or ISO/);
  assert.ok(replies.includes('NEXT'), 'unknown types go to the next hook');
  assert.equal(byId('p').type, 'pong');
  assert.deepEqual(bf.stats().rangeRequests, { received: 5, accepted: 2, refused: 3, completed: 0, queued: 2 });
});
