// Remote control over the local pang server (/pang/ws/ctl and /pang/ws/meb), the command JSON
// parser under fuzzing, and the dead-man: a client process killed mid-move → the head gets Stop
// within 1 s.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { EdgeError } from '../../runtime/engine/api.js';
import { SeqFilter, parseCommand, parseReply } from '../../runtime/control/command.js';
import { startHarness, req, WsClient, type Harness } from './harness.js';
import { waitUntil } from '../sim/serial-pty.js';

const CTL = '/pang/ws/ctl?channel=instant&name=robot';
const MEB = '/pang/ws/meb?channel=instant&name=robot&track=control';

describe('command JSON', () => {
  it('parses the documented forms', () => {
    const c = parseCommand('REXTXCMD{"req_id":"a","seq":1,"target":"ptz/front","action":"move","pan":0.5}');
    assert.equal(c.kind, 'ptz');
    assert.equal(c.device, 'front');
    assert.equal(c.pan, 0.5);
    assert.equal(parseCommand('{"req_id":"b","seq":2,"action":"list"}').action, 'list');
    assert.equal(parseCommand('{"type":"control","req_id":"c","seq":3,"target":"motor/base","action":"move","left":1,"right":-1}').left, 1);
  });

  it('refuses bad commands with CONTROL_BAD_COMMAND, keeping req_id/seq when readable', () => {
    for (const [text, where] of [
      ['nope', 'JSON'],
      ['[]', 'object'],
      ['{"req_id":"x","seq":1,"target":"ptz/front","action":"move","pan":3}', 'pan'],
      ['{"req_id":"x","seq":-1,"target":"ptz/front","action":"stop"}', 'seq'],
      ['{"req_id":"x","seq":1,"action":"stop"}', 'target'],
      ['{"req_id":"x","seq":1,"target":"ptz/../etc","action":"stop"}', 'target'],
      ['{"req_id":"x","seq":1,"target":"motor/base","action":"move","pan":1}', 'motor'],
      ['{"req_id":"x","seq":1,"target":"ptz/front","action":"goto_preset"}', 'preset'],
      ['{"req_id":"x","seq":1,"target":"ptz/front","action":"set_preset","preset":"1","name":"<x>"}', 'name'],
    ]) {
      assert.throws(
        () => parseCommand(text!),
        (e: unknown) => e instanceof EdgeError && e.code === 'CONTROL_BAD_COMMAND' && e.message.includes(where!),
        text,
      );
    }
    try {
      parseCommand('{"req_id":"keep","seq":9,"target":"ptz/front","action":"fly"}');
    } catch (e) {
      assert.deepEqual((e as EdgeError).context, { req_id: 'keep', seq: 9 });
    }
  });

  it('fuzz: arbitrary text and JSON values only ever give CONTROL_BAD_COMMAND', () => {
    const check = (s: string) => {
      try {
        const c = parseCommand(s);
        assert.ok(c.req_id.length <= 64 && Number.isSafeInteger(c.seq));
        for (const k of ['pan', 'tilt', 'zoom', 'left', 'right'] as const) if (c[k] !== undefined) assert.ok(Math.abs(c[k]!) <= 1);
      } catch (e) {
        assert.ok(e instanceof EdgeError && e.code === 'CONTROL_BAD_COMMAND', String(e));
      }
    };
    fc.assert(fc.property(fc.string({ maxLength: 300 }), check), { numRuns: 500 });
    fc.assert(fc.property(fc.jsonValue(), (v) => check(JSON.stringify(v) ?? 'null')), { numRuns: 500 });
    const cmd = fc.record(
      {
        req_id: fc.oneof(fc.string({ maxLength: 70 }), fc.integer()),
        seq: fc.oneof(fc.integer(), fc.double(), fc.string()),
        target: fc.oneof(fc.constantFrom('ptz/front', 'motor/base', 'x/y', ''), fc.string()),
        action: fc.constantFrom('move', 'stop', 'goto_preset', 'set_preset', 'status', 'presets', 'list', 'x'),
        pan: fc.oneof(fc.double(), fc.string()),
        left: fc.double(),
        preset: fc.string({ maxLength: 70 }),
        lease_ms: fc.oneof(fc.integer(), fc.double()),
      },
      { requiredKeys: [] },
    );
    fc.assert(fc.property(cmd, (o) => check('REXTXCMD' + JSON.stringify(o))), { numRuns: 1000 });
    check('REXTXCMD' + '{"a":'.repeat(5000));
    check('x'.repeat(100_000));
  });

  it('sequence filter: stale and duplicate are refused, per client, bounded, forgotten when idle', () => {
    const f = new SeqFilter(3, 1000);
    assert.equal(f.check('a', 5, 0), 'ok');
    assert.equal(f.check('a', 5, 1), 'duplicate');
    assert.equal(f.check('a', 4, 2), 'stale');
    assert.equal(f.check('b', 1, 3), 'ok');
    assert.equal(f.check('a', 6, 4), 'ok');
    assert.equal(f.check('a', 1, 5000), 'ok', 'forgotten after idle');
    for (let i = 0; i < 10; i++) f.check(`c${i}`, 1, 6000);
    assert.equal(f.size, 3);
  });
});

