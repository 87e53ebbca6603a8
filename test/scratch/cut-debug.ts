import { createNetnsPath } from '../uplink/netns.js';
import { startRuntime } from '../support/runtime-process.js';
import { fileURLToPath } from 'node:url';
import { mkdtempSync } from 'node:fs';
const relayMain = fileURLToPath(new URL('../sim/ring-relay-main.js', import.meta.url));
const path = await createNetnsPath('dbg');
const RELAY_CH = 're1a0000000000000000', CH = 'r0b0t000000000000000';
const c = path.spawn(process.execPath, [relayMain, '--port', '8276', '--channel', RELAY_CH]);
let vids = 0; let last = 0;
c.stdout!.on('data', (d: Buffer) => { for (const l of d.toString().split('\n')) if (l.includes('/video')) { vids++; last = Date.now(); } });
await new Promise((r) => setTimeout(r, 1000));
const t = { after: (_f: () => unknown) => {} } as never;
const dir = mkdtempSync('/tmp/cutdbg-');
const rt = await startRuntime(t, dir, 'r.yaml', ['server: { port: 0 }', 'log: { level: info }', 'recordings: { enabled: false }', 'channels:', `  - id: ${CH}`, '    name: robot', '    sources:', '      - name: base', '        driver: { kind: testpattern, width: 640, height: 360, fps: 30 }', 'egress:', '  whep: { enabled: false }', '  upstream:', `    - { url: ws://${path.peerAddr}:8276, channel: ${RELAY_CH}, source: base, track: video, from: ${CH}/base/video, backfill: false }`].join('\n'));
const show = async (tag: string) => { const s = await rt.api<any>('/api/stats'); const u = s.egress.upstream[0]; console.log(tag, Date.now() % 100000, u.state, JSON.stringify(u.failures), u.lastError?.code, u.lastError?.message, 'retries', JSON.stringify(u.retries), 'vids', vids, 'lastvid', Date.now() - last); };
await new Promise((r) => setTimeout(r, 3000)); await show('before');
await path.cut(); console.log('CUT');
for (let i = 0; i < 12; i++) { await new Promise((r) => setTimeout(r, 1000)); await show('cut'); }
await path.restore(); console.log('RESTORE', Date.now() % 100000);
for (let i = 0; i < 24; i++) { await new Promise((r) => setTimeout(r, 500)); await show('after'); }
await rt.stop(); await path.close(); process.exit(0);
