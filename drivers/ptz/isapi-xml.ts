// Hikvision ISAPI XML, pure (no I/O): the PTZData body for continuous moves, and parsers for the
// preset list, PTZ status and ResponseStatus documents. A small, bounded XML reader: elements,
// attributes (ignored), text, the five predefined entities and numeric references, comments, PIs
// and CDATA. No DTDs (a DOCTYPE is refused: no entity expansion attacks).

import { EdgeError } from '../../runtime/engine/api.js';
import { clampUnit, type PtzPreset, type PtzVelocity } from './types.js';

export const ISAPI_NS = 'http://www.hikvision.com/ver20/XMLSchema';
/** ISAPI documents are small; a preset list of 300 presets is ~40 kB. */
export const MAX_XML_BYTES = 256 * 1024;
const MAX_DEPTH = 32;
const MAX_NODES = 20_000;

export interface XmlNode {
  name: string;
  children: XmlNode[];
  text: string;
}

function bad(msg: string): EdgeError {
  return new EdgeError('ISAPI_BAD_XML', msg);
}

function decodeEntities(s: string): string {
  return s.replace(/&(#x[0-9a-fA-F]{1,6}|#[0-9]{1,7}|lt|gt|amp|quot|apos);/g, (_m, e: string) => {
    if (e[0] === '#') {
      const cp = e[1] === 'x' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
      if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) throw bad(`bad character reference &${e};`);
      return String.fromCodePoint(cp);
    }
    return { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" }[e as 'lt']!;
  });
}

/** Parse a document into an element tree (namespace prefixes stripped). Throws EdgeError ISAPI_BAD_XML. */
export function parseXml(src: string): XmlNode {
  if (src.length > MAX_XML_BYTES) throw bad(`document larger than ${MAX_XML_BYTES} bytes`);
  const root: XmlNode = { name: '#document', children: [], text: '' };
  const stack: XmlNode[] = [root];
  let i = 0;
  let nodes = 0;
  while (i < src.length) {
    const lt = src.indexOf('<', i);
    const textEnd = lt < 0 ? src.length : lt;
    if (textEnd > i) {
      const t = src.slice(i, textEnd);
      if (stack.length === 1) {
        if (t.trim()) throw bad('text outside the root element');
      } else stack[stack.length - 1]!.text += decodeEntities(t);
    }
    if (lt < 0) break;
    if (src.startsWith('<!--', lt)) {
      const e = src.indexOf('-->', lt + 4);
      if (e < 0) throw bad('unterminated comment');
      i = e + 3;
    } else if (src.startsWith('<![CDATA[', lt)) {
      const e = src.indexOf(']]>', lt + 9);
      if (e < 0) throw bad('unterminated CDATA');
      if (stack.length === 1) throw bad('CDATA outside the root element');
      stack[stack.length - 1]!.text += src.slice(lt + 9, e);
      i = e + 3;
    } else if (src.startsWith('<?', lt)) {
      const e = src.indexOf('?>', lt + 2);
      if (e < 0) throw bad('unterminated processing instruction');
      i = e + 2;
    } else if (src.startsWith('<!', lt)) {
      throw bad('DOCTYPE/declarations are not accepted');
    } else if (src[lt + 1] === '/') {
      const e = src.indexOf('>', lt);
      if (e < 0) throw bad('unterminated end tag');
      const name = stripPrefix(src.slice(lt + 2, e).trim());
      const top = stack.pop();
      if (!top || top === root || top.name !== name) throw bad(`mismatched end tag </${name.slice(0, 40)}>`);
      i = e + 1;
    } else {
      const e = findTagEnd(src, lt + 1);
      if (e < 0) throw bad('unterminated start tag');
      let body = src.slice(lt + 1, e);
      const selfClosing = body.endsWith('/');
      if (selfClosing) body = body.slice(0, -1);
      const m = /^([A-Za-z_][\w.:-]*)/.exec(body);
      if (!m) throw bad('bad element name');
      if (stack.length === 1 && root.children.length > 0) throw bad('more than one root element');
      if (stack.length > MAX_DEPTH) throw bad(`nesting deeper than ${MAX_DEPTH}`);
      if (++nodes > MAX_NODES) throw bad(`more than ${MAX_NODES} elements`);
      const node: XmlNode = { name: stripPrefix(m[1]!), children: [], text: '' };
      stack[stack.length - 1]!.children.push(node);
      if (!selfClosing) stack.push(node);
      i = e + 1;
    }
  }
  if (stack.length !== 1) throw bad(`unclosed element <${stack[stack.length - 1]!.name.slice(0, 40)}>`);
  const doc = root.children[0];
  if (!doc) throw bad('no root element');
  return doc;
}

function findTagEnd(src: string, from: number): number {
  let q: string | null = null;
  for (let j = from; j < src.length; j++) {
    const c = src[j];
    if (q) {
      if (c === q) q = null;
    } else if (c === '"' || c === "'") q = c;
    else if (c === '>') return j;
    else if (c === '<') return -1;
  }
  return -1;
}

function stripPrefix(n: string): string {
  const i = n.indexOf(':');
  return i >= 0 ? n.slice(i + 1) : n;
}

export function child(n: XmlNode, name: string): XmlNode | undefined {
  return n.children.find((c) => c.name === name);
}

function childText(n: XmlNode, name: string): string | undefined {
  const c = child(n, name);
  return c ? c.text.trim() : undefined;
}

function num(s: string | undefined): number | undefined {
  if (s === undefined || !/^-?\d+(\.\d+)?$/.test(s)) return undefined;
  return Number(s);
}

function esc(s: string): string {
  return s.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]!);
}

/** [-1,1] → the device's -100..100 integer speed. */
export function isapiSpeed(v: number): number {
  return Math.round(clampUnit(v) * 100);
}

