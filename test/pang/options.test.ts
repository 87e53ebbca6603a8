import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { parsePangOptions } from '../../runtime/pang/options.js';
import { parseCtl } from '../../runtime/pang/ctl.js';

const p = (path: string, q: string) => parsePangOptions(path, new URLSearchParams(q));

test('defaults: source base, track video, single, mono, timeout 30, len 5', () => {
  const r = p('/pang/ws/sub', 'channel=btlb3pjpc98lsdbc0lj0');
  assert.ok(r.ok);
  assert.deepEqual(
    { ...r.options },
    { role: 'sub', channel: { kind: 'id', id: 'btlb3pjpc98lsdbc0lj0' }, source: 'base', track: 'video', mode: 'single', style: 'mono', timeout: 30,
      key: undefined, mime: undefined, len: 5, total: undefined, order: undefined, wait: undefined, codec: undefined, ack: false },
  );
  assert.deepEqual(r.warnings, []);
});

test('table: out-of-range values fall back to defaults with a warning; resource names and codec refuse', () => {
  const cases: Array<[string, string, 'ok' | 'refuse', Record<string, unknown>?]> = [
    ['/pang/ws/pub', 'channel=instant&name=robot&key=k', 'ok', { channel: { kind: 'instant', name: 'robot' }, key: 'k' }],
    ['/pang/ws/pub', 'channel=instant', 'refuse'],
    ['/pang/ws/pub', '', 'refuse'],
    ['/pang/ws/nope', 'channel=x', 'refuse'],
    ['/pang/ws/sub', 'channel=a&timeout=0', 'ok', { timeout: 30 }],
    ['/pang/ws/sub', 'channel=a&timeout=3601', 'ok', { timeout: 30 }],
    ['/pang/ws/sub', 'channel=a&timeout=3600', 'ok', { timeout: 3600 }],
    ['/pang/ws/sub', 'channel=a&timeout=abc', 'ok', { timeout: 30 }],
    ['/pang/ws/sub', 'channel=a&mode=bundle&style=multi', 'ok', { mode: 'bundle', style: 'multi' }],
    ['/pang/ws/sub', 'channel=a&mode=weird', 'ok', { mode: 'single' }],
    ['/pang/ws/sub', 'channel=a&len=11', 'ok', { len: 5 }],
    ['/pang/ws/sub', 'channel=a&buf_len=7', 'ok', { len: 7 }],
    ['/pang/ws/sub', 'channel=a&total=3&order=2', 'ok', { total: 3, order: 2 }],
    ['/pang/ws/sub', 'channel=a&total=3&order=5', 'ok', { total: 3, order: 0 }],
    ['/pang/ws/sub', 'channel=a&codec=JPEG', 'ok', { codec: 'jpeg' }],
    ['/pang/ws/sub', 'channel=a&codec=av1', 'refuse'],
    ['/pang/ws/sub', 'channel=a&source=../etc', 'refuse'],
    ['/pang/ws/sub', 'channel=a&track=' + 'x'.repeat(65), 'refuse'],
    ['/pang/ws/pub', 'channel=a&mime=video/h264;width=640', 'ok', { mime: 'video/h264;width=640' }],
    ['/pang/ws/pub', 'channel=a&mime=bad%0Amime', 'refuse'],
    ['/pang/ws/sub', 'channel=a&wait=force', 'ok', { wait: 'force' }],
  ];
  for (const [path, q, want, fields] of cases) {
    const r = p(path, q);
    assert.equal(r.ok ? 'ok' : 'refuse', want, `${path}?${q}`);
    if (!r.ok) {
      assert.equal(r.code, 4400);
      assert.ok(r.reason.length > 0);
    } else if (fields) {
      for (const [k, v] of Object.entries(fields)) assert.deepEqual((r.options as unknown as Record<string, unknown>)[k], v, `${q}: ${k}`);
    }
  }
  const w = p('/pang/ws/sub', 'channel=a&timeout=0');
  assert.ok(w.ok && w.warnings.some((x) => x.includes('timeout')));
});

test('fuzz: arbitrary paths and queries give options or a 4400 refusal, never a throw', () => {
  fc.assert(
    fc.property(fc.string({ maxLength: 40 }), fc.array(fc.tuple(fc.constantFrom('channel', 'name', 'source', 'track', 'mode', 'style', 'timeout', 'len', 'total', 'order', 'wait', 'codec', 'key', 'mime', 'x'), fc.string({ maxLength: 80 })), { maxLength: 12 }), fc.constantFrom('/pang/ws/pub', '/pang/ws/sub', '/pang/ws/meb', '/pang/ws/ctl'), (junkPath, kv, path) => {
      const q = new URLSearchParams(kv);
      for (const pp of [path, junkPath]) {
        const r = parsePangOptions(pp, q);
        if (r.ok) {
          assert.ok(r.options.timeout >= 1 && r.options.timeout <= 3600);
          assert.ok(r.options.len >= 2 && r.options.len <= 10);
          assert.match(r.options.source, /^[A-Za-z0-9_.-]{1,64}$/);
        } else assert.equal(r.code, 4400);
      }
    }),
    { numRuns: 2000 },
  );
});

test('ctl parse: double-encoded data, objects, and every malformed shape as a reason', () => {
  const ok = parseCtl(JSON.stringify({ type: 'info_track', data: JSON.stringify({ source: 'base' }), req_id: '7' }));
  assert.ok(ok.ok && ok.known && ok.req.data.source === 'base' && ok.req.req_id === '7');
  for (const bad of ['', 'nope', '[]', '{"type":1}', '{"type":"ping","data":"{bad"}', '{"type":"ping","data":"[1]"}', '{"type":"ping","data":5}']) {
    const r = parseCtl(bad);
    assert.ok(!r.ok, bad);
  }
  fc.assert(
    fc.property(fc.oneof(fc.string(), fc.json()), (s) => {
      parseCtl(s);
    }),
    { numRuns: 1000 },
  );
});
