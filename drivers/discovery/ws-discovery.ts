// WS-Discovery (OASIS WS-Discovery 1.0 as ONVIF uses it, April 2005 namespace): the Probe we
// multicast and the ProbeMatches cameras answer. Pure. The parser reads only what discovery needs
// (endpoint address, types, scopes, XAddrs) with a tolerant element scan, namespace prefixes ignored,
// input size bounded; it never executes entities or DTDs (there are none in SOAP).

import { randomUUID } from 'node:crypto';

export const WSD_MULTICAST_ADDRESS = '239.255.255.250';
export const WSD_PORT = 3702;
/** A ProbeMatches datagram from a camera is 1–4 KB; 64 KB is the UDP ceiling anyway. */
export const MAX_DATAGRAM_BYTES = 65_507;

export class WsDiscoveryError extends Error {
  readonly code = 'WSD_INVALID';
  constructor(message: string) {
    super(`WSD_INVALID: ${message}`);
    this.name = 'WsDiscoveryError';
  }
}

export interface ProbeMatch {
  /** wsa:EndpointReference/Address, usually urn:uuid:… — the device identity. */
  endpoint: string;
  types: string[];
  scopes: string[];
  /** Device service URLs (http://ip/onvif/device_service). */
  xaddrs: string[];
  metadataVersion: number | null;
  /** From scopes: onvif://www.onvif.org/name/…, hardware/…, location/… (URI-decoded). */
  name?: string;
  hardware?: string;
  location?: string;
  /** The MessageID of the probe this answers (wsa:RelatesTo). */
  relatesTo?: string;
}

export function newMessageId(): string {
  return `uuid:${randomUUID()}`;
}

