import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { createLogger, redactUrl, ThrottledLog } from '../../runtime/log.js';

function capture() {
  const lines: string[] = [];
  const dest = new Writable({
    write(chunk, _enc, cb) {
      lines.push(String(chunk));
      cb();
    },
  });
  return { lines, log: createLogger('info', dest as unknown as NodeJS.WritableStream & { write: (s: string) => boolean }) };
}

test('secrets never reach a log line: fields, nested fields and URLs', () => {
  const { lines, log } = capture();
  log.info({ key: 'k-123', upstream: { token: 't-456', url: 'x' }, password: 'p-789' }, 'connect');
  log.warn(redactUrl('refused wss://user:s3cret@moth.example:8277/pang/ws/pub?channel=abc&key=k-123&track=v'));
  const all = lines.join('');
  for (const s of ['k-123', 't-456', 'p-789', 's3cret']) assert.ok(!all.includes(s), `${s} leaked: ${all}`);
  assert.match(all, /channel=abc/);
  assert.match(all, /\*\*\*@moth\.example/);
});

test('a repeated failure is logged once per interval, then with its count', () => {
  const { lines, log } = capture();
  const t = new ThrottledLog(log, 60_000);
  assert.equal(t.warn('up', 'upstream refused', {}, 0), true);
  for (let i = 1; i <= 36; i++) assert.equal(t.warn('up', 'upstream refused', {}, i * 1000), false);
  assert.equal(t.warn('other', 'other failure', {}, 1000), true, 'keys are independent');
  assert.equal(t.warn('up', 'upstream refused', {}, 61_000), true);
  assert.equal(lines.length, 3);
  assert.match(lines[2]!, /upstream refused \(×37 in 60s\)/);
});
