// The WebSocket of one pang session to an upstream (publisher or puller): TLS trust from a CA file
// or the insecure flag, no compression (media does not compress), a handshake deadline.

import { readFileSync } from 'node:fs';
import net, { type Socket } from 'node:net';
import tls from 'node:tls';
import { WebSocket } from 'ws';

export interface PangSocketOptions {
  handshakeTimeoutMs: number;
  insecure?: boolean;
  caFile?: string;
  /** Largest inbound message (pull-down); ws's default otherwise. */
  maxPayload?: number;
  /** Told about the raw TCP (or TLS) socket as soon as it exists, before it connects. */
  onSocket?: (socket: Socket) => void;
}

/**
 * ws's own socket factory, plus a hook: the link sees the socket before it connects (connect
 * timeout of the TCP phase, socket options before any data, the fd for TCP_INFO).
 */
function socketFactory(secure: boolean, onSocket: (s: Socket) => void) {
  return (options: tls.ConnectionOptions & net.NetConnectOpts & { socketPath?: string; servername?: string }): Socket => {
    let s: Socket;
    if (secure) {
      // ws's tlsConnect: SNI with the host name, none for an IP literal.
      (options as { path?: string }).path = undefined;
      if (!options.servername && options.servername !== '') options.servername = net.isIP(options.host ?? '') ? '' : options.host;
      s = tls.connect(options);
    } else {
      (options as { path?: string }).path = options.socketPath;
      s = net.connect(options);
    }
    onSocket(s);
    return s;
  };
}

/** Opens the socket, or says why it cannot (an unreadable CA file) without throwing. */
export function openPangSocket(url: string, o: PangSocketOptions): { ws: WebSocket } | { caError: string } {
  let ca: Buffer | undefined;
  if (o.caFile) {
    try {
      ca = readFileSync(o.caFile);
    } catch (err) {
      return { caError: `cannot read CA file: ${(err as NodeJS.ErrnoException).code ?? 'error'}` };
    }
  }
  const ws = new WebSocket(url, {
    ...(o.onSocket ? { createConnection: socketFactory(/^wss:/i.test(url), o.onSocket) as never } : {}),
    handshakeTimeout: o.handshakeTimeoutMs,
    perMessageDeflate: false,
    rejectUnauthorized: !o.insecure,
    ...(o.maxPayload !== undefined ? { maxPayload: o.maxPayload } : {}),
    ...(ca ? { ca } : {}),
  });
  return { ws };
}

/**
 * One connection attempt's socket for a ReconnectingLink: the socket, or null after reporting an
 * unreadable CA file through `fail` (the link then backs off like any failed attempt).
 */
export function openPangOrFail(url: string, o: PangSocketOptions, fail: (code: string, message: string) => void): WebSocket | null {
  const opened = openPangSocket(url, o);
  if ('caError' in opened) {
    fail('UPSTREAM_CA_FILE', opened.caError);
    return null;
  }
  return opened.ws;
}