function escapeXml(s: string): string {
  return s.replace(/[<>&'"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[c]!);
}

/** The Probe for ONVIF network video transmitters (dn:NetworkVideoTransmitter) — or any types. */
export function buildProbe(messageId: string, types: string[] = ['dn:NetworkVideoTransmitter']): string {
  const typeText = types.map(escapeXml).join(' ');
  return (
    '<?xml version="1.0" encoding="UTF-8"?>' +
    '<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" ' +
    'xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" ' +
    'xmlns:d="http://schemas.xmlsoap.org/ws/2005/04/discovery" ' +
    'xmlns:dn="http://www.onvif.org/ver10/network/wsdl" ' +
    'xmlns:tds="http://www.onvif.org/ver10/device/wsdl">' +
    '<s:Header>' +
    `<a:MessageID>${escapeXml(messageId)}</a:MessageID>` +
    '<a:To s:mustUnderstand="1">urn:schemas-xmlsoap-org:ws:2005:04:discovery</a:To>' +
    '<a:Action s:mustUnderstand="1">http://schemas.xmlsoap.org/ws/2005/04/discovery/Probe</a:Action>' +
    '</s:Header>' +
    '<s:Body><d:Probe>' +
    (typeText ? `<d:Types>${typeText}</d:Types>` : '') +
    '</d:Probe></s:Body></s:Envelope>'
  );
}

function decodeEntities(s: string): string {
  return s.replace(/&(#x[0-9a-fA-F]{1,6}|#\d{1,7}|lt|gt|amp|apos|quot);/g, (_, e: string) => {
    if (e === 'lt') return '<';
    if (e === 'gt') return '>';
    if (e === 'amp') return '&';
    if (e === 'apos') return "'";
    if (e === 'quot') return '"';
    const code = e[1] === 'x' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
    return code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : '';
  });
}

/** Inner text of every element with this local name (any prefix), in document order. */
export function elements(xml: string, localName: string): string[] {
  const out: string[] = [];
  const open = new RegExp(`<(?:[A-Za-z_][\\w.-]*:)?${localName}(?:\\s[^<>]*)?(/?)>`, 'g');
  let m: RegExpExecArray | null;
  while ((m = open.exec(xml)) !== null) {
    if (m[1] === '/') {
      out.push('');
      continue;
    }
    const start = m.index + m[0].length;
    const close = new RegExp(`</(?:[A-Za-z_][\\w.-]*:)?${localName}\\s*>`, 'g');
    close.lastIndex = start;
    const c = close.exec(xml);
    if (!c) break; // unterminated: ignore the rest
    out.push(xml.slice(start, c.index));
    open.lastIndex = c.index + c[0].length;
  }
  return out;
}

function text(s: string | undefined): string {
  return decodeEntities((s ?? '').replace(/<!\[CDATA\[([\s\S]*?)\]\]>/g, '$1').replace(/<[^>]*>/g, '')).trim();
}

function list(s: string | undefined): string[] {
  const t = text(s);
  return t ? t.split(/\s+/).slice(0, 64) : [];
}

function scopeValue(scopes: string[], kind: string): string | undefined {
  const prefix = `onvif://www.onvif.org/${kind}/`;
  const hit = scopes.find((s) => s.toLowerCase().startsWith(prefix));
  if (!hit) return undefined;
  try {
    return decodeURIComponent(hit.slice(prefix.length)).slice(0, 128);
  } catch {
    return hit.slice(prefix.length).slice(0, 128);
  }
}

/**
 * Parse a ProbeMatches (or Hello) message. Returns [] for other WS-Discovery messages (a Probe
 * from another client on the LAN). Throws WsDiscoveryError for what is not a SOAP envelope.
 */
export function parseProbeMatches(xml: string): ProbeMatch[] {
  if (xml.length > MAX_DATAGRAM_BYTES) throw new WsDiscoveryError(`message of ${xml.length} bytes`);
  if (!/<(?:[A-Za-z_][\w.-]*:)?Envelope[\s>]/.test(xml)) throw new WsDiscoveryError('not a SOAP envelope');
  const relatesTo = text(elements(xml, 'RelatesTo')[0]) || undefined;
  const blocks = [...elements(xml, 'ProbeMatch'), ...elements(xml, 'Hello')];
  const out: ProbeMatch[] = [];
  for (const b of blocks.slice(0, 32)) {
    const epr = elements(b, 'EndpointReference')[0];
    const endpoint = text(epr !== undefined ? elements(epr, 'Address')[0] : elements(b, 'Address')[0]);
    const xaddrs = list(elements(b, 'XAddrs')[0]).filter((u) => /^https?:\/\//i.test(u));
    if (!endpoint && xaddrs.length === 0) continue;
    const scopes = list(elements(b, 'Scopes')[0]);
    const mv = Number(text(elements(b, 'MetadataVersion')[0]));
    out.push({
      endpoint: endpoint.slice(0, 256),
      types: list(elements(b, 'Types')[0]),
      scopes,
      xaddrs: xaddrs.map((u) => u.slice(0, 512)),
      metadataVersion: Number.isFinite(mv) && text(elements(b, 'MetadataVersion')[0]) !== '' ? mv : null,
      name: scopeValue(scopes, 'name'),
      hardware: scopeValue(scopes, 'hardware'),
      location: scopeValue(scopes, 'location'),
      relatesTo,
    });
  }
  return out;
}

/** A ProbeMatches answer, as a camera sends it (for the simulator and tests). */
export function buildProbeMatches(o: { relatesTo: string; endpoint: string; xaddrs: string[]; scopes: string[]; types?: string[]; metadataVersion?: number }): string {
  return (
    '<?xml version="1.0" encoding="UTF-8"?>' +
    '<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://www.w3.org/2003/05/soap-envelope" ' +
    'xmlns:wsa="http://schemas.xmlsoap.org/ws/2004/08/addressing" ' +
    'xmlns:d="http://schemas.xmlsoap.org/ws/2005/04/discovery" ' +
    'xmlns:dn="http://www.onvif.org/ver10/network/wsdl" xmlns:tds="http://www.onvif.org/ver10/device/wsdl">' +
    '<SOAP-ENV:Header>' +
    `<wsa:MessageID>${escapeXml(newMessageId())}</wsa:MessageID>` +
    `<wsa:RelatesTo>${escapeXml(o.relatesTo)}</wsa:RelatesTo>` +
    '<wsa:To SOAP-ENV:mustUnderstand="true">http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</wsa:To>' +
    '<wsa:Action SOAP-ENV:mustUnderstand="true">http://schemas.xmlsoap.org/ws/2005/04/discovery/ProbeMatches</wsa:Action>' +
    '</SOAP-ENV:Header><SOAP-ENV:Body><d:ProbeMatches><d:ProbeMatch>' +
    `<wsa:EndpointReference><wsa:Address>${escapeXml(o.endpoint)}</wsa:Address></wsa:EndpointReference>` +
    `<d:Types>${escapeXml((o.types ?? ['dn:NetworkVideoTransmitter', 'tds:Device']).join(' '))}</d:Types>` +
    `<d:Scopes>${escapeXml(o.scopes.join(' '))}</d:Scopes>` +
    `<d:XAddrs>${escapeXml(o.xaddrs.join(' '))}</d:XAddrs>` +
    `<d:MetadataVersion>${o.metadataVersion ?? 1}</d:MetadataVersion>` +
    '</d:ProbeMatch></d:ProbeMatches></SOAP-ENV:Body></SOAP-ENV:Envelope>'
  );
}

/** Read the Probe's MessageID and Types (for the simulator). */
export function parseProbe(xml: string): { messageId: string; types: string[] } | null {
  if (xml.length > MAX_DATAGRAM_BYTES || elements(xml, 'Probe').length === 0) return null;
  return { messageId: text(elements(xml, 'MessageID')[0]), types: list(elements(xml, 'Types')[0]) };
}
