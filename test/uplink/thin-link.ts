// The throttled-link setup the uplink and egress throttle tests share: a strict pang peer as the
// upstream and a shaping proxy in front of it, both closed by the test context.
//  - 'shared': SharedLinkProxy, one FIFO for every connection (a router queue in front of a modem),
//    with cut()/restore() for outages;
//  - 'per-read': ThrottleProxy, each connection paced read by read (the simplest thin link).
import type { TestContext } from 'node:test';
import { StrictPangPeer } from '../sim/strict-pang-peer.js';
import { ThrottleProxy } from '../egress/throttle-proxy.js';
import { SharedLinkProxy } from './shared-link-proxy.js';

export const CHAN = '0123456789abcdefghij';

export interface ThinLink<P> {
  peer: StrictPangPeer;
  proxy: P;
  /** ws:// base URL through the proxy. */
  url: string;
  /** Messages the peer received on `<CHAN>/base/<track>`, binary non-empty only. */
  received(track: string): Buffer[];
}

export async function thinLink(t: TestContext, kind: 'shared', opts?: { queueBytes?: number }): Promise<ThinLink<SharedLinkProxy>>;
export async function thinLink(t: TestContext, kind: 'per-read'): Promise<ThinLink<ThrottleProxy>>;
export async function thinLink(t: TestContext, kind: 'shared' | 'per-read', opts: { queueBytes?: number } = {}): Promise<ThinLink<SharedLinkProxy | ThrottleProxy>> {
  const peer = new StrictPangPeer({ channels: { [CHAN]: undefined } });
  await peer.listen();
  t.after(() => peer.close());
  const proxy = kind === 'shared' ? new SharedLinkProxy(peer.port, opts.queueBytes) : new ThrottleProxy(peer.port);
  await proxy.listen();
  t.after(() => proxy.close());
  return {
    peer,
    proxy,
    url: `ws://127.0.0.1:${proxy.port}`,
    received: (track) => peer.messages(`${CHAN}/base/${track}`).filter((m) => m.binary && m.data.length > 0).map((m) => m.data),
  };
}
