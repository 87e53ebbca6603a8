// A Moth-like relay as its own process (for a network namespace in link tests, issue 14): the
// strict pang peer in ring mode, plus subscribers inside the same process that read tracks the
// way a Moth viewer does. Everything the relay takes and every message a subscriber gets is one
// JSON line on stdout, so the test keeps the record across link faults and relay restarts.
//   node ring-relay-main.js --port P --channel ID [--subscribe track,track] [--behind 2]
// Lines: {"e":"ready","port":P} · {"e":"msg","p":path,"at":ms,"n":len,"k":key?,"d":text?,"w":wallUs?}
//        {"e":"sub","p":path,"at":ms,"d":text?,"w":wallUs?,"k":key?}
import WebSocket from 'ws';
import { StrictPangPeer } from './strict-pang-peer.js';

function arg(name: string, def?: string): string {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? process.argv[i + 1] : def;
  if (v === undefined) throw new Error(`--${name} is required`);
  return v;
}

const port = Number(arg('port'));
const channel = arg('channel');
const subscribe = arg('subscribe', '').split(',').filter(Boolean);
const behind = Number(arg('behind', '2'));

function out(o: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(o)}\n`);
}

/** What a line says about a message: JSON text for data, the ts+ wallclock for backfill, key for video. */
function describe(track: string, data: Buffer): Record<string, unknown> {
  if (track.endsWith('.backfill') && data.length >= 8) return { w: Number(data.readBigUInt64BE(0)), d: data.subarray(8).toString('utf8') };
  if (data[0] === 0x7b) return { d: data.toString('utf8') };
  // H.264 Annex-B: an IDR (type 5) or SPS (7) anywhere near the start marks a keyframe.
  let key = false;
  for (let i = 0; i + 4 < Math.min(data.length, 512); i++) {
    if (data[i] === 0 && data[i + 1] === 0 && data[i + 2] === 1) {
      const t = data[i + 3]! & 0x1f;
      if (t === 5 || t === 7) key = true;
    }
  }
  return { k: key ? 1 : 0 };
}

const peer = new StrictPangPeer({ channels: { [channel]: undefined }, ring: { slots: 20, behind, serviceMs: 1 }, host: '0.0.0.0' });
peer.recordLimit = 0; // the lines are the record; keep no copies in memory
peer.on('message', (path, msg) => {
  if (!msg.binary || msg.data.length === 0) return;
  const track = path.split('/').pop()!;
  out({ e: 'msg', p: path, at: Date.now(), n: msg.data.length, ...describe(track, msg.data) });
});
await peer.listen(port);
out({ e: 'ready', port: peer.port });

for (const track of subscribe) {
  const connect = (): void => {
    const ws = new WebSocket(`ws://127.0.0.1:${peer.port}/pang/ws/sub?channel=${channel}&source=base&track=${track}&timeout=3600`);
    ws.on('message', (d: Buffer, binary: boolean) => {
      if (binary && d.length > 0) out({ e: 'sub', p: `${channel}/base/${track}`, at: Date.now(), ...describe(track, d) });
    });
    ws.on('error', () => {});
    ws.on('close', () => setTimeout(connect, 100));
  };
  connect();
}

process.on('SIGTERM', () => {
  void peer.close().then(() => process.exit(0));
});