describe('remote control over local pang', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ leaseMs: 300 });
  });
  after(() => h.close());

  it('/pang/ws/ctl: move → REXTXACK with the req_id, head moves; stop; status; list', async (t) => {
    const c = new WsClient(h.ws + CTL);
    t.after(() => c.close());
    await c.opened;
    c.send(JSON.stringify({ type: 'control', req_id: 'm1', seq: 1, target: 'ptz/front', action: 'move', ts: Date.now(), pan: -1, lease_ms: 2000 }));
    const ack = parseReply(await c.reply('m1'))!;
    assert.equal(ack.ok, true);
    assert.equal(ack.seq, 1);
    await waitUntil(() => h.head.vel.pan < 0, 'head moving left');
    c.send(JSON.stringify({ type: 'control', req_id: 'm2', data: JSON.stringify({ seq: 2, target: 'ptz/front', action: 'stop' }) }));
    assert.equal(parseReply(await c.reply('m2'))!.ok, true);
    await waitUntil(() => !h.head.moving, 'stopped');
    c.send(JSON.stringify({ type: 'control', req_id: 'm3', seq: 3, action: 'list' }));
    const list = parseReply(await c.reply('m3'))!;
    assert.deepEqual(((list.result as Record<string, Array<{ id: string }>>)['cameras'] ?? []).map((x) => x.id), ['front', 'dome']);
    // pang ctl requests still work on the same session
    c.send(JSON.stringify({ type: 'ping', req_id: 'p1' }));
    await c.reply('p1');
  });

  it('stale and duplicated sequence numbers are ignored and answered with REXTXERR', async (t) => {
    const c = new WsClient(h.ws + CTL);
    t.after(() => c.close());
    await c.opened;
    c.send(JSON.stringify({ type: 'control', req_id: 's1', seq: 10, target: 'ptz/dome', action: 'move', ts: Date.now(), tilt: 1 }));
    await c.reply('s1');
    const n = h.dome.log.length;
    c.send(JSON.stringify({ type: 'control', req_id: 's2', seq: 9, target: 'ptz/dome', action: 'move', ts: Date.now(), tilt: -1 }));
    const stale = parseReply(await c.reply('s2'))!;
    assert.equal(stale.ok, false);
    assert.equal(stale.error!.code, 'CONTROL_STALE_SEQ');
    c.send(JSON.stringify({ type: 'control', req_id: 's3', seq: 10, target: 'ptz/dome', action: 'move', ts: Date.now(), tilt: -1 }));
    assert.equal(parseReply(await c.reply('s3'))!.error!.code, 'CONTROL_DUPLICATE_SEQ');
    assert.equal(h.dome.log.length, n, 'neither reached the device');
    c.send(JSON.stringify({ type: 'control', req_id: 's4', seq: 11, target: 'ptz/dome', action: 'stop' }));
    assert.equal(parseReply(await c.reply('s4'))!.ok, true);
  });

  it('/pang/ws/meb: REXTXCMD → REXTXACK/REXTXERR; bad commands keep the session', async (t) => {
    const c = new WsClient(h.ws + MEB);
    t.after(() => c.close());
    await c.opened;
    c.send('REXTXCMD' + JSON.stringify({ req_id: 'b1', seq: 1, target: 'motor/base', action: 'move', ts: Date.now(), left: 0.4, right: 0.4 }));
    const ack = await c.reply('b1');
    assert.ok(ack.startsWith('REXTXACK'), ack);
    await waitUntil(() => h.motor.moving, 'motor moving');
    c.send('REXTXCMD{"req_id":"b2","seq":2,"target":"motor/base","action":"move","left":9}');
    const err = await c.reply('b2');
    assert.ok(err.startsWith('REXTXERR'));
    assert.equal(parseReply(err)!.error!.code, 'CONTROL_BAD_COMMAND');
    c.send('REXTXCMD' + JSON.stringify({ req_id: 'b3', seq: 3, target: 'motor/base', action: 'stop' }));
    assert.ok((await c.reply('b3')).startsWith('REXTXACK'));
    await waitUntil(() => !h.motor.moving, 'motor stopped');
  });

  it('arbitration across surfaces: a remote operator holds the head, the HTTP API is refused (409)', async (t) => {
    const c = new WsClient(h.ws + CTL);
    t.after(() => c.close());
    await c.opened;
    c.send(JSON.stringify({ type: 'control', req_id: 'h1', seq: 1, target: 'ptz/front', action: 'move', ts: Date.now(), pan: 0.2, lease_ms: 2000 }));
    await c.reply('h1');
    const r = await req(h.base, 'POST', '/ptz/front/move', { pan: -1 });
    assert.equal(r.status, 409);
    assert.equal((r.json['error'] as Record<string, string>)['code'], 'CONTROL_BUSY');
    assert.match((r.json['error'] as Record<string, string>)['message']!, /remote/);
    assert.ok(h.head.vel.pan > 0, 'remote operator still in control');
    const st = await req(h.base, 'POST', '/ptz/front/stop');
    assert.equal(st.status, 200, 'Stop from the API is always accepted');
    await waitUntil(() => !h.head.moving, 'stopped');
  });

  it('dead-man: a client process killed mid-move → the head gets Stop within 1 s', async () => {
    // The client asks for a long lease (5 s): only the link drop can stop the head in time.
    const script = `
      const { WebSocket } = require('ws');
      const ws = new WebSocket(process.argv[1]);
      ws.on('open', () => ws.send(JSON.stringify({ type: 'control', req_id: 'k1', seq: 1, target: 'ptz/front', action: 'move', ts: Date.now(), tilt: 1, lease_ms: 5000 })));
      ws.on('message', (d) => { if (String(d).includes('"k1"')) process.stdout.write('acked\\n'); });
      setInterval(() => {}, 1000);`;
    const child = spawn(process.execPath, ['-e', script, h.ws + CTL], { cwd: process.cwd(), stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('client never got its ack')), 5000);
        child.stdout!.on('data', (d: Buffer) => {
          if (d.toString().includes('acked')) {
            clearTimeout(t);
            resolve();
          }
        });
      });
      await waitUntil(() => h.head.vel.tilt > 0, 'head tilting');
      const killedAt = Date.now();
      child.kill('SIGKILL');
      await waitUntil(() => !h.head.moving, 'stop after the client died', 1500);
      const stop = h.head.log[h.head.log.length - 1]!;
      assert.equal(stop.type, 'stop');
      assert.ok(stop.at - killedAt < 1000, `stopped ${stop.at - killedAt} ms after the kill`);
      const r = h.control.stats()['router'] as Record<string, Record<string, number>>;
      assert.ok(r['ptz/front']!['linkDropStops']! >= 1);
    } finally {
      child.kill('SIGKILL');
    }
  });
});