export function buildPtzData(v: PtzVelocity): string {
  return (
    `<?xml version="1.0" encoding="UTF-8"?>` +
    `<PTZData version="2.0" xmlns="${ISAPI_NS}">` +
    `<pan>${isapiSpeed(v.pan)}</pan><tilt>${isapiSpeed(v.tilt)}</tilt><zoom>${isapiSpeed(v.zoom)}</zoom>` +
    `</PTZData>`
  );
}

export function buildPreset(id: number, name: string): string {
  return (
    `<?xml version="1.0" encoding="UTF-8"?>` +
    `<PTZPreset version="2.0" xmlns="${ISAPI_NS}"><id>${id}</id><presetName>${esc(name)}</presetName></PTZPreset>`
  );
}

/** Parse a PTZData body (the simulator's side). Missing axes are 0; values must be -100..100. */
export function parsePtzData(xml: string): { pan: number; tilt: number; zoom: number } {
  const doc = parseXml(xml);
  if (doc.name !== 'PTZData') throw bad(`expected PTZData, got ${doc.name.slice(0, 40)}`);
  const axis = (k: string) => {
    const t = childText(doc, k);
    if (t === undefined) return 0;
    const v = num(t);
    if (v === undefined || !Number.isInteger(v) || v < -100 || v > 100) throw bad(`${k} must be an integer -100..100`);
    return v;
  };
  return { pan: axis('pan'), tilt: axis('tilt'), zoom: axis('zoom') };
}

export function parsePresetXml(xml: string): { id: number; name: string } {
  const doc = parseXml(xml);
  if (doc.name !== 'PTZPreset') throw bad(`expected PTZPreset, got ${doc.name.slice(0, 40)}`);
  const id = num(childText(doc, 'id'));
  if (id === undefined || !Number.isInteger(id) || id < 1 || id > 1024) throw bad('preset id must be 1..1024');
  return { id, name: (childText(doc, 'presetName') ?? '').slice(0, 64) };
}

export function parsePresetList(xml: string): PtzPreset[] {
  const doc = parseXml(xml);
  if (doc.name !== 'PTZPresetList') throw bad(`expected PTZPresetList, got ${doc.name.slice(0, 40)}`);
  const out: PtzPreset[] = [];
  for (const c of doc.children) {
    if (c.name !== 'PTZPreset') continue;
    const id = childText(c, 'id');
    if (!id || !/^\d{1,5}$/.test(id)) continue;
    // Hikvision lists every slot; unset ones have enabled=false.
    if (childText(c, 'enabled') === 'false') continue;
    out.push({ id, name: (childText(c, 'presetName') ?? '').slice(0, 64) });
  }
  return out;
}

/** PTZStatus → position in ISAPI units (azimuth/elevation in 1/10°, absoluteZoom in 1/10×). */
export function parsePtzStatus(xml: string): { azimuth: number; elevation: number; absoluteZoom: number } {
  const doc = parseXml(xml);
  if (doc.name !== 'PTZStatus') throw bad(`expected PTZStatus, got ${doc.name.slice(0, 40)}`);
  const abs = child(doc, 'AbsoluteHigh');
  if (!abs) throw bad('PTZStatus without AbsoluteHigh');
  const g = (k: string) => {
    const v = num(childText(abs, k));
    if (v === undefined) throw bad(`AbsoluteHigh.${k} missing or not a number`);
    return v;
  };
  return { elevation: g('elevation'), azimuth: g('azimuth'), absoluteZoom: g('absoluteZoom') };
}

export function buildPtzStatus(s: { azimuth: number; elevation: number; absoluteZoom: number }): string {
  return (
    `<?xml version="1.0" encoding="UTF-8"?><PTZStatus version="2.0" xmlns="${ISAPI_NS}"><AbsoluteHigh>` +
    `<elevation>${Math.round(s.elevation)}</elevation><azimuth>${Math.round(s.azimuth)}</azimuth>` +
    `<absoluteZoom>${Math.round(s.absoluteZoom)}</absoluteZoom></AbsoluteHigh></PTZStatus>`
  );
}

export function buildPresetList(list: Array<{ id: number; name: string }>): string {
  return (
    `<?xml version="1.0" encoding="UTF-8"?><PTZPresetList version="2.0" xmlns="${ISAPI_NS}">` +
    list.map((p) => `<PTZPreset><enabled>true</enabled><id>${p.id}</id><presetName>${esc(p.name)}</presetName></PTZPreset>`).join('') +
    `</PTZPresetList>`
  );
}

export function buildResponseStatus(statusCode: number, statusString: string, subStatusCode: string): string {
  return (
    `<?xml version="1.0" encoding="UTF-8"?><ResponseStatus version="2.0" xmlns="${ISAPI_NS}">` +
    `<requestURL></requestURL><statusCode>${statusCode}</statusCode><statusString>${esc(statusString)}</statusString>` +
    `<subStatusCode>${esc(subStatusCode)}</subStatusCode></ResponseStatus>`
  );
}

/** ResponseStatus: statusCode 1 = OK; anything else is a device refusal with subStatusCode. */
export function parseResponseStatus(xml: string): { ok: boolean; statusCode: number; subStatusCode: string; statusString: string } {
  const doc = parseXml(xml);
  if (doc.name !== 'ResponseStatus') throw bad(`expected ResponseStatus, got ${doc.name.slice(0, 40)}`);
  const code = num(childText(doc, 'statusCode'));
  if (code === undefined) throw bad('ResponseStatus without statusCode');
  return {
    ok: code === 1,
    statusCode: code,
    subStatusCode: (childText(doc, 'subStatusCode') ?? '').slice(0, 64),
    statusString: (childText(doc, 'statusString') ?? '').slice(0, 64),
  };
}
