// Issue 14's pure pieces of "delivered means acknowledged": the acknowledged wire offset from the
// kernel's counters (plain TCP and TLS), /proc/net/tcp parsing for the fallback, the XACK text.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { AckTracker } from '../../runtime/egress/ack-tracker.js';
import { procTcpRow } from '../../runtime/egress/tcp-probe.js';
import { deliveryAckText, parseDeliveryAck } from '../../runtime/pang/wire.js';

const est = (o: { wireOut: number; buffered: number; outq: number; bytesAcked: number | null }) => ({ established: true, ...o });

test('plain TCP: acked = bytesAcked − the kernel bytes before the session; procfs: written − outq', () => {
  const a = new AckTracker(true);
  a.open({ established: true, outq: 0, bytesAcked: 301 }); // SYN + the upgrade request
  assert.equal(a.observe(est({ wireOut: 1000, buffered: 200, outq: 500, bytesAcked: 601 })), 300);
  assert.equal(a.observe(est({ wireOut: 1000, buffered: 0, outq: 0, bytesAcked: 1301 })), 1000);
  const p = new AckTracker(true);
  p.open(null);
  assert.equal(p.observe(est({ wireOut: 1000, buffered: 200, outq: 500, bytesAcked: null })), 300);
});

test('a reset connection purges its send queue: samples of a non-established socket count for nothing', () => {
  const a = new AckTracker(true);
  a.open(null);
  assert.equal(a.observe(est({ wireOut: 5000, buffered: 0, outq: 4000, bytesAcked: null })), 1000);
  assert.equal(a.observe({ established: false, wireOut: 5000, buffered: 0, outq: 0, bytesAcked: null }), 1000, 'an empty queue after a reset is not an acknowledgement');
  const t = new AckTracker(false);
  assert.equal(t.observe({ established: false, wireOut: 5000, buffered: 0, outq: 0, bytesAcked: null }), 0);
});

test('TLS: a wire offset is acknowledged once bytesAcked passes the kernel offset anchored when ws held nothing', () => {
  const a = new AckTracker(false);
  a.open({ established: true, outq: 0, bytesAcked: 1000 });
  // ws empty: 500 wire bytes are in the kernel as 540 TLS bytes (1000 + 540 written so far).
  assert.equal(a.observe(est({ wireOut: 500, buffered: 0, outq: 540, bytesAcked: 1000 })), 0);
  assert.equal(a.observe(est({ wireOut: 800, buffered: 300, outq: 300, bytesAcked: 1240 })), 0, 'not yet the anchor');
  assert.equal(a.observe(est({ wireOut: 800, buffered: 300, outq: 100, bytesAcked: 1540 })), 500, 'the anchor is acknowledged');
  assert.equal(a.observe(est({ wireOut: 800, buffered: 0, outq: 0, bytesAcked: 1870 })), 800, 'an empty path acknowledges everything');
});

test('property: never more acknowledged than the peer really acknowledged (plain and TLS, any sampling)', () => {
  fc.assert(
    fc.property(
      fc.boolean(),
      fc.array(fc.record({ send: fc.integer({ min: 0, max: 5000 }), toKernel: fc.integer({ min: 0, max: 8000 }), ack: fc.integer({ min: 0, max: 8000 }), reset: fc.boolean() }), { minLength: 1, maxLength: 60 }),
      (tls, steps) => {
        // A model of one connection: ws buffer → kernel (with TLS overhead per write) → acked.
        const a = new AckTracker(!tls);
        let wireOut = 0;
        let inWs = 0;
        let kernelWritten = 301;
        let kernelAcked = 301;
        const map: Array<{ wire: number; kernel: number }> = []; // wire end ↔ kernel end of each write
        a.open({ established: true, outq: 0, bytesAcked: 301 });
        let alive = true;
        for (const s of steps) {
          wireOut += s.send;
          inWs += s.send;
          const move = Math.min(inWs, s.toKernel);
          if (move > 0) {
            inWs -= move;
            kernelWritten += move + (tls ? 29 : 0);
            map.push({ wire: wireOut - inWs, kernel: kernelWritten });
          }
          kernelAcked = Math.min(kernelWritten, kernelAcked + s.ack);
          if (s.reset) alive = false;
          const got = a.observe({ established: alive, wireOut, buffered: inWs, outq: alive ? kernelWritten - kernelAcked : 0, bytesAcked: kernelAcked });
          // The truly acknowledged wire offset: plain TCP byte for byte; over TLS a write's bytes are
          // known delivered only once its whole record is acknowledged.
          let truth = 0;
          if (!tls) truth = kernelAcked - 301;
          else for (const m of map) if (m.kernel <= kernelAcked) truth = Math.max(truth, m.wire);
          assert.ok(got <= truth, `tracker ${got} > truly acknowledged ${truth}`);
        }
      },
    ),
    { numRuns: 400 },
  );
});

test('procfs fallback: state and tx_queue of the socket by ports; malformed lines give nothing', () => {
  const text = [
    '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode',
    '   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1',
    '   1: 0100007F:C350 0100007F:1F90 01 00001A2B:00000000 01:00000014 00000000     0        0 2',
    '   2: 0100007F:C351 0100007F:1F90 07 00000000:00000000 00:00000000 00000000     0        0 3',
    '   3: garbage',
  ].join('\n');
  assert.deepEqual(procTcpRow(text, 0xc350, 0x1f90), { state: 1, txQueue: 0x1a2b });
  assert.deepEqual(procTcpRow(text, 0xc351, 0x1f90), { state: 7, txQueue: 0 });
  assert.equal(procTcpRow(text, 0x1f90, 0xc350), null, 'the server side of the pair is not ours');
  fc.assert(fc.property(fc.string({ maxLength: 400 }), fc.integer({ min: 1, max: 65535 }), fc.integer({ min: 1, max: 65535 }), (junk, l, r) => {
    const row = procTcpRow(junk, l, r);
    assert.ok(row === null || (Number.isInteger(row.state) && Number.isInteger(row.txQueue)));
  }));
});

test('XACK delivery text: round trip; anything else is not a delivery ack', () => {
  assert.equal(parseDeliveryAck(deliveryAckText(42)), 42);
  for (const bad of ['REXTXACK{"id":"r1","queued":1}', 'REXTXACK{"id":"rx","received":-1}', 'REXTXACK{"id":"rx","received":1.5}', 'REXTXACK{', 'XACK', `REXTXACK{"id":"rx","received":1,"pad":"${'x'.repeat(300)}"}`]) {
    assert.equal(parseDeliveryAck(bad), null, bad.slice(0, 40));
  }
  fc.assert(fc.property(fc.string({ maxLength: 300 }), (s) => {
    const n = parseDeliveryAck(`REXTXACK${s}`);
    assert.ok(n === null || (Number.isSafeInteger(n) && n >= 0));
  }));
});
