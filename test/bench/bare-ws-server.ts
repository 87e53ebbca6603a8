// Baseline for the fan-out bench: the barest ws broadcast loop (no engine, no queues, no policy).
// The publisher's every message goes to every subscriber. Prints "port N" when listening.

import { WebSocketServer, WebSocket } from 'ws';

const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false, maxPayload: 8 * 1024 * 1024 });
const subs = new Set<WebSocket>();
wss.on('connection', (ws, req) => {
  if (req.url?.startsWith('/pub')) {
    ws.on('message', (data, isBinary) => {
      for (const s of subs) s.send(data, { binary: isBinary });
    });
  } else {
    subs.add(ws);
    ws.on('close', () => subs.delete(ws));
  }
});
wss.on('listening', () => {
  const a = wss.address();
  if (a && typeof a === 'object') process.stdout.write(`port ${a.port}\n`);
});
process.on('SIGTERM', () => process.exit(0));
